//! Inventories: the component list of an artifact as purls, whatever form it
//! came in. Owns the [`Format`] names, format sniffing ([`detect`]), the
//! dispatching [`parse`], the plain purl-list format, and the finishing
//! steps every parser shares (distro qualifier, de-duplication).

use crate::purl::Purl;
use crate::{FormatError, Location, apk, cyclonedx, dpkg, spdx, text};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// The inventory input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One purl per line; blank lines and `#` comment lines allowed.
    Purls,
    CycloneDxJson,
    CycloneDxXml,
    SpdxJson,
    /// `/var/lib/dpkg/status`.
    DpkgStatus,
    /// `/lib/apk/db/installed`.
    ApkInstalled,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Purls,
        Format::CycloneDxJson,
        Format::CycloneDxXml,
        Format::SpdxJson,
        Format::DpkgStatus,
        Format::ApkInstalled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Purls => "purls",
            Format::CycloneDxJson => "cyclonedx-json",
            Format::CycloneDxXml => "cyclonedx-xml",
            Format::SpdxJson => "spdx-json",
            Format::DpkgStatus => "dpkg-status",
            Format::ApkInstalled => "apk-installed",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Format, FormatError> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                FormatError::new(
                    "format",
                    format!(
                        "unknown inventory format {:?} (expected one of: {})",
                        text::excerpt(s),
                        names.join(", ")
                    ),
                )
            })
    }
}

/// What the caller knows that the input may not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// Distribution and release, `ID-VERSION_ID` of os-release, e.g.
    /// `debian-12`, `ubuntu-18.04`, `alpine-3.18.4`. Used when the input
    /// does not name one: added as the `distro` qualifier to deb, apk and
    /// rpm purls that lack it, and its ID part picks the purl namespace of
    /// dpkg and apk databases.
    pub distro: Option<String>,
}

impl Hint {
    pub fn distro(distro: impl Into<String>) -> Hint {
        Hint {
            distro: Some(distro.into()),
        }
    }

    /// The distro ID part (`debian` of `debian-12`).
    pub(crate) fn distro_id(&self) -> Option<&str> {
        let d = self.distro.as_deref()?.trim();
        let (id, _) = crate::os_release::split_distro(d);
        // An ID is a lowercase word ("debian", "opensuse-leap"); a bare
        // version such as "12" names no vendor.
        id.starts_with(|c: char| c.is_ascii_alphabetic())
            .then_some(id)
    }
}

/// Something skipped or doubtful that did not stop the parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// `line 12`, `components[3]`, ... when known.
    pub location: Option<String>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The components of an artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// De-duplicated, in input order.
    pub components: Vec<Purl>,
    /// Where each component is in the input (`components[3].purl`,
    /// `line 12`, empty when unknown), parallel to `components`: the first
    /// place of a component given twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// `ID-VERSION` of the operating system, from the input itself (SBOM
    /// operating-system component) or else from the hint.
    pub distro: Option<String>,
    pub warnings: Vec<Warning>,
    /// Components that cannot be read (an invalid purl, a purl without a
    /// version), each with its located error, in input order. They are left
    /// out of `components`; a strict caller refuses the input at the first
    /// ([`Inventory::strict`]).
    #[serde(skip)]
    pub skipped: Vec<FormatError>,
}

impl Inventory {
    /// The strict reading: the first component that cannot be read rejects
    /// the whole input, with its position.
    pub fn strict(mut self) -> Result<Inventory, FormatError> {
        if !self.skipped.is_empty() {
            return Err(self.skipped.swap_remove(0));
        }
        Ok(self)
    }

    /// The location of component `i`, when known.
    pub fn location(&self, i: usize) -> Option<&str> {
        self.locations
            .get(i)
            .map(String::as_str)
            .filter(|l| !l.is_empty())
    }
}

/// Purl types of OS packages, which get the distro qualifier.
const OS_TYPES: &[&str] = &["deb", "apk", "rpm"];

/// Collects components and warnings; [`Builder::finish`] applies the steps
/// every format shares.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    components: Vec<Purl>,
    locations: Vec<String>,
    skipped: Vec<FormatError>,
    warnings: Vec<Warning>,
    /// Distro found in the document itself.
    pub(crate) distro: Option<String>,
}

impl Builder {
    pub(crate) fn push(&mut self, purl: Purl, location: &Location) {
        self.components.push(purl);
        self.locations.push(location.to_string());
    }

    /// A component that cannot be read: left out, its error kept.
    pub(crate) fn skip(&mut self, error: FormatError) {
        self.skipped.push(error);
    }

    pub(crate) fn warn(&mut self, location: Option<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            location,
            message: message.into(),
        });
    }

    /// The document's own distro wins over the hint: the hint is what the
    /// caller guesses, the document is what the producer saw. A purl's own
    /// `distro` qualifier is never replaced.
    pub(crate) fn finish(self, hint: &Hint) -> Inventory {
        let distro = self
            .distro
            .filter(|d| !d.is_empty())
            .or_else(|| hint.distro.clone().filter(|d| !d.trim().is_empty()))
            .map(|d| d.trim().to_string());
        let mut seen = HashSet::new();
        let mut components = Vec::with_capacity(self.components.len());
        let mut locations = Vec::with_capacity(self.components.len());
        let given = self
            .locations
            .into_iter()
            .chain(std::iter::repeat(String::new()));
        for (mut p, location) in self.components.into_iter().zip(given) {
            if let Some(d) = &distro
                && OS_TYPES.contains(&p.ty.as_str())
                && !p.qualifiers.contains_key("distro")
            {
                p.set_qualifier("distro", d.clone());
            }
            if seen.insert(p.clone()) {
                components.push(p);
                locations.push(location);
            }
        }
        Inventory {
            components,
            locations,
            distro,
            warnings: self.warnings,
            skipped: self.skipped,
        }
    }
}

/// Guesses the format from the content. JSON and XML by their marker
/// fields, text formats by their first meaningful line.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    let bytes = text::strip_bom(bytes);
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let body = &bytes[start..];
    match body[0] {
        b'{' => {
            if text::contains(body, b"\"bomFormat\"") {
                Some(Format::CycloneDxJson)
            } else if text::contains(body, b"\"spdxVersion\"") {
                Some(Format::SpdxJson)
            } else {
                None
            }
        }
        b'<' => text::contains(body, b"cyclonedx.org/schema/bom").then_some(Format::CycloneDxXml),
        _ => {
            // Only the start matters; a valid-UTF-8 prefix is enough.
            let head = &body[..body.len().min(64 * 1024)];
            let head = match std::str::from_utf8(head) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
            };
            let first = head
                .lines()
                .map(str::trim_end)
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
            let b = first.as_bytes();
            if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"pkg:") {
                Some(Format::Purls)
            } else if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
                Some(Format::ApkInstalled)
            } else if is_field_line(first)
                && head
                    .lines()
                    .skip_while(|l| l.trim().is_empty())
                    .take_while(|l| !l.trim().is_empty())
                    .any(|l| l.starts_with("Package:"))
            {
                Some(Format::DpkgStatus)
            } else {
                None
            }
        }
    }
}

/// `Name: value` with a deb822 field name (no spaces, not starting with `-`).
fn is_field_line(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && !name.starts_with('-') && name.bytes().all(|b| b.is_ascii_graphic())
        }
        None => false,
    }
}

/// Parses an inventory in the given format.
pub fn parse(format: Format, bytes: &[u8], hint: &Hint) -> Result<Inventory, FormatError> {
    match format {
        Format::Purls => parse_purls(text::utf8("purls", bytes)?, hint),
        Format::CycloneDxJson => cyclonedx::parse_json(bytes).map(|inv| apply_hint(inv, hint)),
        Format::CycloneDxXml => cyclonedx::parse_xml(bytes).map(|inv| apply_hint(inv, hint)),
        Format::SpdxJson => spdx::parse_json(bytes).map(|inv| apply_hint(inv, hint)),
        // dpkg and apk databases are only read for a few ASCII fields; an
        // odd Latin-1 byte in some description must not reject the whole
        // database, so invalid UTF-8 is replaced rather than refused.
        Format::DpkgStatus => {
            dpkg::parse_status(&String::from_utf8_lossy(text::strip_bom(bytes)), hint)
        }
        Format::ApkInstalled => {
            apk::parse_installed(&String::from_utf8_lossy(text::strip_bom(bytes)), hint)
        }
    }
}

/// Parses an SBOM given inline as a JSON value (the `sbom` field of an
/// artifact): CycloneDX when it has `bomFormat`, SPDX when it has
/// `spdxVersion`.
pub fn parse_json_value(value: &serde_json::Value, hint: &Hint) -> Result<Inventory, FormatError> {
    let Some(obj) = value.as_object() else {
        return Err(FormatError::new(
            "sbom",
            "an inline SBOM must be a JSON object (CycloneDX or SPDX)",
        ));
    };
    let inv = if obj.contains_key("bomFormat") {
        cyclonedx::parse_value(value)?
    } else if obj.contains_key("spdxVersion") {
        spdx::parse_value(value)?
    } else {
        return Err(FormatError::new(
            "sbom",
            "not a CycloneDX (no \"bomFormat\") or SPDX (no \"spdxVersion\") document",
        ));
    };
    Ok(apply_hint(inv, hint))
}

/// SBOM parsers have no hint parameter (their API is bytes only); the hint
/// is applied afterwards the same way `Builder::finish` would.
fn apply_hint(inv: Inventory, hint: &Hint) -> Inventory {
    if inv.distro.is_some() || hint.distro.as_deref().is_none_or(|d| d.trim().is_empty()) {
        return inv;
    }
    Builder {
        components: inv.components,
        locations: inv.locations,
        skipped: inv.skipped,
        warnings: inv.warnings,
        distro: None,
    }
    .finish(hint)
}

/// The purl-list format: one purl per line, `#` comments and blank lines.
/// A purl cannot carry a trailing comment: `#` starts its subpath.
pub(crate) fn parse_purls(text: &str, hint: &Hint) -> Result<Inventory, FormatError> {
    let mut b = Builder::default();
    for (n, line) in text::numbered_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let location = Location::line(n);
        match crate::sbom::parse_component("purls", line, location.clone()) {
            Ok(purl) => b.push(purl, &location),
            Err(e) => b.skip(e),
        }
    }
    Ok(b.finish(hint))
}
