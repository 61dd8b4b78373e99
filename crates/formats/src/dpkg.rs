//! dpkg's database (`/var/lib/dpkg/status`, deb822 stanzas) to purls:
//! `pkg:deb/<vendor>/<Package>@<Version>?arch=<Architecture>&upstream=<Source>&distro=<distro>`.
//!
//! Choices:
//! - Installed means the third word of `Status:` is `installed` (any want
//!   flag: `install`, `hold`, ...). `config-files`, `half-installed`,
//!   `unpacked`, ... are not installed and are skipped. A stanza without
//!   `Status:` counts as installed: distroless images keep one file per
//!   package in `status.d/` and those have no Status field.
//! - `upstream` is the `Source:` field as dpkg writes it: `util-linux
//!   (2.31.1-0.4ubuntu3.1)` gives `upstream=util-linux@2.31.1-0.4ubuntu3.1`,
//!   `bash` gives `upstream=bash` (dpkg omits the version when it equals the
//!   binary's), no `Source:` gives no qualifier (source name = binary name).
//! - Namespace (vendor): the ID of `hint.distro` when given; otherwise
//!   `ubuntu` when the database says so (base-files version contains
//!   "ubuntu", or packages carry Ubuntu's maintainer rewrite: `Maintainer:`
//!   at lists.ubuntu.com plus `Original-Maintainer:`), else `debian`.

use crate::inventory::{Builder, Hint, Inventory};
use crate::purl::Purl;
use crate::{FormatError, Location, text};
use std::collections::HashMap;

const FORMAT: &str = "dpkg-status";

/// The fields of one stanza this parser needs, with their line numbers.
#[derive(Debug, Default)]
struct Stanza {
    start: usize,
    fields: HashMap<String, (String, usize)>,
    /// Last field seen, for continuation lines.
    last: Option<String>,
}

#[derive(Debug)]
struct Installed {
    /// Line of its `Package:` field.
    line: usize,
    package: String,
    version: String,
    arch: Option<String>,
    /// (name, version) of `Source:`.
    source: Option<(String, Option<String>)>,
}

/// Fields this parser reads; the others are only checked for syntax.
const KEPT: &[&str] = &[
    "package",
    "version",
    "status",
    "architecture",
    "source",
    "maintainer",
    "original-maintainer",
];

pub fn parse_status(text: &str, hint: &Hint) -> Result<Inventory, FormatError> {
    let mut installed = Vec::new();
    let mut ubuntu_votes = UbuntuEvidence::default();
    let mut stanza: Option<Stanza> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    for (n, line) in text::numbered_lines(text) {
        // deb822 allows whitespace-only separator lines.
        if line.trim().is_empty() {
            if let Some(s) = stanza.take() {
                finish_stanza(s, &mut installed, &mut ubuntu_votes)?;
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Only multi-line fields continue (Description, Conffiles);
            // none of the kept fields needs its continuation text.
            if stanza.as_ref().is_none_or(|s| s.last.is_none()) {
                return Err(FormatError::new(
                    FORMAT,
                    "continuation line (starting with a space) outside of a field",
                )
                .at_line(n));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(garbage(line, n));
        };
        if name.is_empty() || name.starts_with('-') || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(garbage(line, n));
        }
        let s = stanza.get_or_insert_with(|| Stanza {
            start: n,
            ..Stanza::default()
        });
        let key = name.to_ascii_lowercase();
        if KEPT.contains(&key.as_str()) {
            if s.fields.contains_key(&key) {
                return Err(FormatError::new(
                    FORMAT,
                    format!("duplicate field {name:?} in one stanza"),
                )
                .at_line(n));
            }
            s.fields.insert(key.clone(), (value.trim().to_string(), n));
        }
        s.last = Some(key);
    }
    if let Some(s) = stanza.take() {
        finish_stanza(s, &mut installed, &mut ubuntu_votes)?;
    }

    let namespace = match hint.distro_id() {
        Some(id) => id.to_ascii_lowercase(),
        None if ubuntu_votes.is_ubuntu() => "ubuntu".to_string(),
        None => "debian".to_string(),
    };

    let mut b = Builder::default();
    for p in installed {
        let mut purl = Purl::new("deb", Some(&namespace), &p.package, Some(&p.version))
            .map_err(|e| FormatError::new(FORMAT, e.to_string()))?;
        if let Some(arch) = p.arch {
            purl.set_qualifier("arch", arch);
        }
        if let Some((name, version)) = p.source {
            let up = match version {
                Some(v) => format!("{name}@{v}"),
                None => name,
            };
            purl.set_qualifier("upstream", up);
        }
        b.push(purl, &Location::line(p.line));
    }
    Ok(b.finish(hint))
}

fn garbage(line: &str, n: usize) -> FormatError {
    FormatError::new(
        FORMAT,
        format!(
            "expected \"Field: value\" or a continuation line, found {:?}",
            text::excerpt(line)
        ),
    )
    .at_line(n)
}

/// Signs that the database is Ubuntu's rather than Debian's.
#[derive(Debug, Default)]
struct UbuntuEvidence {
    base_files: Option<bool>,
    rewritten_maintainers: usize,
}

impl UbuntuEvidence {
    fn is_ubuntu(&self) -> bool {
        self.base_files.unwrap_or(self.rewritten_maintainers > 0)
    }
}

fn finish_stanza(
    s: Stanza,
    out: &mut Vec<Installed>,
    ubuntu: &mut UbuntuEvidence,
) -> Result<(), FormatError> {
    let get = |k: &str| s.fields.get(k).map(|(v, l)| (v.as_str(), *l));

    if let Some((status, line)) = get("status") {
        let words: Vec<&str> = status.split_whitespace().collect();
        if words.len() != 3 {
            return Err(FormatError::new(
                FORMAT,
                format!(
                    "Status must be three words (want flag status), found {:?}",
                    text::excerpt(status)
                ),
            )
            .at_line(line));
        }
        if words[2] != "installed" {
            return Ok(());
        }
    }

    let Some((package, pkg_line)) = get("package").filter(|(v, _)| !v.is_empty()) else {
        return Err(
            FormatError::new(FORMAT, "installed package stanza without a Package field")
                .at_line(s.start),
        );
    };
    if package.contains(char::is_whitespace) {
        return Err(FormatError::new(
            FORMAT,
            format!("invalid package name {:?}", text::excerpt(package)),
        )
        .at_line(pkg_line));
    }
    let Some((version, ver_line)) = get("version").filter(|(v, _)| !v.is_empty()) else {
        return Err(FormatError::new(
            FORMAT,
            format!("installed package {package:?} has no Version field"),
        )
        .at_line(pkg_line));
    };
    if version.contains(char::is_whitespace) {
        return Err(FormatError::new(
            FORMAT,
            format!(
                "invalid version {:?} of {package:?}",
                text::excerpt(version)
            ),
        )
        .at_line(ver_line));
    }
    let arch = get("architecture")
        .map(|(a, _)| a.to_string())
        .filter(|a| !a.is_empty());
    let source = match get("source") {
        Some((src, line)) => Some(parse_source(src).ok_or_else(|| {
            FormatError::new(
                FORMAT,
                format!(
                    "Source must be \"name\" or \"name (version)\", found {:?}",
                    text::excerpt(src)
                ),
            )
            .at_line(line)
        })?),
        None => None,
    };

    if package == "base-files" {
        ubuntu.base_files = Some(version.contains("ubuntu"));
    }
    if get("maintainer").is_some_and(|(m, _)| m.contains("lists.ubuntu.com"))
        && get("original-maintainer").is_some()
    {
        ubuntu.rewritten_maintainers += 1;
    }

    out.push(Installed {
        line: pkg_line,
        package: package.to_string(),
        version: version.to_string(),
        arch,
        source,
    });
    Ok(())
}

/// `name` or `name (version)`.
fn parse_source(src: &str) -> Option<(String, Option<String>)> {
    let src = src.trim();
    match src.split_once(char::is_whitespace) {
        None if !src.is_empty() && !src.contains(['(', ')']) => Some((src.to_string(), None)),
        None => None,
        Some((name, rest)) => {
            let version = rest.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
            if name.contains(['(', ')'])
                || version.is_empty()
                || version.contains(char::is_whitespace)
            {
                return None;
            }
            Some((name.to_string(), Some(version.to_string())))
        }
    }
}
