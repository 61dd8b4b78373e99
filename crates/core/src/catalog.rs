//! The catalog: tenants, the lineage forest of artifacts and their
//! inventories, with the rules of CONTRACT.md §3 (which relations fit which
//! kinds, no cycles, no conflicting duplicates, tenant visibility).
//!
//! Every mutation is recorded in an undo log so that a batch (one imported
//! file, one HTTP request) is applied whole or not at all: take a
//! [`Checkpoint`], apply, and [`Catalog::rollback`] on the first error.
//! [`Catalog::take_changes`] hands what changed to the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::CatalogError;
use crate::inventory::{ComponentId, Components, InvId, Inventories};
use crate::model::{AdvisoryId, ArtifactId, ArtifactSpec, Kind, Relation, TenantId, Visibility};

/// Dense index of an artifact in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtIdx(pub u32);

/// Dense index of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantIdx(pub u32);

/// Deepest lineage accepted: bounds every walk up the forest.
pub const LINEAGE_DEPTH_MAX: usize = 1024;

/// One artifact as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: ArtifactId,
    pub kind: Kind,
    pub tenant: TenantIdx,
    pub parent: Option<ArtIdx>,
    pub relation: Option<Relation>,
    pub visibility: Visibility,
    pub name: Option<Box<str>>,
    pub labels: BTreeMap<String, String>,
    /// Own inventory; `None` inherits the parent's.
    pub inventory: Option<InvId>,
    pub fixes: Box<[AdvisoryId]>,
    /// The artifact this one is the patched successor of.
    pub supersedes: Option<ArtIdx>,
    /// What reading its own inventory skipped or could not evaluate (see
    /// [`ArtifactSpec::warnings`]).
    pub warnings: Box<[Box<str>]>,
    /// Removed artifacts keep their row (and history) but leave the forest.
    pub removed: bool,
}

/// Who asks for a change: the operator, or one tenant with its rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Operator imports and admin tokens: every artifact is visible.
    Admin,
    Tenant(TenantId),
}

/// What to do when the id already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Identical content is a no-op; different content is a conflict.
    Create,
    /// Replace parent, relation, inventory, labels, name, visibility, fixes.
    Upsert,
}

/// What an accepted change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(ArtIdx),
    Updated(ArtIdx),
    Unchanged(ArtIdx),
}

impl Outcome {
    pub fn idx(self) -> ArtIdx {
        match self {
            Outcome::Created(i) | Outcome::Updated(i) | Outcome::Unchanged(i) => i,
        }
    }
}

#[derive(Debug)]
enum Undo {
    Inserted(ArtIdx),
    Replaced(ArtIdx, Box<Node>),
    TenantAdded,
}

/// A point to roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint {
    undo_len: usize,
    artifacts: usize,
    components: usize,
    inventories: usize,
}

/// What changed since the last [`Catalog::take_changes`], for the store.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub tenants: std::ops::Range<usize>,
    pub components: std::ops::Range<usize>,
    pub inventories: std::ops::Range<usize>,
    /// Artifacts to write (created, updated or removed), ascending.
    pub artifacts: Vec<ArtIdx>,
}

impl Checkpoint {
    /// How many artifacts the catalog had: indexes from here on were
    /// created after the checkpoint.
    pub fn artifacts(&self) -> usize {
        self.artifacts
    }
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
            && self.components.is_empty()
            && self.inventories.is_empty()
            && self.artifacts.is_empty()
    }
}

/// Tenants, artifacts, components and inventories.
#[derive(Debug, Default)]
pub struct Catalog {
    tenants: Vec<TenantId>,
    tenant_idx: HashMap<TenantId, TenantIdx>,
    nodes: Vec<Node>,
    /// Each node's owner, parent and kind, packed (12 bytes a node): walks
    /// over a million artifacts read these instead of the nodes.
    links: Vec<Link>,
    by_id: HashMap<ArtifactId, ArtIdx>,
    children: Vec<Vec<ArtIdx>>,
    /// Position of each node in its parent's `children`, for O(1) detach.
    pos_in_parent: Vec<u32>,
    /// Artifacts owning each inventory object.
    holders: HashMap<InvId, Vec<ArtIdx>>,
    /// The live artifacts that declare each artifact their predecessor
    /// (`supersedes`), kept with the parent links (`attach`, `detach`).
    successors: HashMap<ArtIdx, Vec<ArtIdx>>,
    pub(crate) components: Components,
    pub(crate) inventories: Inventories,
    undo: Vec<Undo>,
    /// Persistence bookkeeping.
    saved: Saved,
    dirty: BTreeSet<ArtIdx>,
    /// Bumped on every change that can move an artifact between
    /// inventory holders (see `propagate::Groups`).
    generation: u64,
}

/// A node's owner and parent, as [`Catalog::links`] keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub tenant: TenantIdx,
    /// `u32::MAX` for a root.
    parent: u32,
    pub kind: Kind,
}

impl Link {
    fn of(node: &Node) -> Link {
        Link {
            tenant: node.tenant,
            parent: node.parent.map_or(u32::MAX, |p| p.0),
            kind: node.kind,
        }
    }

    pub fn parent(self) -> Option<ArtIdx> {
        (self.parent != u32::MAX).then_some(ArtIdx(self.parent))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Saved {
    tenants: usize,
    components: usize,
    inventories: usize,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    // ----- reading -----

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn components(&self) -> &Components {
        &self.components
    }

    pub fn inventories(&self) -> &Inventories {
        &self.inventories
    }

    pub fn lookup(&self, id: &str) -> Option<ArtIdx> {
        self.by_id.get(id).copied()
    }

    /// The artifact, if it exists, is not removed and `actor` may see it
    /// (its own or a public one). Foreign private artifacts answer `None`,
    /// exactly like missing ones.
    pub fn visible(&self, id: &str, actor: &Actor) -> Option<ArtIdx> {
        let idx = self.lookup(id)?;
        let node = self.node(idx);
        (!node.removed && self.may_see(actor, node)).then_some(idx)
    }

    /// Whether `actor` may see the artifact's id (its own or a public one;
    /// admins see everything), removed or not.
    pub fn may_see_idx(&self, actor: &Actor, idx: ArtIdx) -> bool {
        self.may_see(actor, self.node(idx))
    }

    fn may_see(&self, actor: &Actor, node: &Node) -> bool {
        match actor {
            Actor::Admin => true,
            Actor::Tenant(t) => {
                node.visibility == Visibility::Public || self.tenant_id(node.tenant) == t
            }
        }
    }

    /// Does `actor` own the artifact (admins own everything)?
    pub fn owns(&self, actor: &Actor, idx: ArtIdx) -> bool {
        match actor {
            Actor::Admin => true,
            Actor::Tenant(t) => self.tenant_id(self.node(idx).tenant) == t,
        }
    }

    pub fn node(&self, idx: ArtIdx) -> &Node {
        &self.nodes[idx.0 as usize]
    }

    /// A node's owner and parent, from the packed table.
    pub fn link(&self, idx: ArtIdx) -> Link {
        self.links[idx.0 as usize]
    }

    pub fn nodes(&self) -> impl Iterator<Item = (ArtIdx, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (ArtIdx(i as u32), n))
    }

    pub fn children(&self, idx: ArtIdx) -> &[ArtIdx] {
        &self.children[idx.0 as usize]
    }

    pub fn tenant_id(&self, t: TenantIdx) -> &TenantId {
        &self.tenants[t.0 as usize]
    }

    pub fn tenant_idx(&self, t: &str) -> Option<TenantIdx> {
        self.tenant_idx.get(t).copied()
    }

    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// Artifacts owning inventory object `inv`.
    pub fn holders(&self, inv: InvId) -> &[ArtIdx] {
        self.holders.get(&inv).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Parent chain from the parent up to the root.
    pub fn ancestors(&self, idx: ArtIdx) -> impl Iterator<Item = ArtIdx> + '_ {
        std::iter::successors(self.node(idx).parent, move |&p| self.node(p).parent)
    }

    /// The inventory in effect: the artifact's own, else its parent's.
    pub fn effective_inventory(&self, idx: ArtIdx) -> Option<InvId> {
        std::iter::once(idx)
            .chain(self.ancestors(idx))
            .find_map(|a| self.node(a).inventory)
    }

    /// The nearest artifact, `idx` included, whose own inventory is in effect.
    pub fn inventory_holder(&self, idx: ArtIdx) -> Option<ArtIdx> {
        std::iter::once(idx)
            .chain(self.ancestors(idx))
            .find(|&a| self.node(a).inventory.is_some())
    }

    /// The effective inventory's components, sorted by id.
    pub fn effective_components(&self, idx: ArtIdx) -> Vec<ComponentId> {
        self.effective_inventory(idx)
            .map(|inv| self.inventories.materialize(inv))
            .unwrap_or_default()
    }

    /// Does `idx`'s effective inventory hold `c`?
    pub fn holds(&self, idx: ArtIdx, c: ComponentId) -> bool {
        self.effective_inventory(idx)
            .is_some_and(|inv| self.inventories.contains(inv, c))
    }

    /// Every live descendant, parents before children.
    pub fn descendants(&self, idx: ArtIdx) -> Vec<ArtIdx> {
        let mut out = Vec::new();
        let mut stack: Vec<ArtIdx> = self.children(idx).iter().rev().copied().collect();
        while let Some(a) = stack.pop() {
            out.push(a);
            stack.extend(self.children(a).iter().rev().copied());
        }
        out
    }

    /// Live descendants per kind, in `Kind::ALL` order.
    pub fn subtree_counts(&self, idx: ArtIdx) -> [u64; 4] {
        let mut counts = [0u64; 4];
        let mut stack: Vec<ArtIdx> = self.children(idx).to_vec();
        while let Some(a) = stack.pop() {
            counts[self.node(a).kind.code() as usize] += 1;
            stack.extend_from_slice(self.children(a));
        }
        counts
    }

    /// Live artifacts without a parent.
    pub fn roots(&self) -> impl Iterator<Item = ArtIdx> + '_ {
        self.nodes()
            .filter(|(_, n)| n.parent.is_none() && !n.removed)
            .map(|(i, _)| i)
    }

    /// The artifact described as a spec, inventory as canonical purls.
    pub fn spec_of(&self, idx: ArtIdx) -> ArtifactSpec {
        let node = self.node(idx);
        ArtifactSpec {
            id: node.id.clone(),
            kind: node.kind,
            tenant: self.tenant_id(node.tenant).clone(),
            name: node.name.as_deref().map(str::to_string),
            parent: node.parent.map(|p| self.node(p).id.clone()),
            relation: node.relation,
            visibility: node.visibility,
            labels: node.labels.clone(),
            components: node.inventory.map(|inv| {
                self.inventories
                    .materialize(inv)
                    .into_iter()
                    .map(|c| self.components.get(c).purl.to_string())
                    .collect()
            }),
            fixes: node.fixes.to_vec(),
            supersedes: node.supersedes.map(|s| self.node(s).id.clone()),
            warnings: node.warnings.iter().map(|w| w.to_string()).collect(),
        }
    }

    // ----- changing -----

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            undo_len: self.undo.len(),
            artifacts: self.nodes.len(),
            components: self.components.len(),
            inventories: self.inventories.len(),
        }
    }

    /// Undoes everything done since `cp`.
    pub fn rollback(&mut self, cp: Checkpoint) {
        while self.undo.len() > cp.undo_len {
            let Some(entry) = self.undo.pop() else { break };
            match entry {
                Undo::Inserted(idx) => {
                    debug_assert_eq!(idx.0 as usize + 1, self.nodes.len());
                    self.detach(idx);
                    let Some(node) = self.nodes.pop() else { break };
                    self.links.pop();
                    if let Some(inv) = node.inventory {
                        self.unhold(inv, idx);
                    }
                    self.children.pop();
                    self.pos_in_parent.pop();
                    self.by_id.remove(&node.id);
                    self.dirty.remove(&idx);
                }
                Undo::Replaced(idx, old) => {
                    self.detach(idx);
                    if let Some(inv) = self.nodes[idx.0 as usize].inventory {
                        self.unhold(inv, idx);
                    }
                    self.nodes[idx.0 as usize] = *old;
                    self.links[idx.0 as usize] = Link::of(&self.nodes[idx.0 as usize]);
                    if let Some(inv) = self.nodes[idx.0 as usize].inventory {
                        self.holders.entry(inv).or_default().push(idx);
                    }
                    self.attach(idx);
                }
                Undo::TenantAdded => {
                    if let Some(t) = self.tenants.pop() {
                        self.tenant_idx.remove(&t);
                    }
                }
            }
        }
        self.inventories
            .truncate(cp.inventories.max(self.saved.inventories));
        self.components
            .truncate(cp.components.max(self.saved.components));
        self.generation += 1;
    }

    /// Hands over what changed since the last call and forgets the undo log.
    pub fn take_changes(&mut self) -> Changes {
        let changes = Changes {
            tenants: self.saved.tenants..self.tenants.len(),
            components: self.saved.components..self.components.len(),
            inventories: self.saved.inventories..self.inventories.len(),
            artifacts: std::mem::take(&mut self.dirty).into_iter().collect(),
        };
        self.saved = Saved {
            tenants: self.tenants.len(),
            components: self.components.len(),
            inventories: self.inventories.len(),
        };
        self.undo.clear();
        changes
    }

    /// Forgets the undo log without handing changes over (after loading).
    pub fn mark_saved(&mut self) {
        let _ = self.take_changes();
    }

    /// The tenant's index, creating it on first use.
    pub fn ensure_tenant(&mut self, id: &TenantId) -> TenantIdx {
        if let Some(&t) = self.tenant_idx.get(id) {
            return t;
        }
        let t = TenantIdx(self.tenants.len() as u32);
        self.tenants.push(id.clone());
        self.tenant_idx.insert(id.clone(), t);
        self.undo.push(Undo::TenantAdded);
        t
    }

    /// Interns purls into a sorted, deduplicated component set.
    pub fn intern_components(
        &mut self,
        artifact: &ArtifactId,
        purls: &[String],
    ) -> Result<Vec<ComponentId>, CatalogError> {
        let mut set = Vec::with_capacity(purls.len());
        for purl in purls {
            if purl.len() > crate::text::PURL_LEN_MAX {
                return Err(CatalogError::InvalidComponent {
                    artifact: artifact.to_string(),
                    purl: purl.chars().take(200).collect(),
                    reason: format!(
                        "a purl may have at most {} bytes",
                        crate::text::PURL_LEN_MAX
                    ),
                });
            }
            let id = self
                .components
                .intern(purl)
                .map_err(|e| CatalogError::InvalidComponent {
                    artifact: artifact.to_string(),
                    purl: purl.chars().take(200).collect(),
                    reason: e.0,
                })?;
            set.push(id);
        }
        set.sort_unstable();
        set.dedup();
        Ok(set)
    }

    /// Creates or updates one artifact. On error nothing changed, except
    /// interned components, which a rollback to an earlier checkpoint drops.
    pub fn apply(
        &mut self,
        spec: &ArtifactSpec,
        mode: Mode,
        actor: &Actor,
    ) -> Result<Outcome, CatalogError> {
        spec.validate()?;
        if let Actor::Tenant(t) = actor
            && &spec.tenant != t
        {
            return Err(CatalogError::Invalid(format!(
                "artifact {}: a tenant can only create artifacts of its own",
                spec.id
            )));
        }
        let existing = self.lookup(spec.id.as_str());
        if let Some(idx) = existing
            && (!self.owns(actor, idx)
                || (self.node(idx).removed
                    && self.tenant_id(self.node(idx).tenant) != &spec.tenant))
        {
            // Another tenant's artifact: for a tenant the id is simply taken
            // (answering "unknown" would invite a retry that can never work).
            return Err(CatalogError::Conflict {
                artifact: spec.id.to_string(),
                detail: "the id is taken".into(),
            });
        }
        // Parent and relation.
        let parent = match &spec.parent {
            None => None,
            Some(pid) => {
                let p = self.visible(pid.as_str(), actor).ok_or_else(|| {
                    CatalogError::UnknownParent {
                        artifact: spec.id.to_string(),
                        parent: pid.to_string(),
                    }
                })?;
                Some(p)
            }
        };
        let relation = match parent {
            None => None,
            Some(p) => Some(self.check_relation(spec, p)?),
        };
        let depth = match parent {
            None => 0,
            Some(p) => self.ancestors(p).take(LINEAGE_DEPTH_MAX + 1).count() + 1,
        };
        if depth >= LINEAGE_DEPTH_MAX {
            return Err(CatalogError::TooDeep {
                artifact: spec.id.to_string(),
                depth_max: LINEAGE_DEPTH_MAX,
            });
        }
        let components = match &spec.components {
            Some(purls) => Some(self.intern_components(&spec.id, purls)?),
            None => None,
        };
        let fixes: Box<[AdvisoryId]> = {
            let mut f = spec.fixes.clone();
            f.sort();
            f.dedup();
            f.into()
        };
        let supersedes = match &spec.supersedes {
            None => None,
            Some(sid) => Some(self.check_supersedes(spec, sid, existing, actor)?),
        };

        match existing {
            Some(idx) if !self.node(idx).removed => {
                let node = self.node(idx);
                if node.kind != spec.kind {
                    return Err(CatalogError::Conflict {
                        artifact: spec.id.to_string(),
                        detail: format!("kind {} cannot become {}", node.kind, spec.kind),
                    });
                }
                if self.tenant_id(node.tenant) != &spec.tenant {
                    return Err(CatalogError::Conflict {
                        artifact: spec.id.to_string(),
                        detail: format!(
                            "owned by tenant {}, not {}",
                            self.tenant_id(node.tenant),
                            spec.tenant
                        ),
                    });
                }
                if let Some(p) = parent
                    && (p == idx || self.ancestors(p).any(|a| a == idx))
                {
                    return Err(CatalogError::Cycle {
                        artifact: spec.id.to_string(),
                        parent: self.node(p).id.to_string(),
                    });
                }
                let same_inventory = match (&components, node.inventory) {
                    (None, None) => true,
                    (Some(set), Some(inv)) => self.inventories.materialize(inv) == *set,
                    _ => false,
                };
                let mut differences =
                    self.differences(node, spec, parent, relation, &fixes, same_inventory);
                if node.supersedes != supersedes {
                    differences.push("supersedes");
                }
                if differences.is_empty() {
                    return Ok(Outcome::Unchanged(idx));
                }
                if mode == Mode::Create {
                    return Err(CatalogError::Conflict {
                        artifact: spec.id.to_string(),
                        detail: format!("differs in {}", differences.join(", ")),
                    });
                }
                let (old_inventory, tenant) = (node.inventory, node.tenant);
                let inventory = if same_inventory {
                    old_inventory
                } else {
                    self.store_inventory(parent, components)
                };
                let mut new = node_of(spec, tenant, parent, relation, inventory, fixes);
                new.supersedes = supersedes;
                self.replace(idx, new);
                Ok(Outcome::Updated(idx))
            }
            existing => {
                let tenant = self.ensure_tenant(&spec.tenant);
                let inventory = self.store_inventory(parent, components);
                let mut node = node_of(spec, tenant, parent, relation, inventory, fixes);
                node.supersedes = supersedes;
                match existing {
                    // A removed artifact comes back under the same index,
                    // so its history stays attached.
                    Some(idx) => {
                        self.replace(idx, node);
                        Ok(Outcome::Created(idx))
                    }
                    None => Ok(Outcome::Created(self.insert(node))),
                }
            }
        }
    }

    /// The artifact `spec` declares itself the successor of: visible to
    /// the actor, of the same kind, owned by the same tenant (an admin may
    /// declare any), not the artifact itself nor one of its own
    /// successors (no cycle along `supersedes`).
    fn check_supersedes(
        &self,
        spec: &ArtifactSpec,
        sid: &ArtifactId,
        existing: Option<ArtIdx>,
        actor: &Actor,
    ) -> Result<ArtIdx, CatalogError> {
        let invalid = |why: String| {
            Err(CatalogError::Invalid(format!(
                "artifact {}: supersedes {sid}: {why}",
                spec.id
            )))
        };
        if sid == &spec.id {
            return invalid("an artifact cannot supersede itself".into());
        }
        let Some(s) = self.visible(sid.as_str(), actor) else {
            return invalid("unknown artifact".into());
        };
        let old = self.node(s);
        if old.removed {
            return invalid("that artifact was removed".into());
        }
        if old.kind != spec.kind {
            return invalid(format!(
                "a successor has the kind of what it supersedes ({}, not {})",
                old.kind, spec.kind
            ));
        }
        if matches!(actor, Actor::Tenant(_)) && self.tenant_id(old.tenant) != &spec.tenant {
            return invalid("only its owner (or an admin) may declare its successor".into());
        }
        // The whole chain is walked (no stored chain has a cycle, so the
        // walk ends; the count guards against a corrupt store).
        if let Some(me) = existing {
            let mut cur = Some(s);
            let mut steps = 0usize;
            while let Some(p) = cur {
                if p == me {
                    return invalid("that would make a cycle of successors".into());
                }
                steps += 1;
                if steps > self.nodes.len() {
                    return invalid("the stored chain of successors loops".into());
                }
                cur = self.node(p).supersedes;
            }
        }
        Ok(s)
    }

    /// What `idx` supersedes, then what that supersedes, and so on, to the
    /// end of the chain (chains have no length bound and no cycle; the
    /// count of nodes guards against a corrupt store).
    pub fn predecessors(&self, idx: ArtIdx) -> impl Iterator<Item = ArtIdx> + '_ {
        std::iter::successors(self.node(idx).supersedes, move |&p| self.node(p).supersedes)
            .take(self.nodes.len())
    }

    /// The live artifacts that declare `idx` their predecessor, in no
    /// particular order.
    pub fn successors(&self, idx: ArtIdx) -> &[ArtIdx] {
        self.successors.get(&idx).map_or(&[], Vec::as_slice)
    }

    /// Whether any live artifact declares a predecessor.
    pub fn has_successors(&self) -> bool {
        !self.successors.is_empty()
    }

    /// Stores an own inventory as a delta against the parent's effective one.
    fn store_inventory(
        &mut self,
        parent: Option<ArtIdx>,
        components: Option<Vec<ComponentId>>,
    ) -> Option<InvId> {
        components.map(|set| {
            let base = parent.and_then(|p| self.effective_inventory(p));
            self.inventories.create(base, &set)
        })
    }

    fn check_relation(&self, spec: &ArtifactSpec, p: ArtIdx) -> Result<Relation, CatalogError> {
        let parent = self.node(p);
        let fitting = Relation::between(parent.kind, spec.kind);
        match (fitting, spec.relation) {
            (Some(r), None) => Ok(r),
            (Some(r), Some(given)) if r == given => Ok(r),
            (fitting, given) => Err(CatalogError::RelationMismatch {
                artifact: spec.id.to_string(),
                kind: spec.kind.with_article(),
                relation: given
                    .or(fitting)
                    .map(Relation::as_str)
                    .unwrap_or("made from"),
                parent: parent.id.to_string(),
                parent_kind: parent.kind.with_article(),
                hint: match fitting {
                    Some(r) => format!("; the relation is {r}"),
                    None => String::new(),
                },
            }),
        }
    }

    fn differences(
        &self,
        node: &Node,
        spec: &ArtifactSpec,
        parent: Option<ArtIdx>,
        relation: Option<Relation>,
        fixes: &[AdvisoryId],
        same_inventory: bool,
    ) -> Vec<&'static str> {
        let mut d = Vec::new();
        if node.parent != parent {
            d.push("parent");
        }
        if node.relation != relation {
            d.push("relation");
        }
        if node.visibility != spec.visibility {
            d.push("visibility");
        }
        if node.name.as_deref() != spec.name.as_deref() {
            d.push("name");
        }
        if node.labels != spec.labels {
            d.push("labels");
        }
        if *node.fixes != *fixes {
            d.push("fixes");
        }
        if !same_inventory {
            d.push("inventory");
        }
        if node.warnings.len() != spec.warnings.len()
            || node
                .warnings
                .iter()
                .zip(&spec.warnings)
                .any(|(a, b)| **a != **b)
        {
            d.push("inventory warnings");
        }
        d
    }

    /// Removes a leaf artifact from the forest (an instance deleted, an image
    /// retired). Its record stays, marked removed.
    pub fn remove(&mut self, id: &str, actor: &Actor) -> Result<ArtIdx, CatalogError> {
        let idx = self
            .visible(id, actor)
            .filter(|&i| self.owns(actor, i))
            .ok_or_else(|| CatalogError::UnknownArtifact(id.to_string()))?;
        let children = self.children(idx).len();
        if children > 0 {
            return Err(CatalogError::HasChildren {
                artifact: id.to_string(),
                children,
            });
        }
        let mut node = self.node(idx).clone();
        node.removed = true;
        self.replace(idx, node);
        Ok(idx)
    }

    /// Loads the stored nodes, in index order, without checks or undo
    /// (store start-up). A parent may have a larger index than its child
    /// after a re-parenting, so nodes are linked once all are in.
    pub fn load_nodes(&mut self, nodes: Vec<Node>) -> Result<(), CatalogError> {
        let first = self.nodes.len();
        for node in nodes {
            let idx = ArtIdx(self.nodes.len() as u32);
            if let Some(inv) = node.inventory {
                if inv.0 as usize >= self.inventories.len() {
                    return Err(CatalogError::Invalid(format!(
                        "stored artifact {} refers to a missing inventory",
                        node.id
                    )));
                }
                self.holders.entry(inv).or_default().push(idx);
            }
            self.by_id.insert(node.id.clone(), idx);
            self.links.push(Link::of(&node));
            self.nodes.push(node);
            self.children.push(Vec::new());
            self.pos_in_parent.push(u32::MAX);
        }
        for i in first..self.nodes.len() {
            if let Some(p) = self.nodes[i].parent
                && p.0 as usize >= self.nodes.len()
            {
                return Err(CatalogError::Invalid(format!(
                    "stored artifact {} refers to a missing parent",
                    self.nodes[i].id
                )));
            }
            if let Some(p) = self.nodes[i].supersedes
                && p.0 as usize >= self.nodes.len()
            {
                return Err(CatalogError::Invalid(format!(
                    "stored artifact {} supersedes a missing artifact",
                    self.nodes[i].id
                )));
            }
            self.attach(ArtIdx(i as u32));
        }
        self.generation += 1;
        self.mark_saved();
        Ok(())
    }

    /// Brings stored artifacts in as another node committed them (a
    /// follower catching up): each row replaces the node at its index or,
    /// at the end, appends it; ids never change. Rows come in index order;
    /// links are made once all are in (a re-parenting may point at a row
    /// further on). Without checks or undo, like [`Catalog::load_nodes`];
    /// an inconsistent row is an error and the caller reloads whole.
    pub fn restore_nodes(&mut self, rows: Vec<(ArtIdx, Node)>) -> Result<(), CatalogError> {
        let invalid = |what: String| Err(CatalogError::Invalid(what));
        let mut touched = Vec::with_capacity(rows.len());
        for (idx, node) in rows {
            let i = idx.0 as usize;
            if let Some(inv) = node.inventory
                && inv.0 as usize >= self.inventories.len()
            {
                return invalid(format!(
                    "stored artifact {} refers to a missing inventory",
                    node.id
                ));
            }
            if i < self.nodes.len() {
                if self.nodes[i].id != node.id {
                    return invalid(format!(
                        "stored artifact {} at the index of {}",
                        node.id, self.nodes[i].id
                    ));
                }
                self.detach(idx);
                if let Some(inv) = self.nodes[i].inventory {
                    self.unhold(inv, idx);
                }
                if let Some(inv) = node.inventory {
                    self.holders.entry(inv).or_default().push(idx);
                }
                self.links[i] = Link::of(&node);
                self.nodes[i] = node;
            } else if i == self.nodes.len() {
                if self.by_id.contains_key(&node.id) {
                    return invalid(format!("stored artifact {} twice", node.id));
                }
                if let Some(inv) = node.inventory {
                    self.holders.entry(inv).or_default().push(idx);
                }
                self.by_id.insert(node.id.clone(), idx);
                self.links.push(Link::of(&node));
                self.nodes.push(node);
                self.children.push(Vec::new());
                self.pos_in_parent.push(u32::MAX);
            } else {
                return invalid(format!("stored artifact index {i} past the end"));
            }
            touched.push(idx);
        }
        for idx in touched {
            if let Some(p) = self.nodes[idx.0 as usize].parent
                && p.0 as usize >= self.nodes.len()
            {
                return invalid(format!(
                    "stored artifact {} refers to a missing parent",
                    self.nodes[idx.0 as usize].id
                ));
            }
            if let Some(p) = self.nodes[idx.0 as usize].supersedes
                && p.0 as usize >= self.nodes.len()
            {
                return invalid(format!(
                    "stored artifact {} supersedes a missing artifact",
                    self.nodes[idx.0 as usize].id
                ));
            }
            self.attach(idx);
        }
        self.generation += 1;
        self.mark_saved();
        Ok(())
    }

    pub fn load_tenant(&mut self, id: TenantId) -> TenantIdx {
        self.ensure_tenant(&id)
    }

    pub fn components_mut(&mut self) -> &mut Components {
        &mut self.components
    }

    pub fn inventories_mut(&mut self) -> &mut Inventories {
        &mut self.inventories
    }

    fn insert(&mut self, node: Node) -> ArtIdx {
        let idx = ArtIdx(self.nodes.len() as u32);
        self.by_id.insert(node.id.clone(), idx);
        if let Some(inv) = node.inventory {
            self.holders.entry(inv).or_default().push(idx);
        }
        self.links.push(Link::of(&node));
        self.nodes.push(node);
        self.children.push(Vec::new());
        self.pos_in_parent.push(u32::MAX);
        self.attach(idx);
        self.undo.push(Undo::Inserted(idx));
        self.dirty.insert(idx);
        self.generation += 1;
        idx
    }

    fn replace(&mut self, idx: ArtIdx, node: Node) {
        self.detach(idx);
        if let Some(inv) = self.nodes[idx.0 as usize].inventory {
            self.unhold(inv, idx);
        }
        if let Some(inv) = node.inventory {
            self.holders.entry(inv).or_default().push(idx);
        }
        self.links[idx.0 as usize] = Link::of(&node);
        let old = std::mem::replace(&mut self.nodes[idx.0 as usize], node);
        self.undo.push(Undo::Replaced(idx, Box::new(old)));
        self.attach(idx);
        self.dirty.insert(idx);
        self.generation += 1;
    }

    fn unhold(&mut self, inv: InvId, idx: ArtIdx) {
        if let Some(list) = self.holders.get_mut(&inv) {
            list.retain(|&a| a != idx);
            if list.is_empty() {
                self.holders.remove(&inv);
            }
        }
    }

    /// Puts a live node into its parent's children (and its predecessor's
    /// successors).
    fn attach(&mut self, idx: ArtIdx) {
        let node = &self.nodes[idx.0 as usize];
        if node.removed {
            return;
        }
        if let Some(s) = node.supersedes {
            self.successors.entry(s).or_default().push(idx);
        }
        if let Some(p) = node.parent {
            let siblings = &mut self.children[p.0 as usize];
            self.pos_in_parent[idx.0 as usize] = siblings.len() as u32;
            siblings.push(idx);
        }
    }

    /// Takes a node out of its parent's children and its predecessor's
    /// successors (no-op when not in them).
    fn detach(&mut self, idx: ArtIdx) {
        if let Some(s) = self.nodes[idx.0 as usize].supersedes
            && let Some(list) = self.successors.get_mut(&s)
        {
            list.retain(|&x| x != idx);
            if list.is_empty() {
                self.successors.remove(&s);
            }
        }
        let pos = self.pos_in_parent[idx.0 as usize];
        if pos == u32::MAX {
            return;
        }
        self.pos_in_parent[idx.0 as usize] = u32::MAX;
        let Some(p) = self.nodes[idx.0 as usize].parent else {
            return;
        };
        let siblings = &mut self.children[p.0 as usize];
        let pos = pos as usize;
        debug_assert_eq!(siblings.get(pos), Some(&idx));
        siblings.swap_remove(pos);
        if let Some(&moved) = siblings.get(pos) {
            self.pos_in_parent[moved.0 as usize] = pos as u32;
        }
    }
}

/// A live node as a spec describes it.
fn node_of(
    spec: &ArtifactSpec,
    tenant: TenantIdx,
    parent: Option<ArtIdx>,
    relation: Option<Relation>,
    inventory: Option<InvId>,
    fixes: Box<[AdvisoryId]>,
) -> Node {
    Node {
        id: spec.id.clone(),
        kind: spec.kind,
        tenant,
        parent,
        relation,
        visibility: spec.visibility,
        name: spec.name.as_deref().map(Into::into),
        labels: spec.labels.clone(),
        inventory,
        fixes,
        supersedes: None,
        warnings: spec.warnings.iter().map(|w| w.as_str().into()).collect(),
        removed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, kind: Kind, parent: Option<&str>) -> ArtifactSpec {
        ArtifactSpec {
            id: ArtifactId::new(id).unwrap(),
            kind,
            tenant: TenantId::new("t1").unwrap(),
            name: None,
            parent: parent.map(|p| ArtifactId::new(p).unwrap()),
            relation: None,
            visibility: Visibility::Private,
            labels: BTreeMap::new(),
            components: None,
            supersedes: None,
            fixes: vec![],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn relations_are_checked_and_inferred() {
        let mut c = Catalog::new();
        c.apply(
            &spec("base", Kind::Image, None),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        c.apply(
            &spec("tpl", Kind::Template, Some("base")),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        c.apply(
            &spec("vm", Kind::Instance, Some("tpl")),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        let vm = c.lookup("vm").unwrap();
        assert_eq!(c.node(vm).relation, Some(Relation::LaunchedFrom));
        let err = c
            .apply(
                &spec("rep", Kind::Replica, Some("vm")),
                Mode::Create,
                &Actor::Admin,
            )
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::RelationMismatch { .. }),
            "{err}"
        );
        // A template converted from an instance is fine (vSphere).
        c.apply(
            &spec("tpl2", Kind::Template, Some("vm")),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        let mut wrong = spec("img2", Kind::Image, Some("base"));
        wrong.relation = Some(Relation::ConvertedFrom);
        assert!(c.apply(&wrong, Mode::Create, &Actor::Admin).is_err());
        assert!(matches!(
            c.apply(
                &spec("x", Kind::Image, Some("nope")),
                Mode::Create,
                &Actor::Admin
            ),
            Err(CatalogError::UnknownParent { .. })
        ));
    }

    #[test]
    fn duplicates_and_cycles() {
        let mut c = Catalog::new();
        c.apply(&spec("a", Kind::Image, None), Mode::Create, &Actor::Admin)
            .unwrap();
        c.apply(
            &spec("b", Kind::Image, Some("a")),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        c.apply(
            &spec("c", Kind::Image, Some("b")),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        assert!(matches!(
            c.apply(
                &spec("b", Kind::Image, Some("a")),
                Mode::Create,
                &Actor::Admin
            ),
            Ok(Outcome::Unchanged(_))
        ));
        assert!(matches!(
            c.apply(&spec("b", Kind::Image, None), Mode::Create, &Actor::Admin),
            Err(CatalogError::Conflict { .. })
        ));
        assert!(matches!(
            c.apply(
                &spec("a", Kind::Image, Some("c")),
                Mode::Upsert,
                &Actor::Admin
            ),
            Err(CatalogError::Cycle { .. })
        ));
        // Re-parenting that makes no cycle is fine.
        c.apply(
            &spec("c", Kind::Image, Some("a")),
            Mode::Upsert,
            &Actor::Admin,
        )
        .unwrap();
        let a = c.lookup("a").unwrap();
        assert_eq!(c.children(a).len(), 2);
    }

    #[test]
    fn rollback_restores_everything() {
        let mut c = Catalog::new();
        c.apply(&spec("a", Kind::Image, None), Mode::Create, &Actor::Admin)
            .unwrap();
        c.take_changes();
        let cp = c.checkpoint();
        let mut with_inv = spec("b", Kind::Image, Some("a"));
        with_inv.components = Some(vec!["pkg:deb/debian/zlib1g@1.2.13?arch=amd64".into()]);
        c.apply(&with_inv, Mode::Create, &Actor::Admin).unwrap();
        c.apply(
            &spec("a", Kind::Image, None).tap_labels(),
            Mode::Upsert,
            &Actor::Admin,
        )
        .unwrap();
        c.rollback(cp);
        assert_eq!(c.len(), 1);
        assert!(c.lookup("b").is_none());
        assert!(c.node(c.lookup("a").unwrap()).labels.is_empty());
        assert_eq!(c.components().len(), 0);
        assert_eq!(c.inventories().len(), 0);
        assert!(c.children(c.lookup("a").unwrap()).is_empty());
    }

    #[test]
    fn tenants_see_their_own_and_public() {
        let mut c = Catalog::new();
        let mut public = spec("pub", Kind::Image, None);
        public.visibility = Visibility::Public;
        c.apply(&public, Mode::Create, &Actor::Admin).unwrap();
        c.apply(
            &spec("priv", Kind::Image, None),
            Mode::Create,
            &Actor::Admin,
        )
        .unwrap();
        let other = Actor::Tenant(TenantId::new("t2").unwrap());
        assert!(c.visible("pub", &other).is_some());
        assert!(c.visible("priv", &other).is_none());
        let mut child = spec("mine", Kind::Instance, Some("priv"));
        child.tenant = TenantId::new("t2").unwrap();
        assert!(matches!(
            c.apply(&child, Mode::Create, &other),
            Err(CatalogError::UnknownParent { .. })
        ));
        child.parent = Some(ArtifactId::new("pub").unwrap());
        c.apply(&child, Mode::Create, &other).unwrap();
    }

    impl ArtifactSpec {
        fn tap_labels(mut self) -> Self {
            self.labels.insert("region".into(), "eu".into());
            self
        }
    }
}
