//! Propagation (CONTRACT.md §4.4): which artifacts an advisory or failure
//! affects, where each affected component was introduced, and along which
//! lineage path it spread.
//!
//! The work is proportional to what is affected, not to the catalog:
//! 1. the advisory's package names select candidate components through the
//!    source index, and each is evaluated once;
//! 2. the inventory objects holding an affected component are found through
//!    the inverse index and the delta forest (a delta that removes the
//!    component masks it for everything built on it);
//! 3. each artifact owning such an inventory brings along every artifact
//!    that inherits it — precomputed once per catalog generation in
//!    [`Inheritance`], so an advisory hitting a million instances costs a
//!    slice per affected image.

use std::borrow::Cow;
use std::sync::Arc;

// Keys here are small integers chosen by patchline, never by a client:
// a fast non-DoS-resistant hash is fine.
use rustc_hash::FxHashMap as HashMap;

use crate::advisory::{AdvIdx, AdvisoryDb, Entry, Record};
use crate::catalog::{ArtIdx, Catalog, Link, TenantIdx};
use crate::inventory::{ComponentId, InvId};

/// For every artifact owning an inventory, the artifacts that inherit it
/// (itself first), as one compressed table.
#[derive(Debug, Clone)]
pub struct Inheritance {
    generation: u64,
    /// For every artifact, the artifact whose own inventory is in effect
    /// (`u32::MAX`: none, or removed).
    holder_of: Vec<u32>,
    /// `offsets[h]..offsets[h + 1]` indexes `members` for holder `h`.
    offsets: Vec<u32>,
    members: Vec<ArtIdx>,
}

impl Inheritance {
    /// Walks the forest once, top-down.
    pub fn build(catalog: &Catalog) -> Inheritance {
        let n = catalog.len();
        let mut holder_of = vec![u32::MAX; n];
        let mut stack: Vec<(ArtIdx, u32)> = catalog.roots().map(|r| (r, u32::MAX)).collect();
        while let Some((a, inherited)) = stack.pop() {
            let node = catalog.node(a);
            let holder = if node.inventory.is_some() {
                a.0
            } else {
                inherited
            };
            holder_of[a.0 as usize] = holder;
            for &c in catalog.children(a) {
                stack.push((c, holder));
            }
        }
        let mut counts = vec![0u32; n + 1];
        for &h in &holder_of {
            if h != u32::MAX {
                counts[h as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let mut next = counts;
        let mut members = vec![ArtIdx(0); offsets[n] as usize];
        // The holder itself first, then inheritors in index order (parents
        // are created before children, so this is a top-down order too).
        for h in 0..n {
            if holder_of[h] == h as u32 {
                members[next[h] as usize] = ArtIdx(h as u32);
                next[h] += 1;
            }
        }
        for (a, &h) in holder_of.iter().enumerate() {
            if h != u32::MAX && h != a as u32 {
                members[next[h as usize] as usize] = ArtIdx(a as u32);
                next[h as usize] += 1;
            }
        }
        Inheritance {
            generation: catalog.generation(),
            holder_of,
            offsets,
            members,
        }
    }

    /// Is it still valid for this catalog?
    pub fn is_current(&self, catalog: &Catalog) -> bool {
        self.generation == catalog.generation()
    }

    /// The artifact whose own inventory `a` has in effect.
    pub fn holder_of(&self, a: ArtIdx) -> Option<ArtIdx> {
        self.holder_of
            .get(a.0 as usize)
            .filter(|&&h| h != u32::MAX)
            .map(|&h| ArtIdx(h))
    }

    /// The holder and the artifacts inheriting its inventory.
    pub fn members(&self, holder: ArtIdx) -> &[ArtIdx] {
        let h = holder.0 as usize;
        match (self.offsets.get(h), self.offsets.get(h + 1)) {
            (Some(&a), Some(&b)) => &self.members[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// One affected component of a group of artifacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentHit {
    /// `None` for an artifact failure.
    pub component: Option<ComponentId>,
    /// Top-most artifact from which the component is present, at the same
    /// version, on every artifact down to the affected one.
    pub introduced_by: ArtIdx,
    /// Shared: a million artifacts hit by one fix share one string.
    pub fixed: Option<Arc<str>>,
}

/// Artifacts affected in the same way: they share the effective inventory
/// of `members[0]`, hence the same hits.
#[derive(Clone, Debug)]
pub struct Group<'a> {
    pub hits: Vec<ComponentHit>,
    pub members: Cow<'a, [ArtIdx]>,
}

/// Everything one advisory or failure affects.
#[derive(Clone, Debug, Default)]
pub struct Impact<'a> {
    pub groups: Vec<Group<'a>>,
    /// The affected artifacts by owner, made on the first question about
    /// one tenant (see [`Impact::owned_by`]).
    owners: std::sync::OnceLock<OwnerIndex>,
}

/// An impact's affected artifacts grouped by owner: `(group, artifact,
/// its packed link)`, in the impact's order within each tenant. The link
/// is copied in: read from the catalog's table it is a cache miss per
/// artifact (the members of a tenant are scattered over it), and it was
/// most of a tenant's plan.
#[derive(Clone, Debug, Default)]
struct OwnerIndex {
    /// `offsets[t]..offsets[t + 1]` indexes `entries` for tenant `t`.
    offsets: Vec<u32>,
    entries: Vec<(u32, ArtIdx, Link)>,
}

impl OwnerIndex {
    /// Two passes over the members (a counting sort by owner).
    fn build(catalog: &Catalog, groups: &[Group<'_>]) -> OwnerIndex {
        let tenants = catalog.tenants().len();
        let mut counts = vec![0u32; tenants + 1];
        // Each member's owner read once (the links are scattered; the
        // owners read back here are in order).
        let mut links: Vec<Link> = Vec::with_capacity(groups.iter().map(|g| g.members.len()).sum());
        for g in groups {
            for &a in g.members.iter() {
                let link = catalog.link(a);
                links.push(link);
                counts[link.tenant.0 as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut next = counts.clone();
        // Every slot is written below; the first link only fills them.
        let mut entries = match links.first() {
            Some(&fill) => vec![(0u32, ArtIdx(0), fill); links.len()],
            None => Vec::new(),
        };
        let mut links = links.into_iter();
        for (gi, g) in groups.iter().enumerate() {
            for (&a, link) in g.members.iter().zip(links.by_ref()) {
                let slot = &mut next[link.tenant.0 as usize];
                entries[*slot as usize] = (gi as u32, a, link);
                *slot += 1;
            }
        }
        OwnerIndex {
            offsets: counts,
            entries,
        }
    }
}

impl<'a> Impact<'a> {
    pub fn new(groups: Vec<Group<'a>>) -> Impact<'a> {
        Impact {
            groups,
            owners: std::sync::OnceLock::new(),
        }
    }

    /// The affected artifacts `tenant` owns, each with the index of its
    /// group in [`Impact::groups`], in the impact's order. The first call
    /// indexes every member by owner (one pass over the impact, kept with
    /// it), so that each tenant's question after it costs what that tenant
    /// owns — the answer is only right for the catalog the impact was
    /// computed on.
    pub fn owned_by(
        &self,
        catalog: &Catalog,
        tenant: TenantIdx,
    ) -> impl Iterator<Item = (usize, ArtIdx, Link)> + '_ {
        let index = self
            .owners
            .get_or_init(|| OwnerIndex::build(catalog, &self.groups));
        let t = tenant.0 as usize;
        let range = match (index.offsets.get(t), index.offsets.get(t + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        };
        index.entries[range]
            .iter()
            .map(|&(g, a, l)| (g as usize, a, l))
    }
}

impl Impact<'_> {
    pub fn artifact_count(&self) -> usize {
        self.groups.iter().map(|g| g.members.len()).sum()
    }

    /// Every affected artifact with its hits.
    pub fn iter(&self) -> impl Iterator<Item = (ArtIdx, &[ComponentHit])> {
        self.groups
            .iter()
            .flat_map(|g| g.members.iter().map(move |&a| (a, g.hits.as_slice())))
    }
}

/// Evaluates an entry against one component, distribution included.
pub fn entry_hit(catalog: &Catalog, entry: &Entry, c: ComponentId) -> Option<Option<Arc<str>>> {
    let comp = catalog.components().get(c);
    if comp.purl_type != entry.target.purl_type
        || !entry.target.matches_distro(comp.distro.as_ref())
    {
        return None;
    }
    let hit = match &comp.parsed {
        Some(v) if v.scheme() == entry.target.scheme => {
            entry.evaluate_parsed(comp.match_version(), Some(v))
        }
        _ => entry.evaluate(comp.match_version()),
    };
    hit.map(|hit| hit.fixed.map(Arc::from))
}

/// The affected components of an advisory, each with its fix.
pub fn affected_components(
    catalog: &Catalog,
    db: &AdvisoryDb,
    adv: AdvIdx,
) -> HashMap<ComponentId, Option<Arc<str>>> {
    let mut hits = HashMap::default();
    let Record::Advisory(advisory) = db.get(adv) else {
        return hits;
    };
    if advisory.withdrawn {
        return hits;
    }
    for entry in &advisory.entries {
        for &c in catalog
            .components()
            .by_source(entry.target.purl_type, &entry.name)
        {
            if hits.contains_key(&c) {
                continue;
            }
            if let Some(fixed) = entry_hit(catalog, entry, c) {
                hits.insert(c, fixed);
            }
        }
    }
    hits
}

/// Top-most artifact from which `c` is present on every artifact down to
/// `from` (which must hold it).
pub fn introduced_by(catalog: &Catalog, from: ArtIdx, c: ComponentId) -> ArtIdx {
    introduced_by_on(catalog, &lineage_inventories(catalog, from), c)
}

/// `from` and its ancestors, bottom-up, each with its effective inventory:
/// computed once per artifact, shared by all its components.
pub fn lineage_inventories(catalog: &Catalog, from: ArtIdx) -> Vec<(ArtIdx, Option<InvId>)> {
    let mut chain: Vec<(ArtIdx, Option<InvId>)> = std::iter::once(from)
        .chain(catalog.ancestors(from))
        .map(|a| (a, catalog.node(a).inventory))
        .collect();
    for i in (0..chain.len().saturating_sub(1)).rev() {
        if chain[i].1.is_none() {
            chain[i].1 = chain[i + 1].1;
        }
    }
    chain
}

/// [`introduced_by`] over a precomputed chain.
pub fn introduced_by_on(
    catalog: &Catalog,
    chain: &[(ArtIdx, Option<InvId>)],
    c: ComponentId,
) -> ArtIdx {
    let inventories = catalog.inventories();
    let (mut top, mut held) = chain[0];
    for &(a, inv) in &chain[1..] {
        // An ancestor sharing the inventory below holds what it holds; an
        // ancestor whose inventory is the base of the delta below holds c
        // unless the delta added it (the usual case: one binary search in a
        // small delta instead of a walk down the ancestor's chain).
        let holds = match (inv, held) {
            (None, _) => false,
            (Some(i), Some(h)) if i == h => true,
            (Some(i), Some(h)) if inventories.get(h).base == Some(i) => {
                inventories.get(h).added.binary_search(&c).is_err()
            }
            (Some(i), _) => inventories.contains(i, c),
        };
        if !holds {
            break;
        }
        top = a;
        held = inv;
    }
    top
}

/// Computes the impact of a record over the whole catalog.
pub fn impact<'a>(
    catalog: &Catalog,
    inheritance: &'a Inheritance,
    db: &AdvisoryDb,
    adv: AdvIdx,
) -> Impact<'a> {
    debug_assert!(inheritance.is_current(catalog));
    match db.get(adv) {
        Record::Failure(f) if !f.withdrawn => failure_impact(catalog, f.id.as_str(), f.artifact),
        Record::Failure(_) => Impact::default(),
        Record::Advisory(_) => advisory_impact(catalog, inheritance, db, adv),
    }
}

fn advisory_impact<'a>(
    catalog: &Catalog,
    inheritance: &'a Inheritance,
    db: &AdvisoryDb,
    adv: AdvIdx,
) -> Impact<'a> {
    let hits = affected_components(catalog, db, adv);
    // Inventory objects holding each affected component, down the delta
    // forest until a delta removes it.
    let inventories = catalog.inventories();
    let mut per_inventory: HashMap<InvId, Vec<ComponentId>> = HashMap::default();
    let mut stack = Vec::new();
    let mut sorted_hits: Vec<ComponentId> = hits.keys().copied().collect();
    sorted_hits.sort_unstable();
    for &c in &sorted_hits {
        stack.extend_from_slice(inventories.containing(c));
        while let Some(inv) = stack.pop() {
            let list = per_inventory.entry(inv).or_default();
            if list.last() == Some(&c) {
                continue;
            }
            list.push(c);
            for &child in inventories.children(inv) {
                if inventories.get(child).removed.binary_search(&c).is_err() {
                    stack.push(child);
                }
            }
        }
    }
    // introduced_by(H, c): if the holder P of H's parent holds c, it is
    // introduced_by(P, c), else H. P holds c exactly when P's inventory is
    // in `per_inventory` with c; memoised, so each (holder, component) is
    // resolved once however long the lineage.
    let holds = |p: ArtIdx, c: ComponentId| {
        catalog
            .node(p)
            .inventory
            .and_then(|inv| per_inventory.get(&inv))
            .is_some_and(|list| list.contains(&c))
    };
    let mut memo: HashMap<(ArtIdx, ComponentId), ArtIdx> = HashMap::default();
    let mut stack: Vec<ArtIdx> = Vec::new();
    let mut resolve = |h: ArtIdx, c: ComponentId| -> ArtIdx {
        stack.clear();
        stack.push(h);
        let top;
        // Walk up through holders that hold c, stopping at a memoised one.
        loop {
            let cur = *stack.last().unwrap_or(&h);
            if let Some(&known) = memo.get(&(cur, c)) {
                top = known;
                stack.pop();
                break;
            }
            let parent_holder = catalog
                .node(cur)
                .parent
                .and_then(|p| inheritance.holder_of(p));
            match parent_holder {
                Some(p) if holds(p, c) && stack.len() <= crate::catalog::LINEAGE_DEPTH_MAX => {
                    stack.push(p)
                }
                _ => {
                    top = cur;
                    break;
                }
            }
        }
        for &a in &stack {
            memo.insert((a, c), top);
        }
        top
    };
    let mut groups = Vec::new();
    let mut invs: Vec<(&InvId, &Vec<ComponentId>)> = per_inventory.iter().collect();
    invs.sort_unstable_by_key(|(inv, _)| **inv);
    for (&inv, comps) in invs {
        for &holder in catalog.holders(inv) {
            if catalog.node(holder).removed {
                continue;
            }
            let group_hits = comps
                .iter()
                .map(|&c| ComponentHit {
                    component: Some(c),
                    introduced_by: resolve(holder, c),
                    fixed: hits.get(&c).cloned().flatten(),
                })
                .collect();
            groups.push(Group {
                hits: group_hits,
                members: Cow::Borrowed(inheritance.members(holder)),
            });
        }
    }
    Impact::new(groups)
}

/// Is failure `id` declared fixed on `a`?
fn declares_fixed(catalog: &Catalog, a: ArtIdx, id: &str) -> bool {
    catalog
        .node(a)
        .fixes
        .binary_search_by(|f| f.as_str().cmp(id))
        .is_ok()
}

fn failure_impact<'a>(catalog: &Catalog, id: &str, origin: ArtIdx) -> Impact<'a> {
    if catalog.node(origin).removed || declares_fixed(catalog, origin, id) {
        return Impact::default();
    }
    let mut members = Vec::new();
    let mut stack = vec![origin];
    while let Some(a) = stack.pop() {
        members.push(a);
        for &c in catalog.children(a) {
            if !declares_fixed(catalog, c, id) {
                stack.push(c);
            }
        }
    }
    Impact::new(vec![Group {
        hits: vec![ComponentHit {
            component: None,
            introduced_by: origin,
            fixed: None,
        }],
        members: Cow::Owned(members),
    }])
}

/// What one artifact carries of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactMatch {
    pub advisory: AdvIdx,
    pub hits: Vec<ComponentHit>,
}

/// Checks one artifact against every open advisory and failure: the path
/// taken when an artifact is created, re-inventoried or re-parented
/// (CONTRACT.md §4.5). Costs one index lookup per component of its
/// effective inventory plus a walk up its lineage.
pub fn check_artifact(catalog: &Catalog, db: &AdvisoryDb, a: ArtIdx) -> Vec<ArtifactMatch> {
    check_artifact_cached(catalog, db, a, &mut MatchCache::new())
}

/// [`check_artifact`] with a cache that outlives the call.
pub fn check_artifact_cached(
    catalog: &Catalog,
    db: &AdvisoryDb,
    a: ArtIdx,
    cache: &mut MatchCache,
) -> Vec<ArtifactMatch> {
    if catalog.node(a).removed {
        return Vec::new();
    }
    let mut out = match catalog.inventory_holder(a) {
        Some(h) => advisory_matches_cached(catalog, db, h, cache),
        None => Vec::new(),
    };
    out.extend(failure_matches(catalog, db, a));
    out.sort_by_key(|m| m.advisory);
    out
}

/// Which open advisories affect each component, computed on first use and
/// kept until the advisory database changes. Evaluating a component against
/// its advisories is the costly part of a check, and the same components
/// recur in every artifact built from the same images.
/// The advisories affecting one component, each with its fix.
pub type ComponentMatches = Arc<[(AdvIdx, Option<Arc<str>>)]>;

#[derive(Debug, Default)]
pub struct MatchCache {
    /// (advisory database generation, component epoch) the entries hold for.
    key: (u64, u64),
    per_component: Vec<Option<ComponentMatches>>,
}

impl MatchCache {
    pub fn new() -> MatchCache {
        MatchCache::default()
    }

    /// The advisories (and fixes) affecting component `c`.
    pub fn component(
        &mut self,
        catalog: &Catalog,
        db: &AdvisoryDb,
        c: ComponentId,
    ) -> Arc<[(AdvIdx, Option<Arc<str>>)]> {
        let key = (db.generation(), catalog.components().epoch());
        if self.key != key {
            self.per_component.clear();
            self.key = key;
        }
        let i = c.0 as usize;
        if self.per_component.len() <= i {
            self.per_component
                .resize(catalog.components().len().max(i + 1), None);
        }
        if let Some(list) = &self.per_component[i] {
            return list.clone();
        }
        let comp = catalog.components().get(c);
        let mut list: Vec<(AdvIdx, Option<Arc<str>>)> = Vec::new();
        for source in std::iter::once(comp.source).chain(comp.alt_source) {
            let name = catalog.components().source_name(source);
            for (adv, entry) in db.entries_for(comp.purl_type, name) {
                // One hit per (advisory, component): the first entry wins.
                if list.iter().any(|(a, _)| *a == adv) {
                    continue;
                }
                if let Some(fixed) = entry_hit(catalog, entry, c) {
                    list.push((adv, fixed));
                }
            }
        }
        let list: ComponentMatches = list.into();
        self.per_component[i] = Some(list.clone());
        list
    }
}

/// Open advisories affecting the effective inventory of `holder`, an
/// artifact with an inventory of its own. Every artifact inheriting that
/// inventory has exactly these matches.
pub fn advisory_matches(catalog: &Catalog, db: &AdvisoryDb, holder: ArtIdx) -> Vec<ArtifactMatch> {
    advisory_matches_cached(catalog, db, holder, &mut MatchCache::new())
}

/// [`advisory_matches`] with a cache that outlives the call.
pub fn advisory_matches_cached(
    catalog: &Catalog,
    db: &AdvisoryDb,
    holder: ArtIdx,
    cache: &mut MatchCache,
) -> Vec<ArtifactMatch> {
    let chain = lineage_inventories(catalog, holder);
    let mut found: Vec<(AdvIdx, ComponentHit)> = Vec::new();
    for c in catalog.effective_components(holder) {
        let list = cache.component(catalog, db, c);
        if list.is_empty() {
            continue;
        }
        // Where c came from does not depend on the advisory.
        let introduced_by = introduced_by_on(catalog, &chain, c);
        for (adv, fixed) in list.iter() {
            found.push((
                *adv,
                ComponentHit {
                    component: Some(c),
                    introduced_by,
                    fixed: fixed.clone(),
                },
            ));
        }
    }
    // Components come in id order, so a stable sort by advisory keeps the
    // hits of each advisory sorted by component.
    found.sort_by_key(|(adv, _)| *adv);
    let mut out: Vec<ArtifactMatch> = Vec::new();
    for (adv, hit) in found {
        match out.last_mut() {
            Some(m) if m.advisory == adv => m.hits.push(hit),
            _ => out.push(ArtifactMatch {
                advisory: adv,
                hits: vec![hit],
            }),
        }
    }
    out
}

/// Open failures published on `a` or an ancestor that no artifact on the
/// path down to `a` declares fixed.
pub fn failure_matches(catalog: &Catalog, db: &AdvisoryDb, a: ArtIdx) -> Vec<ArtifactMatch> {
    let mut out = Vec::new();
    let mut path: Vec<ArtIdx> = Vec::new();
    for origin in std::iter::once(a).chain(catalog.ancestors(a)) {
        path.push(origin);
        for &adv in db.failures_on(origin) {
            let Record::Failure(f) = db.get(adv) else {
                continue;
            };
            if !path
                .iter()
                .any(|&p| declares_fixed(catalog, p, f.id.as_str()))
            {
                out.push(ArtifactMatch {
                    advisory: adv,
                    hits: vec![ComponentHit {
                        component: None,
                        introduced_by: origin,
                        fixed: None,
                    }],
                });
            }
        }
    }
    out
}

/// The lineage path from `top` down to `a` (both included); `top` must be
/// `a` or one of its ancestors.
pub fn path(catalog: &Catalog, top: ArtIdx, a: ArtIdx) -> Vec<ArtIdx> {
    let mut path = vec![a];
    if a != top {
        for p in catalog.ancestors(a) {
            path.push(p);
            if p == top {
                break;
            }
        }
    }
    path.reverse();
    path
}
