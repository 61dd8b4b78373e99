//! The artifact JSON of CONTRACT.md §5 (one line of `import artifacts`, the
//! body of `POST /v1/artifacts`) and its translation into an
//! [`ArtifactSpec`]: inline SBOMs are parsed here, purls canonicalised.

use std::collections::BTreeMap;
use std::str::FromStr;

use patchline_formats::inventory::{Hint, parse_json_value};
use patchline_formats::purl::Purl;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CatalogError;
use crate::model::{AdvisoryId, ArtifactId, ArtifactSpec, Kind, Relation, TenantId, Visibility};

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
    /// token's tenant) and is required when the document has none.
    pub fn into_spec(self, tenant: Option<&TenantId>) -> Result<Translated, CatalogError> {
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
        if let Some(purls) = self.components {
            let mut out = Vec::with_capacity(purls.len());
            for (i, text) in purls.iter().enumerate() {
                let mut purl =
                    Purl::from_str(text).map_err(|e| CatalogError::InvalidComponent {
                        artifact: id.to_string(),
                        purl: text.chars().take(200).collect(),
                        reason: format!("components[{i}]: {e}"),
                    })?;
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
            warnings.extend(
                inventory
                    .warnings
                    .iter()
                    .map(|w| format!("artifact {id}: sbom: {}", w.message)),
            );
            let list = components.get_or_insert_with(Vec::new);
            for mut purl in inventory.components {
                let _ = add_distro(&mut purl, inventory.distro.as_deref().or(distro.as_deref()));
                list.push(purl.to_string());
            }
        }
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
        };
        spec.validate()?;
        Ok(Translated { spec, warnings })
    }
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
