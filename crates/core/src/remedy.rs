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

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::catalog::{Actor, ArtIdx, Catalog, Link, TenantIdx};
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

    pub fn parse(text: &str) -> Option<Action> {
        [Action::Rebase, Action::Rebuild, Action::Relaunch]
            .into_iter()
            .find(|a| a.as_str() == text)
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
    /// For a rebuild: the clean successor of the artifact that already
    /// exists (the newest the reader may see) — the rebuild is done; what
    /// is left is moving what derives from the artifact onto it.
    pub superseded_by: Option<ArtIdx>,
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

/// Successors along `supersedes` chains, read from the catalog's index.
#[derive(Debug, Clone, Copy)]
pub struct Successors<'a> {
    catalog: &'a Catalog,
}

impl<'a> Successors<'a> {
    pub fn of(catalog: &'a Catalog) -> Successors<'a> {
        Successors { catalog }
    }

    /// The successor to move onto from `p`: of every artifact that
    /// supersedes `p`, directly or through other successors, the newest
    /// (created last: the largest catalog index) that the actor may see
    /// and that `clean` accepts. A newer successor the actor may not see,
    /// or one that still carries the record, never hides an older good one.
    pub fn best(
        &self,
        catalog: &Catalog,
        p: ArtIdx,
        actor: &Actor,
        mut clean: impl FnMut(ArtIdx) -> bool,
    ) -> Option<ArtIdx> {
        let mut best: Option<ArtIdx> = None;
        let mut seen: HashSet<ArtIdx> = HashSet::default();
        let mut stack = vec![p];
        while let Some(cur) = stack.pop() {
            if seen.len() > SUCCESSORS_VISITED_MAX {
                break;
            }
            for &next in self.catalog.successors(cur) {
                if !seen.insert(next) {
                    continue;
                }
                stack.push(next);
                if best.is_none_or(|b| next > b) && catalog.may_see_idx(actor, next) && clean(next)
                {
                    best = Some(next);
                }
            }
        }
        best
    }
}

/// Most successors visited from one artifact (bounds a question on a
/// pathological catalog).
const SUCCESSORS_VISITED_MAX: usize = 4096;

/// Whether the impact lists `s`. An advisory's groups are inventory
/// holders, each with the artifacts inheriting from it, so `s` is affected
/// when the nearest artifact at or above it with an own inventory heads a
/// group; a failure's one group is read whole.
fn is_affected(catalog: &Catalog, impact: &Impact<'_>, heads: &HashSet<ArtIdx>, s: ArtIdx) -> bool {
    let failure = impact
        .groups
        .iter()
        .any(|g| g.hits.iter().any(|h| h.component.is_none()));
    if failure {
        return impact.groups.iter().any(|g| g.members.contains(&s));
    }
    std::iter::once(s)
        .chain(catalog.ancestors(s))
        .find(|&a| catalog.node(a).inventory.is_some())
        .is_some_and(|h| heads.contains(&h))
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
    // it is no remedy), asked only when the catalog has successors.
    let heads: HashSet<ArtIdx> = if catalog.has_successors() {
        impact
            .groups
            .iter()
            .filter_map(|g| g.members.first().copied())
            .collect()
    } else {
        HashSet::default()
    };
    // Steps in the order first met, found by key (the chain walks are
    // cached by the step finder).
    let mut slots: HashMap<(ArtIdx, Action, TenantIdx), usize> = HashMap::default();
    let mut steps: Vec<((ArtIdx, Action, TenantIdx), Vec<ArtIdx>)> = Vec::new();
    let mut finder = StepFinder::default();
    let mut intros: Vec<ArtIdx> = Vec::new();
    let mut intros_of: Option<usize> = None;
    // `link`: `a`'s packed owner and parent (the node itself is read only
    // when a chain is walked).
    let mut visit = |gi: usize, a: ArtIdx, link: Link| {
        if intros_of != Some(gi) {
            intros.clear();
            intros.extend(introductions(&impact.groups[gi].hits));
            intros_of = Some(gi);
        }
        for &intro in &intros {
            let key = finder.step(catalog, link, intro, a);
            let full = (key.0, key.1, link.tenant);
            let slot = *slots.entry(full).or_insert_with(|| {
                steps.push((full, Vec::new()));
                steps.len() - 1
            });
            steps[slot].1.push(a);
        }
    };
    match who {
        // Only the tenant's own affected artifacts (the impact indexes
        // them by owner once).
        PlanFor::Tenant(t) => {
            for (gi, a, link) in impact.owned_by(catalog, t) {
                visit(gi, a, link);
            }
        }
        // Tenant by tenant through the same index: the links are read in
        // order, and a tenant's artifacts under one parent follow each
        // other, so the step finder's last chain serves them.
        PlanFor::All => {
            for t in 0..catalog.tenants().len() {
                for (gi, a, link) in impact.owned_by(catalog, TenantIdx(t as u32)) {
                    visit(gi, a, link);
                }
            }
        }
    }
    let mut best_memo: HashMap<(ArtIdx, ReaderKey), Option<ArtIdx>> = HashMap::default();
    let mut clean_memo: HashMap<ArtIdx, bool> = HashMap::default();
    let mut out: Vec<Step> = steps
        .into_iter()
        .map(|((artifact, action, tenant), mut clears)| {
            clears.sort_unstable();
            clears.dedup();
            let reader = match viewer {
                Actor::Admin => ReaderKey::Tenant(tenant),
                Actor::Tenant(_) => ReaderKey::Viewer,
            };
            // The best successor of one artifact for one reader, found
            // once per plan: steps sharing an upstream (every image a
            // tenant built on one base) share the walk, and each
            // successor's cleanness is asked once — a long chain of
            // successors under many steps costs the chain once, not once
            // per step (found from outside: minutes under the lock).
            let mut best = |p: ArtIdx| -> Option<ArtIdx> {
                if !catalog.has_successors() {
                    return None;
                }
                if let Some(&hit) = best_memo.get(&(p, reader)) {
                    return hit;
                }
                let who = match viewer {
                    Actor::Admin => Actor::Tenant(catalog.tenant_id(tenant).clone()),
                    other => other.clone(),
                };
                let found = successors.best(catalog, p, &who, |s| {
                    *clean_memo
                        .entry(s)
                        .or_insert_with(|| !is_affected(catalog, impact, &heads, s))
                });
                best_memo.insert((p, reader), found);
                found
            };
            let (onto, waits_for, superseded_by) = match action {
                Action::Rebuild => (None, None, best(artifact)),
                Action::Rebase | Action::Relaunch => match upstream(catalog, artifact, action) {
                    None => (None, None, None),
                    Some(p) => match best(p) {
                        Some(s) => (Some(s), None, None),
                        None => (None, Some(p), None),
                    },
                },
            };
            Step {
                tenant,
                artifact,
                action,
                onto,
                waits_for,
                superseded_by,
                clears,
                depth: depth(catalog, artifact),
            }
        })
        .collect();
    out.sort_by_cached_key(|s| order_key(catalog, s, viewer));
    out
}

/// The upstream artifact whose successor a step moves onto: a relaunch's
/// own artifact (the parent its instances were launched from), a rebase's
/// parent; a rebuild has none. What the step `waits_for` while there is
/// no successor.
pub fn upstream(catalog: &Catalog, step: ArtIdx, action: Action) -> Option<ArtIdx> {
    match action {
        Action::Rebuild => None,
        Action::Relaunch => Some(step),
        Action::Rebase => catalog.link(step).parent(),
    }
}

/// Where a step goes in a plan `viewer` reads: top-down (depth), then by
/// the artifact's id — ids the viewer may see first, in id order, then the
/// ones it may not, in creation order (sorting those by their hidden ids
/// would let the place of `(private)` among the viewer's own steps tell
/// the hidden id's letters) — then action, then tenant.
pub fn order_key<'c>(
    catalog: &'c Catalog,
    s: &Step,
    viewer: &Actor,
) -> (usize, bool, &'c str, u32, Action, TenantIdx) {
    let seen = catalog.may_see_idx(viewer, s.artifact);
    let (id, idx) = if seen {
        (catalog.node(s.artifact).id.as_str(), 0)
    } else {
        ("", s.artifact.0)
    };
    (s.depth, !seen, id, idx, s.action, s.tenant)
}

/// Whose eyes pick a successor: the plan's one viewer, or (an admin's
/// plan of every tenant) each step's tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ReaderKey {
    Viewer,
    Tenant(TenantIdx),
}

/// Finds the step of each affected artifact, remembering the last chain
/// walked: members of one group come in lineage order, so siblings (the
/// instances of one replica) follow each other and share it.
#[derive(Default, Debug)]
pub struct StepFinder {
    /// (parent, tenant, introduction) → the top-most artifact the tenant
    /// owns from the introduction down to that parent.
    last: Option<((ArtIdx, TenantIdx, ArtIdx), Option<ArtIdx>)>,
}

impl StepFinder {
    /// The step the chain from `intro` down to `a` (whose packed link is
    /// `link`) asks of `a`'s owner.
    pub fn step(
        &mut self,
        catalog: &Catalog,
        link: Link,
        intro: ArtIdx,
        a: ArtIdx,
    ) -> (ArtIdx, Action) {
        let Some(p) = link.parent().filter(|_| a != intro) else {
            return (a, Action::Rebuild);
        };
        let key = (p, link.tenant, intro);
        let above = match self.last {
            Some((k, above)) if k == key => above,
            _ => {
                let above = top_owned(catalog, link.tenant, intro, p);
                self.last = Some((key, above));
                above
            }
        };
        step_below(catalog, above, intro, a, link)
    }
}

/// The top-most artifact `tenant` owns on the chain from `intro` down to
/// `p` (`p` is `intro` or below it), if any.
fn top_owned(catalog: &Catalog, tenant: TenantIdx, intro: ArtIdx, p: ArtIdx) -> Option<ArtIdx> {
    let mut top = None;
    let mut cur = p;
    loop {
        let link = catalog.link(cur);
        if link.tenant == tenant {
            top = Some(cur);
        }
        if cur == intro {
            return top;
        }
        match link.parent() {
            Some(up) => cur = up,
            None => return top,
        }
    }
}

/// The step the chain from `intro` down to `a` (not `intro`) asks of `a`'s
/// owner, given the top-most artifact that owner holds above `a` on the
/// chain: rebuild where it came in, relaunch the instances of one parent,
/// rebase anything else.
fn step_below(
    catalog: &Catalog,
    above: Option<ArtIdx>,
    intro: ArtIdx,
    a: ArtIdx,
    link_a: Link,
) -> (ArtIdx, Action) {
    let top = above.unwrap_or(a);
    if top == intro {
        return (top, Action::Rebuild);
    }
    // The packed link, not the node (`a`'s is given: it is often the top).
    let link = if top == a { link_a } else { catalog.link(top) };
    match (link.kind, link.parent()) {
        (Kind::Instance, Some(p)) => (p, Action::Relaunch),
        _ => (top, Action::Rebase),
    }
}

/// The root cause of one affected artifact's notice, which grouped
/// notices share: the owner, the top-most `introduced_by` of its hits (where
/// its lineage path starts) and the step that chain asks of the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootCause {
    pub tenant: TenantIdx,
    pub introduced_by: ArtIdx,
    pub step: ArtIdx,
    pub action: Action,
}

/// The top-most of the introductions of an artifact's hits (the one
/// nearest a root; ties: the first listed).
pub fn top_introduction(
    catalog: &Catalog,
    hits: &[crate::propagate::ComponentHit],
) -> Option<ArtIdx> {
    introductions(hits).min_by_key(|&i| depth(catalog, i))
}

impl StepFinder {
    /// The root cause of `a`'s notice whose lineage path starts at `top`
    /// (its top-most introduction).
    pub fn root_cause(&mut self, catalog: &Catalog, top: ArtIdx, a: ArtIdx) -> RootCause {
        let link = catalog.link(a);
        let (step, action) = self.step(catalog, link, top, a);
        RootCause {
            tenant: link.tenant,
            introduced_by: top,
            step,
            action,
        }
    }
}

/// How many (tenant, root cause, step) groups an impact falls into — the
/// root cause being the top-most introduction of an artifact's hits, as
/// for its notice: exactly the grouped notices it makes, against one per
/// affected artifact.
pub fn root_cause_groups(catalog: &Catalog, impact: &Impact<'_>) -> usize {
    let mut keys: HashSet<RootCause> = HashSet::default();
    let mut finder = StepFinder::default();
    for group in &impact.groups {
        let Some(top) = top_introduction(catalog, &group.hits) else {
            continue;
        };
        for &a in group.members.iter() {
            keys.insert(finder.root_cause(catalog, top, a));
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
    let mut per: HashMap<ArtIdx, (Clearance, HashSet<TenantIdx>)> = HashMap::default();
    let mut tenants: Vec<TenantIdx> = Vec::new();
    for group in &impact.groups {
        // The lowest introduction is the deepest; every introduction is
        // an ancestor-or-self of every member, so depth orders them.
        let Some(lowest) = introductions(&group.hits).max_by_key(|&i| depth(catalog, i)) else {
            continue;
        };
        // Siblings (members with one parent) follow each other and share
        // every ancestor: each run is counted once, then walked up once.
        let members = &group.members;
        let mut i = 0;
        while i < members.len() {
            let parent = catalog.link(members[i]).parent();
            let mut counts = [0u64; 4];
            tenants.clear();
            let mut j = i;
            while j < members.len() && catalog.link(members[j]).parent() == parent {
                let a = members[j];
                j += 1;
                if a == lowest {
                    continue;
                }
                let link = catalog.link(a);
                counts[kind_slot(link.kind)] += 1;
                if !tenants.contains(&link.tenant) {
                    tenants.push(link.tenant);
                }
            }
            i = j;
            let n: u64 = counts.iter().sum();
            if n == 0 {
                continue;
            }
            let mut cur = parent;
            while let Some(u) = cur {
                let (c, seen) = per.entry(u).or_default();
                c.artifacts += n;
                for (k, add) in c.by_kind.iter_mut().zip(counts) {
                    *k += add;
                }
                seen.extend(tenants.iter().copied());
                if u == lowest {
                    break;
                }
                cur = catalog.link(u).parent();
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

/// An affected artifact a successor clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cleared {
    pub artifact: ArtIdx,
    /// Its root cause: the top-most `introduced_by` of its hits.
    pub root: ArtIdx,
    /// Its group in the impact (whose hits it carries).
    pub group: usize,
}

/// The affected artifacts a successor of `u` clears (the rule of
/// [`clearances`]: strictly below `u`, every chain through `u`), in the
/// impact's order. What a patch notice is about.
pub fn cleared_by(catalog: &Catalog, impact: &Impact<'_>, u: ArtIdx) -> Vec<Cleared> {
    let below: HashSet<ArtIdx> = catalog.descendants(u).into_iter().collect();
    if below.is_empty() {
        return Vec::new();
    }
    let du = depth(catalog, u);
    let mut out = Vec::new();
    for (g, group) in impact.groups.iter().enumerate() {
        let intros: Vec<(usize, ArtIdx)> = introductions(&group.hits)
            .map(|i| (depth(catalog, i), i))
            .collect();
        // Every introduction is an ancestor-or-self of every member: when
        // the lowest is at or above `u`, a member below `u` has `u` on each
        // of its chains.
        let (Some(&(lowest, _)), Some(&(_, root))) = (
            intros.iter().max_by_key(|(d, _)| *d),
            intros.iter().min_by_key(|(d, _)| *d),
        ) else {
            continue;
        };
        if lowest > du {
            continue;
        }
        out.extend(
            group
                .members
                .iter()
                .filter(|a| below.contains(a))
                .map(|&artifact| Cleared {
                    artifact,
                    root,
                    group: g,
                }),
        );
    }
    out
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
    let mut tenants: HashSet<TenantIdx> = HashSet::default();
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
