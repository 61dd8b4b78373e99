//! Answers shaped by PRODUCT.md §5: the `affected` document shared by
//! `patchline affected --json` and `GET /v1/advisories/{id}/affected`.

use patchline_core::propagate::{ComponentHit, Impact, path};
use patchline_core::{Actor, ArtIdx, Catalog, Kind, Record, Visibility};
use serde::{Deserialize, Serialize};

/// One affected component of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AffectedComponent {
    pub purl: String,
    pub introduced_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// One affected artifact.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AffectedArtifact {
    pub artifact: String,
    pub kind: Kind,
    pub tenant: String,
    pub components: Vec<AffectedComponent>,
    pub path: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct AffectedReport {
    pub advisory: String,
    pub affected: Vec<AffectedArtifact>,
    /// Entries patchline cannot evaluate (unknown ecosystem, bad range).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
}

/// Placeholder for an id the reader may not see (another tenant's private
/// artifact on a lineage path).
pub const HIDDEN: &str = "(private)";

/// Affected artifacts visible to `actor`, sorted by artifact id, each with
/// its hits. Tenants only get their own artifacts (PRODUCT.md §4.6).
pub fn affected_rows<'a>(
    catalog: &Catalog,
    impact: &'a Impact<'_>,
    actor: &Actor,
) -> Vec<(ArtIdx, &'a [ComponentHit])> {
    let mut rows: Vec<(ArtIdx, &[ComponentHit])> = impact
        .iter()
        .filter(|&(a, _)| match actor {
            Actor::Admin => true,
            Actor::Tenant(t) => catalog.tenant_id(catalog.node(a).tenant) == t,
        })
        .collect();
    rows.sort_unstable_by(|x, y| catalog.node(x.0).id.cmp(&catalog.node(y.0).id));
    rows
}

/// Renders one row; ids the actor may not see are replaced by [`HIDDEN`].
pub fn render_row(
    catalog: &Catalog,
    actor: &Actor,
    a: ArtIdx,
    hits: &[ComponentHit],
) -> AffectedArtifact {
    let name = |x: ArtIdx| -> String {
        let node = catalog.node(x);
        let visible = match actor {
            Actor::Admin => true,
            Actor::Tenant(t) => {
                node.visibility == Visibility::Public || catalog.tenant_id(node.tenant) == t
            }
        };
        if visible {
            node.id.to_string()
        } else {
            HIDDEN.to_string()
        }
    };
    let node = catalog.node(a);
    // The path starts at the top-most introduction among the hits: every
    // introduced_by lies on the artifact's ancestor chain.
    let top = hits
        .iter()
        .map(|h| h.introduced_by)
        .max_by_key(|&i| depth_from(catalog, a, i))
        .unwrap_or(a);
    let mut components: Vec<AffectedComponent> = hits
        .iter()
        .filter_map(|h| {
            h.component.map(|c| AffectedComponent {
                purl: catalog.components().get(c).purl.to_string(),
                introduced_by: name(h.introduced_by),
                fixed: h.fixed.as_deref().map(str::to_string),
            })
        })
        .collect();
    components.sort_by(|x, y| x.purl.cmp(&y.purl));
    AffectedArtifact {
        artifact: node.id.to_string(),
        kind: node.kind,
        tenant: catalog.tenant_id(node.tenant).to_string(),
        components,
        path: path(catalog, top, a).into_iter().map(name).collect(),
    }
}

/// How many steps up from `a` the ancestor `top` is.
fn depth_from(catalog: &Catalog, a: ArtIdx, top: ArtIdx) -> usize {
    if a == top {
        return 0;
    }
    catalog
        .ancestors(a)
        .position(|p| p == top)
        .map_or(0, |i| i + 1)
}

/// Builds the whole report in memory (the HTTP answer; the CLI streams).
pub fn affected_report(
    catalog: &Catalog,
    record: &Record,
    impact: &Impact<'_>,
    actor: &Actor,
) -> AffectedReport {
    let affected = affected_rows(catalog, impact, actor)
        .into_iter()
        .map(|(a, hits)| render_row(catalog, actor, a, hits))
        .collect();
    let (unsupported, withdrawn) = match record {
        Record::Advisory(adv) => (adv.unsupported.clone(), adv.withdrawn),
        Record::Failure(f) => (Vec::new(), f.withdrawn),
    };
    AffectedReport {
        advisory: record.id().to_string(),
        affected,
        unsupported,
        withdrawn,
    }
}

/// Affected artifacts per kind, in `Kind::ALL` order.
pub fn counts_by_kind(catalog: &Catalog, impact: &Impact<'_>) -> [u64; 4] {
    let mut counts = [0u64; 4];
    for g in &impact.groups {
        for &a in g.members.iter() {
            counts[catalog.node(a).kind.code() as usize] += 1;
        }
    }
    counts
}
