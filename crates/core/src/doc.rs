//! The artifact JSON of CONTRACT.md §5 (one line of `import artifacts`, the
//! body of `POST /v1/artifacts`) and its translation into an
//! [`ArtifactSpec`]: inline SBOMs are parsed here, purls canonicalised.

use std::collections::BTreeMap;
use std::str::FromStr;

use patchline_formats::inventory::{Hint, Inventory, parse_json_value};
use patchline_formats::purl::Purl;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CatalogError;
use crate::inventory::check_component;
use crate::model::{
    AdvisoryId, ArtifactId, ArtifactSpec, Kind, Relation, TenantId, Visibility, WARNING_LEN_MAX,
    WARNINGS_MAX,
};

/// The artifact JSON as received. Unknown fields are kept so that callers
/// can warn about them (a misspelt `parnet` would otherwise silently make a
/// root).
#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactDoc {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub relation: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub sbom: Option<Value>,
    #[serde(default)]
    pub fixes: Option<Vec<String>>,
    /// The artifact this one is the patched successor of.
    #[serde(default)]
    pub supersedes: Option<String>,
    /// Extension: the distribution (`debian-12`) for purls that lack a
    /// `distro` qualifier, as os-release would give it.
    #[serde(default)]
    pub distro: Option<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// A translated artifact and what deserves a warning.
#[derive(Debug, Clone)]
pub struct Translated {
    pub spec: ArtifactSpec,
    pub warnings: Vec<String>,
}

impl ArtifactDoc {
    /// Parses one JSON text.
    pub fn parse(text: &str) -> Result<ArtifactDoc, CatalogError> {
        serde_json::from_str(text)
            .map_err(|e| CatalogError::Invalid(format!("not an artifact JSON object: {e}")))
    }

    /// Builds the spec; `tenant` overrides the document's (HTTP: the
    /// token's tenant) and is required when the document has none. An inline
    /// SBOM is read leniently (see [`screen_inventory`]).
    pub fn into_spec(self, tenant: Option<&TenantId>) -> Result<Translated, CatalogError> {
        self.into_spec_with(tenant, false)
    }

    /// [`ArtifactDoc::into_spec`]; with `strict`, the first component of the
    /// inline SBOM that cannot be read rejects the document, with its place.
    pub fn into_spec_with(
        self,
        tenant: Option<&TenantId>,
        strict: bool,
    ) -> Result<Translated, CatalogError> {
        let id = ArtifactId::new(self.id)?;
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            CatalogError::Invalid(format!(
                "artifact {id}: unknown kind {:?} (expected image, template, replica or instance)",
                self.kind
            ))
        })?;
        let tenant = match (tenant, self.tenant) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => TenantId::new(t)?,
            (None, None) => {
                return Err(CatalogError::Invalid(format!("artifact {id}: no tenant")));
            }
        };
        let parent = self.parent.map(ArtifactId::new).transpose()?;
        let supersedes = self.supersedes.map(ArtifactId::new).transpose()?;
        let relation = match self.relation {
            None => None,
            Some(r) => Some(Relation::parse(&r).ok_or_else(|| {
                CatalogError::Invalid(format!(
                    "artifact {id}: unknown relation {r:?} (expected derived_from, converted_from, replicated_from or launched_from)"
                ))
            })?),
        };
        let visibility = match self.visibility.as_deref() {
            None | Some("private") => Visibility::Private,
            Some("public") => Visibility::Public,
            Some(v) => {
                return Err(CatalogError::Invalid(format!(
                    "artifact {id}: unknown visibility {v:?} (expected private or public)"
                )));
            }
        };
        let distro = self.distro.filter(|d| !d.is_empty());
        let mut warnings: Vec<String> = self
            .unknown
            .keys()
            .map(|k| format!("artifact {id}: unknown field {k:?} ignored"))
            .collect();
        let mut components: Option<Vec<String>> = None;
        // Kept with the artifact: what reading its inventory skipped or
        // cannot evaluate.
        let mut kept = Vec::new();
        if let Some(purls) = self.components {
            // The contract's list stays strict: a purl that cannot be a
            // component is refused.
            let mut out = Vec::with_capacity(purls.len());
            for (i, text) in purls.iter().enumerate() {
                let invalid = |reason: String| CatalogError::InvalidComponent {
                    artifact: id.to_string(),
                    purl: text.chars().take(200).collect(),
                    reason: format!("components[{i}]: {reason}"),
                };
                let mut purl = Purl::from_str(text).map_err(|e| invalid(e.to_string()))?;
                if let Some(note) = check_component(&purl).map_err(|e| invalid(e.0))? {
                    kept.push(format!("components[{i}]: {}: {note}", excerpt(text)));
                }
                // Keep the caller's spelling unless a qualifier was added.
                if add_distro(&mut purl, distro.as_deref()) {
                    out.push(purl.to_string());
                } else {
                    out.push(text.clone());
                }
            }
            components = Some(out);
        }
        if let Some(sbom) = &self.sbom {
            let hint = Hint {
                distro: distro.clone(),
            };
            let inventory = parse_json_value(sbom, &hint)
                .map_err(|e| CatalogError::Invalid(format!("artifact {id}: sbom: {e}")))?;
            let screened = screen_inventory(inventory, distro.as_deref(), strict)
                .map_err(|e| CatalogError::Invalid(format!("artifact {id}: sbom: {e}")))?;
            kept.extend(screened.warnings.into_iter().map(|w| format!("sbom: {w}")));
            components
                .get_or_insert_with(Vec::new)
                .extend(screened.purls);
        }
        let kept = bounded(kept);
        warnings.extend(kept.iter().map(|w| format!("artifact {id}: {w}")));
        let fixes = self
            .fixes
            .unwrap_or_default()
            .into_iter()
            .map(AdvisoryId::new)
            .collect::<Result<Vec<_>, _>>()?;
        let spec = ArtifactSpec {
            id,
            kind,
            tenant,
            name: self.name.map(|mut n| {
                crate::text::truncate(&mut n, crate::text::NAME_LEN_MAX);
                n
            }),
            parent,
            relation,
            visibility,
            labels: self.labels.unwrap_or_default(),
            components,
            fixes,
            supersedes,
            warnings: kept,
        };
        spec.validate()?;
        Ok(Translated { spec, warnings })
    }
}

/// An inventory read from an SBOM (or another inventory file), screened
/// component by component: the purls to keep, canonical, and what deserves
/// a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screened {
    pub purls: Vec<String>,
    /// Each skipped component (which, where, why), each component whose
    /// version its ecosystem cannot order, and the reader's own warnings
    /// (components without a purl...).
    pub warnings: Vec<String>,
    /// How many components were skipped.
    pub skipped: usize,
}

/// Screens an inventory before it becomes an artifact's: a component whose
/// purl is invalid or has no version (found by the reader) or that cannot
/// be a component (too long) is skipped and named in a warning with its
/// place; a component whose version does not parse in its ecosystem is
/// kept and named in a warning (only records listing that exact version can
/// match it). `distro` is added to OS packages that lack one (the input's
/// own distro first).
///
/// Lenient (`strict == false`): an inventory with components but none left
/// is refused, as it would silently drop everything. Strict: the first
/// skipped or unevaluable component refuses the input, with its place.
pub fn screen_inventory(
    inventory: Inventory,
    distro: Option<&str>,
    strict: bool,
) -> Result<Screened, String> {
    let inventory = if strict {
        inventory.strict().map_err(|e| e.to_string())?
    } else {
        inventory
    };
    let mut out = Screened {
        purls: Vec::with_capacity(inventory.components.len()),
        ..Screened::default()
    };
    let mut first_skipped = None;
    for e in &inventory.skipped {
        let w = format!("{e}; component skipped");
        first_skipped.get_or_insert_with(|| w.clone());
        out.warnings.push(w);
        out.skipped += 1;
    }
    let distro = inventory.distro.as_deref().or(distro);
    for (i, mut purl) in inventory.components.iter().cloned().enumerate() {
        let _ = add_distro(&mut purl, distro);
        let text = purl.to_string();
        let place = inventory.location(i).unwrap_or("component");
        match check_component(&purl) {
            Ok(None) => out.purls.push(text),
            Ok(Some(note)) if !strict => {
                out.warnings
                    .push(format!("{place}: {}: {note}", excerpt(&text)));
                out.purls.push(text);
            }
            Ok(Some(note)) => return Err(format!("{place}: {}: {note}", excerpt(&text))),
            Err(e) if strict => return Err(format!("{place}: {}: {}", excerpt(&text), e.0)),
            Err(e) => {
                let w = format!("{place}: {}: {}; component skipped", excerpt(&text), e.0);
                first_skipped.get_or_insert_with(|| w.clone());
                out.warnings.push(w);
                out.skipped += 1;
            }
        }
    }
    out.warnings
        .extend(inventory.warnings.iter().map(ToString::to_string));
    if out.purls.is_empty()
        && let Some(first) = first_skipped
    {
        return Err(format!(
            "no valid component left: {} skipped (first: {first})",
            out.skipped
        ));
    }
    Ok(out)
}

/// At most [`WARNINGS_MAX`] warnings of at most [`WARNING_LEN_MAX`] bytes;
/// the last says how many more there were.
pub fn bounded(mut warnings: Vec<String>) -> Vec<String> {
    for w in &mut warnings {
        crate::text::truncate(w, WARNING_LEN_MAX);
    }
    if warnings.len() > WARNINGS_MAX {
        let more = warnings.len() - (WARNINGS_MAX - 1);
        warnings.truncate(WARNINGS_MAX - 1);
        warnings.push(format!("… and {more} more"));
    }
    warnings
}

/// A purl as shown in a warning.
fn excerpt(text: &str) -> String {
    let mut t = text.to_string();
    crate::text::truncate(&mut t, 200);
    t
}

/// OS package purls without a `distro` qualifier get the artifact's;
/// answers whether the purl changed.
pub fn add_distro(purl: &mut Purl, distro: Option<&str>) -> bool {
    if let Some(d) = distro
        && matches!(purl.ty.as_str(), "deb" | "apk" | "rpm")
        && !purl.qualifiers.contains_key("distro")
    {
        purl.qualifiers.insert("distro".into(), d.to_string());
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_the_contract() {
        let doc = ArtifactDoc::parse(
            r#"{"id":"img","kind":"image","tenant":"acme","labels":{"region":"eu"},
                "components":["pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib"],
                "distro":"debian-12","parnet":"x"}"#,
        )
        .unwrap();
        let t = doc.into_spec(None).unwrap();
        assert_eq!(t.spec.kind, Kind::Image);
        assert_eq!(t.warnings.len(), 1);
        let purl = &t.spec.components.as_ref().unwrap()[0];
        assert!(purl.contains("distro=debian-12"), "{purl}");
        let err = ArtifactDoc::parse(r#"{"id":"x","kind":"vm","tenant":"a"}"#)
            .unwrap()
            .into_spec(None)
            .unwrap_err();
        assert!(err.to_string().contains("unknown kind"), "{err}");
    }
}

#[cfg(test)]
mod sbom_tests {
    use super::*;

    fn doc(sbom: Value) -> ArtifactDoc {
        ArtifactDoc::parse(
            &serde_json::json!({"id": "img", "kind": "image", "tenant": "acme", "sbom": sbom})
                .to_string(),
        )
        .unwrap()
    }

    fn cdx(purls: &[&str]) -> Value {
        let components: Vec<_> = purls
            .iter()
            .map(|p| serde_json::json!({"type": "library", "purl": p}))
            .collect();
        serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components})
    }

    #[test]
    fn a_bad_component_is_skipped_named_and_kept_as_a_warning() {
        let sbom = cdx(&[
            "pkg:deb/debian/bash@5.2.15-2?distro=debian-12",
            "pkg:deb/debian/nover?distro=debian-12",
            "not-a-purl",
            "pkg:deb/debian/odd@a:b:c?distro=debian-12",
            "pkg:npm/left-pad@1.3.0",
        ]);
        let t = doc(sbom.clone()).into_spec(None).unwrap();
        assert_eq!(
            t.spec.components.as_deref().unwrap(),
            [
                "pkg:deb/debian/bash@5.2.15-2?distro=debian-12",
                "pkg:deb/debian/odd@a:b:c?distro=debian-12",
                "pkg:npm/left-pad@1.3.0"
            ]
        );
        let w = &t.spec.warnings;
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("components[1].purl")
                && w[0].contains("pkg:deb/debian/nover")
                && w[0].contains("no version")
                && w[0].ends_with("component skipped"),
            "{w:?}"
        );
        assert!(
            w[1].contains("components[2].purl") && w[1].contains("not-a-purl"),
            "{w:?}"
        );
        // Kept, but never silently: its version cannot be ordered.
        assert!(
            w[2].contains("components[3].purl")
                && w[2].contains("odd@a:b:c")
                && w[2].contains("invalid dpkg version"),
            "{w:?}"
        );
        // The answer says the same, naming the artifact.
        assert!(
            t.warnings
                .iter()
                .filter(|x| x.starts_with("artifact img: sbom: "))
                .count()
                == 3
        );

        // Strict: the first bad component rejects the document, with its place.
        let err = doc(sbom)
            .into_spec_with(None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("artifact img: sbom:")
                && err.contains("components[1].purl")
                && err.contains("no version"),
            "{err}"
        );
        // Strict also refuses a version its ecosystem cannot order.
        let err = doc(cdx(&["pkg:deb/debian/odd@a:b:c"]))
            .into_spec_with(None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("components[0].purl") && err.contains("invalid dpkg version"),
            "{err}"
        );
    }

    #[test]
    fn an_sbom_with_nothing_valid_left_is_refused() {
        let err = doc(cdx(&["not-a-purl", "pkg:npm/x"]))
            .into_spec(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no valid component left")
                && err.contains("2 skipped")
                && err.contains("not-a-purl"),
            "{err}"
        );
        // An SBOM without components is an own, empty inventory, as before.
        let t = doc(cdx(&[])).into_spec(None).unwrap();
        assert_eq!(t.spec.components.as_deref(), Some(&[][..]));
        assert!(t.spec.warnings.is_empty());
    }

    #[test]
    fn the_components_list_stays_strict() {
        let d = |purls: Value| {
            ArtifactDoc::parse(
                &serde_json::json!({"id": "img", "kind": "image", "tenant": "acme", "components": purls})
                    .to_string(),
            )
            .unwrap()
        };
        let err = d(serde_json::json!(["pkg:npm/a@1", "bad"]))
            .into_spec(None)
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidComponent { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("components[1]"), "{err}");
        let err = d(serde_json::json!(["pkg:npm/a"]))
            .into_spec(None)
            .unwrap_err();
        assert!(err.to_string().contains("needs a version"), "{err}");
        // A version that cannot be ordered is kept and reported.
        let t = d(serde_json::json!(["pkg:npm/a@latest"]))
            .into_spec(None)
            .unwrap();
        assert_eq!(t.spec.components.as_deref().unwrap(), ["pkg:npm/a@latest"]);
        assert_eq!(t.spec.warnings.len(), 1);
        assert!(
            t.spec.warnings[0].contains("components[0]: pkg:npm/a@latest: invalid semver version"),
            "{:?}",
            t.spec.warnings
        );
    }

    #[test]
    fn warnings_are_bounded() {
        let many: Vec<String> = (0..500).map(|i| format!("not-a-purl-{i}")).collect();
        let mut purls: Vec<&str> = many.iter().map(String::as_str).collect();
        purls.push("pkg:npm/a@1");
        let t = doc(cdx(&purls)).into_spec(None).unwrap();
        assert_eq!(t.spec.warnings.len(), WARNINGS_MAX);
        assert_eq!(
            t.spec.warnings.last().unwrap(),
            &format!("… and {} more", 500 - (WARNINGS_MAX - 1))
        );
        t.spec.validate().unwrap();
    }
}
