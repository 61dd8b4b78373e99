//! What the CycloneDX and SPDX readers share: turning a component's purl
//! text into a [`Purl`] with a located error, adding the `upstream`
//! qualifier from the source-package information some producers record
//! beside the purl, and the distro string of an operating-system entry.

use crate::purl::Purl;
use crate::{FormatError, Location};

/// Purl types whose packages are built from a source package that OSV
/// distribution advisories name.
const SOURCE_TYPES: &[&str] = &["deb", "apk", "rpm"];

pub(crate) fn parse_purl(
    format: &'static str,
    text: &str,
    location: Location,
) -> Result<Purl, FormatError> {
    text.trim()
        .parse()
        .map_err(|e: crate::PurlError| FormatError::new(format, e.to_string()).at(location))
}

/// A component's purl: valid, and with a version (a component without one
/// cannot be matched against any record).
pub(crate) fn parse_component(
    format: &'static str,
    text: &str,
    location: Location,
) -> Result<Purl, FormatError> {
    let purl = parse_purl(format, text, location.clone())?;
    if purl.version.is_none() {
        return Err(FormatError::new(
            format,
            format!(
                "purl {:?} has no version: a component needs one",
                crate::text::excerpt(text.trim())
            ),
        )
        .at(location));
    }
    Ok(purl)
}

/// Adds `upstream=NAME[@VERSION]` to an OS package purl that has none.
/// A producer that put `upstream` in the purl itself (syft) is trusted.
pub(crate) fn add_upstream(purl: &mut Purl, name: Option<&str>, version: Option<&str>) {
    if !SOURCE_TYPES.contains(&purl.ty.as_str()) || purl.qualifiers.contains_key("upstream") {
        return;
    }
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return;
    };
    let up = match version.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => format!("{name}@{v}"),
        None => name.to_string(),
    };
    purl.set_qualifier("upstream", up);
}

/// `[epoch:]version[-release]`, the full version of deb and rpm packages;
/// trivy records the three parts separately.
pub(crate) fn full_version(
    epoch: Option<&str>,
    version: Option<&str>,
    release: Option<&str>,
) -> Option<String> {
    let version = version.map(str::trim).filter(|v| !v.is_empty())?;
    let mut out = String::new();
    if let Some(e) = epoch.map(str::trim).filter(|e| !e.is_empty() && *e != "0") {
        out.push_str(e);
        out.push(':');
    }
    out.push_str(version);
    if let Some(r) = release.map(str::trim).filter(|r| !r.is_empty()) {
        out.push('-');
        out.push_str(r);
    }
    Some(out)
}

/// `name-version` of an operating-system entry (`debian` + `12.5` gives
/// `debian-12.5`), lowercase name as in os-release IDs.
pub(crate) fn distro(name: Option<&str>, version: Option<&str>) -> Option<String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty())?;
    let name = name.to_lowercase().replace(char::is_whitespace, "-");
    Some(match version.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => format!("{name}-{v}"),
        None => name,
    })
}

/// One warning for all components that had no purl, naming a few.
pub(crate) fn missing_purl_warning(what: &str, names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    Some(format!(
        "{} {what} without a purl skipped ({}{more})",
        names.len(),
        shown.join(", ")
    ))
}
