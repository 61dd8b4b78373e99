//! SPDX 2.2/2.3 JSON SBOMs to inventories: the purls of
//! `packages[].externalRefs[]` with `referenceType: purl`.
//!
//! Choices:
//! - Any reference category is accepted with type `purl` (SPDX says
//!   `PACKAGE-MANAGER`; some producers write `PACKAGE_MANAGER` or omit it).
//! - The operating-system package (`primaryPackagePurpose:
//!   OPERATING-SYSTEM`, or trivy's `SPDXRef-OperatingSystem-*` id) gives the
//!   distro and is not a component; the container image package
//!   (`CONTAINER`, or `SPDXRef-ContainerImage-*`) is the subject, not a
//!   component (like CycloneDX `metadata.component`).
//! - A deb/apk/rpm purl without `upstream` gets it from trivy's `sourceInfo:
//!   "built package from: NAME VERSION"`.
//! - Packages without a purl are skipped with one warning counting them.

use crate::error::{FormatError, Location};
use crate::inventory::{Builder, Hint, Inventory};
use crate::{sbom, text};
use serde::Deserialize;

const FORMAT: &str = "spdx-json";

// Container renames only change serde's "expected struct X" wording in
// error messages, which users see.
#[derive(Debug, Deserialize)]
#[serde(rename = "document", rename_all = "camelCase")]
struct Document {
    #[serde(default, deserialize_with = "text::lenient_string")]
    spdx_version: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "package", rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID", default, deserialize_with = "text::lenient_string")]
    spdx_id: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    version_info: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    primary_package_purpose: Option<String>,
    #[serde(default, deserialize_with = "text::lenient_string")]
    source_info: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    external_refs: Vec<ExternalRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "external reference", rename_all = "camelCase")]
struct ExternalRef {
    #[serde(default, deserialize_with = "text::lenient_string")]
    reference_type: Option<String>,
    #[serde(default)]
    reference_locator: Option<String>,
}

/// Parses an SPDX 2.x JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Inventory, FormatError> {
    let bytes = text::strip_bom(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let text::Object(doc): text::Object<Document> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FormatError::from_json_path(FORMAT, &e))?;
    de.end().map_err(|e| FormatError::from_json(FORMAT, &e))?;
    from_document(doc)
}

/// Parses an SPDX document given as a JSON value (inline SBOM).
pub(crate) fn parse_value(value: &serde_json::Value) -> Result<Inventory, FormatError> {
    let text::Object(doc): text::Object<Document> = serde_path_to_error::deserialize(value)
        .map_err(|e| FormatError::from_json_path(FORMAT, &e))?;
    from_document(doc)
}

fn from_document(doc: Document) -> Result<Inventory, FormatError> {
    match doc.spdx_version.as_deref() {
        Some(v) if v.starts_with("SPDX-2.") => {}
        Some(v) => {
            return Err(FormatError::new(
                FORMAT,
                format!(
                    "unsupported spdxVersion {:?} (expected SPDX-2.x)",
                    text::excerpt(v)
                ),
            )
            .at_path("spdxVersion"));
        }
        None => {
            return Err(FormatError::new(
                FORMAT,
                "missing \"spdxVersion\": not an SPDX 2.x JSON document",
            )
            .at_path("spdxVersion"));
        }
    }

    let mut b = Builder::default();
    let mut without_purl = Vec::new();
    for (i, p) in doc.packages.iter().enumerate() {
        let id = p.spdx_id.as_deref().unwrap_or("");
        let purpose = p
            .primary_package_purpose
            .as_deref()
            .map(|s| s.replace('_', "-").to_ascii_uppercase());
        if purpose.as_deref() == Some("OPERATING-SYSTEM")
            || id.starts_with("SPDXRef-OperatingSystem-")
        {
            if b.distro.is_none() {
                b.distro = sbom::distro(p.name.as_deref(), p.version_info.as_deref());
            }
            continue;
        }
        let is_subject =
            purpose.as_deref() == Some("CONTAINER") || id.starts_with("SPDXRef-ContainerImage-");
        if is_subject {
            continue;
        }
        let mut found = false;
        for (j, r) in p.external_refs.iter().enumerate() {
            if !r
                .reference_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("purl"))
            {
                continue;
            }
            let Some(locator) = r
                .reference_locator
                .as_deref()
                .filter(|l| !l.trim().is_empty())
            else {
                continue;
            };
            let location =
                Location::path(format!("packages[{i}].externalRefs[{j}].referenceLocator"));
            // A package with a bad purl has a purl all the same: it is
            // skipped with its error, not counted as one without a purl.
            found = true;
            let mut purl = match sbom::parse_component(FORMAT, locator, location.clone()) {
                Ok(purl) => purl,
                Err(e) => {
                    b.skip(e);
                    continue;
                }
            };
            if let Some((name, version)) = p.source_info.as_deref().and_then(trivy_source) {
                sbom::add_upstream(&mut purl, Some(name), version);
            }
            b.push(purl, &location);
        }
        if !found {
            without_purl.push(p.name.clone().unwrap_or_else(|| format!("packages[{i}]")));
        }
    }
    if let Some(msg) = sbom::missing_purl_warning("packages", &without_purl) {
        b.warn(None, msg);
    }
    Ok(b.finish(&Hint::default()))
}

/// trivy's `sourceInfo: "built package from: NAME [VERSION]"`.
fn trivy_source(info: &str) -> Option<(&str, Option<&str>)> {
    let rest = info.trim().strip_prefix("built package from:")?.trim();
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    let version = words.next();
    if words.next().is_some() {
        return None;
    }
    Some((name, version))
}
