//! Where to patch: remedy plans down the lineage, and what a patched
//! successor would clear.
//!
//! An affected artifact carries one or more hits, each with the artifact
//! where it came in (`introduced_by`); the *chain* of a hit is the lineage
//! path from there down to the affected artifact. For a tenant T:
//!
//! - a **step** sits at the top-most artifact X that T owns on a chain;
//! - X introduced the hit itself (X is `introduced_by`): T must
//!   **rebuild** X with the fix — nothing to wait for;
//! - else the hit came from upstream, through X's parent P (owned by
//!   another tenant): an instance is **relaunched** from P's successor and
//!   every instance of T launched from P is one step (its `artifact` is P);
//!   anything else is **rebased** onto P's successor;
//! - `onto` names the newest successor of P (along `supersedes`) that T may
//!   see and that the record does not affect; without one the step
//!   `waits_for` P (the upstream artifact whose successor it needs);
//! - a step `clears` T's affected artifacts whose chains pass through it;
//!   an artifact with hits on several chains is listed under each of their
//!   steps and is clear once all are done.
//!
//! Steps are ordered top-down (depth of their artifact, then id).
//!
//! A successor of U **clears** (for the ranking and the what-if) every
//! affected artifact strictly below U whose every chain passes through U —
//! that is, U is on the path from the lowest `introduced_by` of its hits
//! down to it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::catalog::{Actor, ArtIdx, Catalog, TenantIdx};
use crate::model::Kind;
use crate::propagate::Impact;

/// What a step asks of its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Make X again from the successor of its parent.
    Rebase,
    /// Change X's own inventory (the tenant brought the component in).
    Rebuild,
    /// Launch the instances again from the successor of their parent.
    Relaunch,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rebase => "rebase",
            Action::Rebuild => "rebuild",
            Action::Relaunch => "relaunch",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Whose step it is.
    pub tenant: TenantIdx,
    /// The artifact to rebase or rebuild, or the parent the instances are
    /// relaunched from.
    pub artifact: ArtIdx,
    pub action: Action,
    /// The successor to move onto, when one exists.
    pub onto: Option<ArtIdx>,
    /// The upstream artifact whose successor the step needs, when none
    /// exists yet.
    pub waits_for: Option<ArtIdx>,
    /// The tenant's affected artifacts this step is needed for, in catalog
    /// (creation) order.
    pub clears: Vec<ArtIdx>,
    /// Lineage depth of `artifact` (roots are 0).
    pub depth: usize,
}

/// Who a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFor {
    /// One tenant's steps.
    Tenant(TenantIdx),
    /// Every tenant's steps (an admin's view).
    All,
}

/// The newest successor of each artifact that has one, along `supersedes`
/// chains: built once per question from [`Catalog::successor_map`].
#[derive(Debug, Default)]
pub struct Successors {
    map: HashMap<ArtIdx, Vec<ArtIdx>>,
}

impl Successors {
    pub fn of(catalog: &Catalog) -> Successors {
        Successors {
            map: catalog.successor_map(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every artifact that is some artifact's successor.
    fn all(&self) -> impl Iterator<Item = ArtIdx> + '_ {
        self.map.values().flatten().copied()
    }

    /// The successor to move onto from `p`: walking the chain of newest
    /// successors (a newer successor of the same artifact replaces the
    /// older), the newest one the actor may see that `clean` accepts.
    pub fn best(
        &self,
        catalog: &Catalog,
        p: ArtIdx,
        actor: &Actor,
        clean: impl Fn(ArtIdx) -> bool,
    ) -> Option<ArtIdx> {
        let mut best = None;
        let mut cur = p;
        for _ in 0..crate::catalog::LINEAGE_DEPTH_MAX {
            let Some(next) = self.map.get(&cur).and_then(|v| v.last()).copied() else {
                break;
            };
            if catalog.may_see_idx(actor, next) && clean(next) {
                best = Some(next);
            }
            cur = next;
        }
        best
    }
}

/// Lineage depth of an artifact (roots are 0).
fn depth(catalog: &Catalog, a: ArtIdx) -> usize {
    catalog.ancestors(a).count()
}

/// The distinct `introduced_by` of an artifact's hits.
fn introductions(hits: &[crate::propagate::ComponentHit]) -> impl Iterator<Item = ArtIdx> + '_ {
    hits.iter().enumerate().filter_map(|(i, h)| {
        (!hits[..i].iter().any(|e| e.introduced_by == h.introduced_by)).then_some(h.introduced_by)
    })
}

/// The remedy plan of one record's impact for a tenant, or for every
/// tenant. `viewer` decides which successors may be named.
pub fn plan(catalog: &Catalog, impact: &Impact<'_>, who: PlanFor, viewer: &Actor) -> Vec<Step> {
    let successors = Successors::of(catalog);
    // Which successors the record affects (a successor that still carries
    // it is not a remedy): one pass over the impact, only when any exist.
    let affected_successors: HashSet<ArtIdx> = if successors.is_empty() {
        HashSet::new()
    } else {
        let candidates: HashSet<ArtIdx> = successors.all().collect();
        impact
            .iter()
            .map(|(a, _)| a)
            .filter(|a| candidates.contains(a))
            .collect()
    };
    let mut steps: HashMap<(ArtIdx, Action, TenantIdx), Vec<ArtIdx>> = HashMap::new();
    for group in &impact.groups {
        for &a in group.members.iter() {
            let tenant = catalog.node(a).tenant;
            if let PlanFor::Tenant(t) = who
                && t != tenant
            {
                continue;
            }
            for intro in introductions(&group.hits) {
                let key = step_of(catalog, tenant, intro, a);
                steps.entry((key.0, key.1, tenant)).or_default().push(a);
            }
        }
    }
    let mut out: Vec<Step> = steps
        .into_iter()
        .map(|((artifact, action, tenant), mut clears)| {
            clears.sort_unstable();
            clears.dedup();
            let (onto, waits_for) = match action {
                Action::Rebuild => (None, None),
                Action::Rebase | Action::Relaunch => {
                    let upstream = match action {
                        Action::Relaunch => Some(artifact),
                        _ => catalog.node(artifact).parent,
                    };
                    match upstream {
                        None => (None, None),
                        Some(p) => {
                            let reader = match viewer {
                                Actor::Admin => Actor::Tenant(catalog.tenant_id(tenant).clone()),
                                other => other.clone(),
                            };
                            match successors
                                .best(catalog, p, &reader, |s| !affected_successors.contains(&s))
                            {
                                Some(s) => (Some(s), None),
                                None => (None, Some(p)),
                            }
                        }
                    }
                }
            };
            Step {
                tenant,
                artifact,
                action,
                onto,
                waits_for,
                clears,
                depth: depth(catalog, artifact),
            }
        })
        .collect();
    out.sort_by(|x, y| {
        (x.depth, &catalog.node(x.artifact).id, x.action, x.tenant).cmp(&(
            y.depth,
            &catalog.node(y.artifact).id,
            y.action,
            y.tenant,
        ))
    });
    out
}

/// The step a chain from `intro` down to `a` (owned by `tenant`) asks for:
/// its artifact and action.
fn step_of(catalog: &Catalog, tenant: TenantIdx, intro: ArtIdx, a: ArtIdx) -> (ArtIdx, Action) {
    // The top-most artifact the tenant owns on the chain: walk up from `a`
    // to `intro`, remembering the last owned one seen.
    let mut top = a;
    let mut cur = a;
    while cur != intro {
        let Some(p) = catalog.node(cur).parent else {
            break;
        };
        cur = p;
        if catalog.node(cur).tenant == tenant {
            top = cur;
        }
    }
    if top == intro {
        return (top, Action::Rebuild);
    }
    let node = catalog.node(top);
    match (node.kind, node.parent) {
        (Kind::Instance, Some(p)) => (p, Action::Relaunch),
        _ => (top, Action::Rebase),
    }
}

/// How many (tenant, root cause, step) groups an impact falls into — the
/// root cause being where a hit came in (`introduced_by`): what one notice
/// per root cause and step would send, against one per affected artifact.
pub fn root_cause_groups(catalog: &Catalog, impact: &Impact<'_>) -> usize {
    let mut keys: HashSet<(TenantIdx, ArtIdx, ArtIdx, Action)> = HashSet::new();
    for group in &impact.groups {
        for &a in group.members.iter() {
            let tenant = catalog.node(a).tenant;
            for intro in introductions(&group.hits) {
                let (at, action) = step_of(catalog, tenant, intro, a);
                keys.insert((tenant, intro, at, action));
            }
        }
    }
    keys.len()
}

/// What a successor of one artifact would clear, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clearance {
    pub artifacts: u64,
    pub tenants: u64,
    /// Artifacts by kind, in [`Kind::ALL`] order.
    pub by_kind: [u64; 4],
}

/// For every artifact U: what a patched successor of U would clear of this
/// impact (see the module's rules). One walk up from each affected
/// artifact to its lowest `introduced_by`.
pub fn clearances(catalog: &Catalog, impact: &Impact<'_>) -> HashMap<ArtIdx, Clearance> {
    let mut per: HashMap<ArtIdx, (Clearance, HashSet<TenantIdx>)> = HashMap::new();
    for group in &impact.groups {
        // The lowest introduction is the deepest; every introduction is
        // an ancestor-or-self of every member, so depth orders them.
        let Some(lowest) = introductions(&group.hits).max_by_key(|&i| depth(catalog, i)) else {
            continue;
        };
        for &a in group.members.iter() {
            let node = catalog.node(a);
            let kind = kind_slot(node.kind);
            let mut cur = a;
            while cur != lowest {
                let Some(p) = catalog.node(cur).parent else {
                    break;
                };
                cur = p;
                let (c, tenants) = per.entry(cur).or_default();
                c.artifacts += 1;
                c.by_kind[kind] += 1;
                tenants.insert(node.tenant);
            }
        }
    }
    per.into_iter()
        .map(|(u, (mut c, tenants))| {
            c.tenants = tenants.len() as u64;
            (u, c)
        })
        .collect()
}

/// What a successor of `u` would clear (zero when it clears nothing).
pub fn if_successor_of(catalog: &Catalog, impact: &Impact<'_>, u: ArtIdx) -> Clearance {
    clearances(catalog, impact).remove(&u).unwrap_or_default()
}

/// The artifacts whose successor would clear the most, best first (ties
/// by id), only those `viewer` may see, at most `limit`.
pub fn ranking(
    catalog: &Catalog,
    impact: &Impact<'_>,
    viewer: &Actor,
    limit: usize,
) -> Vec<(ArtIdx, Clearance)> {
    let mut all: Vec<(ArtIdx, Clearance)> = clearances(catalog, impact)
        .into_iter()
        .filter(|(u, _)| catalog.may_see_idx(viewer, *u))
        .collect();
    all.sort_by(|x, y| {
        y.1.artifacts
            .cmp(&x.1.artifacts)
            .then_with(|| catalog.node(x.0).id.cmp(&catalog.node(y.0).id))
    });
    all.truncate(limit);
    all
}

/// Who is exposed below an artifact if it breaks: its live descendants
/// (itself excluded) by kind, and how many tenants own them.
pub fn exposure(catalog: &Catalog, u: ArtIdx) -> Clearance {
    let mut c = Clearance::default();
    let mut tenants: HashSet<TenantIdx> = HashSet::new();
    for d in catalog.descendants(u) {
        let node = catalog.node(d);
        if node.removed {
            continue;
        }
        c.artifacts += 1;
        c.by_kind[kind_slot(node.kind)] += 1;
        tenants.insert(node.tenant);
    }
    c.tenants = tenants.len() as u64;
    c
}

fn kind_slot(kind: Kind) -> usize {
    kind.code() as usize
}

/// Steps grouped by tenant, for readers that show one plan per tenant.
pub fn by_tenant(steps: &[Step]) -> BTreeMap<TenantIdx, Vec<&Step>> {
    let mut out: BTreeMap<TenantIdx, Vec<&Step>> = BTreeMap::new();
    for s in steps {
        out.entry(s.tenant).or_default().push(s);
    }
    out
}
