//! Answers shaped by CONTRACT.md §5: the `affected` document shared by
//! `patchline affected --json` and `GET /v1/advisories/{id}/affected`.

use patchline_core::propagate::{ComponentHit, Impact, path};
use patchline_core::{Actor, ArtIdx, Catalog, Kind, Record};
use serde::Serialize;

pub use patchline_delivery::{AffectedComponent, HIDDEN};

/// One affected artifact.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AffectedArtifact {
    pub artifact: String,
    pub kind: Kind,
    pub tenant: String,
    pub components: Vec<AffectedComponent>,
    pub path: Vec<String>,
}

/// Affected artifacts visible to `actor`, sorted by artifact id, each with
/// its hits. Tenants only get their own artifacts (CONTRACT.md §4.6).
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
    let name = |x: ArtIdx| shown_id(catalog, actor, x);
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

/// The id of `x` as `actor` may see it: itself, or [`HIDDEN`].
pub fn shown_id(catalog: &Catalog, actor: &Actor, x: ArtIdx) -> String {
    if catalog.may_see_idx(actor, x) {
        catalog.node(x).id.to_string()
    } else {
        HIDDEN.to_string()
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

/// Writes the `affected` document for `rows` (already filtered for the
/// actor and sorted), streaming: rows are rendered one at a time, so a
/// million of them never sit in memory as one value. `next` is the cursor
/// of the following page when the answer is paged.
pub fn write_affected<W: std::io::Write>(
    out: &mut W,
    catalog: &Catalog,
    record: &Record,
    rows: &[(ArtIdx, &[ComponentHit])],
    actor: &Actor,
    next: Option<Option<&str>>,
    filters: Option<&serde_json::Value>,
) -> std::io::Result<()> {
    // Keep the kind of a writer's own error (a full `Capped` buffer).
    let json = |e: serde_json::Error| match e.io_error_kind() {
        Some(kind) => std::io::Error::new(kind, e),
        None => std::io::Error::other(e),
    };
    // The severity and the filters come before the rows: a reader of a
    // huge answer sees them first.
    write!(
        out,
        "{{\"advisory\":{}",
        serde_json::to_string(record.id().as_str()).map_err(json)?
    )?;
    if let Some(rating) = record.rating() {
        write!(
            out,
            ",\"severity\":{}",
            serde_json::to_string(&rating).map_err(json)?
        )?;
    }
    if let Some(filters) = filters {
        write!(
            out,
            ",\"filters\":{}",
            serde_json::to_string(filters).map_err(json)?
        )?;
    }
    out.write_all(b",\"affected\":[")?;
    for (i, (a, hits)) in rows.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &render_row(catalog, actor, *a, hits)).map_err(json)?;
    }
    out.write_all(b"]")?;
    let (unsupported, withdrawn) = match record {
        Record::Advisory(a) => (a.unsupported.as_slice(), a.withdrawn),
        Record::Failure(f) => (&[][..], f.withdrawn),
    };
    if !unsupported.is_empty() {
        write!(
            out,
            ",\"unsupported\":{}",
            serde_json::to_string(unsupported).map_err(json)?
        )?;
    }
    if withdrawn {
        out.write_all(b",\"withdrawn\":true")?;
    }
    if let Some(next) = next {
        write!(
            out,
            ",\"next\":{}",
            serde_json::to_string(&next).map_err(json)?
        )?;
    }
    out.write_all(b"}")
}

/// A buffer that refuses to grow past `max` bytes (an answer's cap).
#[derive(Debug)]
pub struct Capped {
    pub buf: Vec<u8>,
    pub max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "the answer is larger than its cap",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Children of `a`, sorted by id, without removed ones.
pub fn sorted_children(catalog: &Catalog, a: ArtIdx) -> Vec<ArtIdx> {
    let mut c: Vec<ArtIdx> = catalog
        .children(a)
        .iter()
        .copied()
        .filter(|&x| !catalog.node(x).removed)
        .collect();
    c.sort_by(|x, y| catalog.node(*x).id.cmp(&catalog.node(*y).id));
    c
}

/// One node of a lineage tree as `actor` sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TreeNode {
    pub id: String,
    pub kind: Kind,
    /// The owner; absent on nodes the actor may not see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<patchline_core::Relation>,
    pub own_inventory: bool,
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub children: Vec<TreeNode>,
    /// Children left out because the node budget ran out.
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The subtree of `idx` as `actor` sees it, at most `max_nodes` nodes: ids
/// it may not see read [`HIDDEN`], and such nodes appear only when they
/// lead to nodes it may see (another tenant's public image built on a
/// private one); anything else of other tenants is left out.
pub fn lineage_tree(catalog: &Catalog, idx: ArtIdx, actor: &Actor, max_nodes: usize) -> TreeNode {
    fn leads_to_visible(catalog: &Catalog, a: ArtIdx, actor: &Actor) -> bool {
        let mut stack = vec![a];
        while let Some(x) = stack.pop() {
            if catalog.may_see_idx(actor, x) {
                return true;
            }
            stack.extend(catalog.children(x).iter().copied());
        }
        false
    }
    fn go(catalog: &Catalog, a: ArtIdx, actor: &Actor, budget: &mut usize) -> TreeNode {
        *budget = budget.saturating_sub(1);
        let n = catalog.node(a);
        let visible = catalog.may_see_idx(actor, a);
        let mut node = TreeNode {
            id: shown_id(catalog, actor, a),
            kind: n.kind,
            tenant: visible.then(|| catalog.tenant_id(n.tenant).to_string()),
            relation: if visible { n.relation } else { None },
            own_inventory: visible && n.inventory.is_some(),
            children: Vec::new(),
            more: 0,
        };
        for c in sorted_children(catalog, a) {
            if !catalog.may_see_idx(actor, c) && !leads_to_visible(catalog, c, actor) {
                continue;
            }
            if *budget == 0 {
                node.more += 1;
                continue;
            }
            node.children.push(go(catalog, c, actor, budget));
        }
        node
    }
    let mut budget = max_nodes.max(1);
    go(catalog, idx, actor, &mut budget)
}

/// Descendants of `idx` per kind (in `Kind::ALL` order) that `actor` may
/// see.
pub fn visible_subtree_counts(catalog: &Catalog, idx: ArtIdx, actor: &Actor) -> [u64; 4] {
    if matches!(actor, Actor::Admin) {
        return catalog.subtree_counts(idx);
    }
    let mut counts = [0u64; 4];
    for d in catalog.descendants(idx) {
        let n = catalog.node(d);
        if !n.removed && catalog.may_see_idx(actor, d) {
            counts[n.kind.code() as usize] += 1;
        }
    }
    counts
}

/// Affected artifacts per kind among those `actor` reads in `affected`
/// (all for an admin, its own for a tenant).
pub fn counts_for(catalog: &Catalog, impact: &Impact<'_>, actor: &Actor) -> [u64; 4] {
    match actor {
        Actor::Admin => counts_by_kind(catalog, impact),
        Actor::Tenant(t) => {
            let mut counts = [0u64; 4];
            for (a, _) in impact.iter() {
                let n = catalog.node(a);
                if catalog.tenant_id(n.tenant) == t {
                    counts[n.kind.code() as usize] += 1;
                }
            }
            counts
        }
    }
}

/// One step of a remedy plan, as answered (CONTRACT.md §5).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemedyStepDoc {
    /// The artifact to rebase or rebuild, or the template, replica or
    /// image the instances are relaunched from.
    pub artifact: String,
    /// `rebase`, `rebuild` or `relaunch`.
    pub action: &'static str,
    /// The successor to move onto, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    /// The upstream artifact whose successor the step waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// For a rebuild already done: the clean successor of the artifact
    /// (what derives from it moves there; the artifact can be retired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The affected artifacts the step is needed for.
    pub clears: Vec<String>,
    /// Whose step it is (an admin's plan of every tenant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What a patched successor of one artifact would clear: counts across
/// tenants.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClearanceDoc {
    pub artifact: String,
    /// Affected artifacts below it that its successor would clear.
    pub clears: u64,
    /// How many tenants own them.
    pub tenants: u64,
    /// Those artifacts by kind.
    pub by_kind: KindCountsDoc,
}

/// Artifacts per kind.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct KindCountsDoc {
    pub image: u64,
    pub template: u64,
    pub replica: u64,
    pub instance: u64,
}

impl From<[u64; 4]> for KindCountsDoc {
    fn from(c: [u64; 4]) -> Self {
        KindCountsDoc {
            image: c[0],
            template: c[1],
            replica: c[2],
            instance: c[3],
        }
    }
}

/// The remedy document of one record (CONTRACT.md §5): the plan of one
/// tenant (or, for an admin without a tenant, of every tenant), the
/// ranking of artifacts whose successor would clear the most, and the
/// answer to "what if a successor of X existed".
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemedyDoc {
    pub advisory: String,
    /// The tenant the plan is for; absent when it is every tenant's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Steps top-down.
    pub steps: Vec<RemedyStepDoc>,
    /// Artifacts the reader may see whose patched successor would clear
    /// the most affected artifacts, best first (publishers and admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Vec<ClearanceDoc>>,
    /// The answer to `--if-successor-of`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_successor_of: Option<ClearanceDoc>,
}

/// Longest ranking answered.
pub const RANKING_MAX: usize = 20;

/// Whose artifacts a ranking may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankingScope {
    /// Every artifact the reader may see (admins, the record's owner).
    Visible,
    /// Only this tenant's own artifacts (another publisher: what its own
    /// successors would clear).
    Owned(patchline_core::TenantIdx),
}

/// What the remedy document holds for whom.
#[derive(Debug)]
pub struct RemedyAsk<'a> {
    /// Who reads: masks ids and picks the successors that may be named.
    pub actor: &'a Actor,
    /// Whose plan: `None` is every tenant's (admins only).
    pub tenant: Option<patchline_core::TenantIdx>,
    /// Which ranking to include, if any.
    pub ranking: Option<RankingScope>,
    /// Answer what a successor of this artifact would clear.
    pub if_successor_of: Option<ArtIdx>,
}

/// Builds the remedy document of a record from its impact.
pub fn remedy_doc(
    catalog: &Catalog,
    record: &Record,
    impact: &Impact<'_>,
    ask: &RemedyAsk<'_>,
) -> RemedyDoc {
    use patchline_core::remedy::{self, PlanFor};
    let who = match ask.tenant {
        Some(t) => PlanFor::Tenant(t),
        None => PlanFor::All,
    };
    let name = |x: ArtIdx| shown_id(catalog, ask.actor, x);
    let steps = remedy::plan(catalog, impact, who, ask.actor)
        .into_iter()
        .map(|s| RemedyStepDoc {
            artifact: name(s.artifact),
            action: s.action.as_str(),
            onto: s.onto.map(name),
            waits_for: s.waits_for.map(name),
            superseded_by: s.superseded_by.map(name),
            clears: s.clears.iter().map(|&a| name(a)).collect(),
            tenant: ask
                .tenant
                .is_none()
                .then(|| catalog.tenant_id(s.tenant).to_string()),
        })
        .collect();
    let clearance = |u: ArtIdx, c: remedy::Clearance| ClearanceDoc {
        artifact: name(u),
        clears: c.artifacts,
        tenants: c.tenants,
        by_kind: c.by_kind.into(),
    };
    RemedyDoc {
        advisory: record.id().to_string(),
        tenant: ask.tenant.map(|t| catalog.tenant_id(t).to_string()),
        steps,
        ranking: ask.ranking.map(|scope| {
            let limit = match scope {
                RankingScope::Visible => RANKING_MAX,
                RankingScope::Owned(_) => usize::MAX,
            };
            remedy::ranking(catalog, impact, ask.actor, limit)
                .into_iter()
                .filter(|(u, _)| match scope {
                    RankingScope::Visible => true,
                    RankingScope::Owned(t) => catalog.node(*u).tenant == t,
                })
                .take(RANKING_MAX)
                .map(|(u, c)| clearance(u, c))
                .collect()
        }),
        if_successor_of: ask
            .if_successor_of
            .map(|u| clearance(u, remedy::if_successor_of(catalog, impact, u))),
    }
}

/// Who would inherit a failure of one artifact: its live descendants,
/// counts across tenants.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExposureDoc {
    pub artifact: String,
    /// Live artifacts below it.
    pub exposed: u64,
    /// How many tenants own them.
    pub tenants: u64,
    pub by_kind: KindCountsDoc,
}

/// Who is exposed below an artifact if it breaks.
pub fn exposure_doc(catalog: &Catalog, actor: &Actor, u: ArtIdx) -> ExposureDoc {
    let c = patchline_core::remedy::exposure(catalog, u);
    ExposureDoc {
        artifact: shown_id(catalog, actor, u),
        exposed: c.artifacts,
        tenants: c.tenants,
        by_kind: c.by_kind.into(),
    }
}
