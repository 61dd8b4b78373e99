//! apk's database (`/lib/apk/db/installed`: `X:value` lines, records
//! separated by blank lines) to purls:
//! `pkg:apk/<vendor>/<P>@<V>?arch=<A>&upstream=<o>&distro=<distro>`.
//!
//! Choices:
//! - `upstream` is the origin (`o:`) whenever present, even when it equals
//!   the package name: it says explicitly which aports package (the name
//!   Alpine's secdb and OSV use) to match. apk subpackages share their
//!   origin's version, so no source version is added.
//! - A record without `P:` or `V:` cannot be a component; it is skipped with
//!   a warning (as trivy and osv-scalibr do), not an error.
//! - Namespace: the ID of `hint.distro` when given (`wolfi`, `postmarketos`
//!   also use apk), else `alpine`.

use crate::inventory::{Builder, Hint, Inventory};
use crate::purl::Purl;
use crate::{FormatError, Location, text};

const FORMAT: &str = "apk-installed";

#[derive(Debug, Default)]
struct Record {
    start: usize,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
}

pub fn parse_installed(text: &str, hint: &Hint) -> Result<Inventory, FormatError> {
    let namespace = hint
        .distro_id()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "alpine".to_string());
    let mut b = Builder::default();
    let mut record: Option<Record> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    for (n, line) in text::numbered_lines(text) {
        if line.trim().is_empty() {
            if let Some(r) = record.take() {
                finish_record(r, &namespace, &mut b)?;
            }
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b':' {
            return Err(FormatError::new(
                FORMAT,
                format!(
                    "expected \"X:value\" (one letter, a colon), found {:?}",
                    text::excerpt(line)
                ),
            )
            .at_line(n));
        }
        let value = &line[2..];
        let r = record.get_or_insert_with(|| Record {
            start: n,
            ..Record::default()
        });
        let slot = match bytes[0] {
            b'P' => &mut r.name,
            b'V' => &mut r.version,
            b'A' => &mut r.arch,
            b'o' => &mut r.origin,
            _ => continue,
        };
        if slot.is_some() {
            // Two packages run together: a lost blank line would silently
            // merge them, so it is an error.
            return Err(FormatError::new(
                FORMAT,
                format!(
                    "second \"{}:\" in one record (missing blank line between packages?)",
                    bytes[0] as char
                ),
            )
            .at_line(n));
        }
        *slot = Some(value.trim().to_string());
    }
    if let Some(r) = record.take() {
        finish_record(r, &namespace, &mut b)?;
    }
    Ok(b.finish(hint))
}

fn finish_record(r: Record, namespace: &str, b: &mut Builder) -> Result<(), FormatError> {
    let at = Some(format!("line {}", r.start));
    let Some(name) = r.name.filter(|n| !n.is_empty()) else {
        b.warn(at, "record without a package name (P:) skipped");
        return Ok(());
    };
    let Some(version) = r.version.filter(|v| !v.is_empty()) else {
        b.warn(at, format!("package {name:?} has no version (V:); skipped"));
        return Ok(());
    };
    let mut purl = Purl::new("apk", Some(namespace), &name, Some(&version))
        .map_err(|e| FormatError::new(FORMAT, e.to_string()).at_line(r.start))?;
    if let Some(arch) = r.arch {
        purl.set_qualifier("arch", arch);
    }
    if let Some(origin) = r.origin {
        purl.set_qualifier("upstream", origin);
    }
    b.push(purl, &Location::line(r.start));
    Ok(())
}
