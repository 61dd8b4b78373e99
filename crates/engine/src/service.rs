//! The pub/sub side of the engine: tenants' roles and tokens, subscriptions
//! and watches in memory, and the notices and deliveries that follow from
//! every change (CONTRACT.md §3, §4.5, §4.6). Everything here ends up in the
//! [`Outbox`] committed with the change that caused it, so a notice is
//! durable before any channel can see it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use patchline_core::inventory::ComponentId;

use patchline_core::notice::{
    DisableReason, Grouping, NoticeState, Purpose, Severity, SubscriptionState,
};
use patchline_core::propagate::ComponentHit;
use patchline_core::remedy::{RootCause, StepFinder};
use patchline_core::{Actor, AdvIdx, ArtIdx, Catalog, Record, TenantIdx};
use patchline_delivery::reminder::ReminderPolicy;
use patchline_delivery::routing::{FilterInput, Subscription, Webhooks, batches, grouped_batches};
use patchline_delivery::{GroupDoc, RemediatedBy};
use patchline_formats::vex::Justification;
use patchline_store::service::{
    DeliveryRow, GroupRow, NoticeChange, NoticeMove, NoticeRow, PatchRow, Remediated, RootRow,
    TokenRow, VexRow,
};
use patchline_store::{Outbox, ServiceState};
use serde::{Deserialize, Serialize};

pub use patchline_delivery::{GroupEntry, NOTICE_COMPONENTS_MAX, message_id};
/// A role a tenant holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Tenant,
    Publisher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::Publisher => "publisher",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "tenant" => Some(Role::Tenant),
            "publisher" => Some(Role::Publisher),
            _ => None,
        }
    }
}

/// The service state the engine keeps in memory.
#[derive(Debug, Default)]
pub struct ServiceMem {
    pub roles: HashMap<TenantIdx, Vec<Role>>,
    /// Token hash -> (token id, tenant); revoked tokens are absent.
    pub tokens: HashMap<String, (String, TenantIdx)>,
    /// Every token ever made, by id (revoked ones with their time).
    pub token_list: BTreeMap<String, TokenInfo>,
    /// The tenant that published each record (operator records: absent).
    pub record_owners: HashMap<AdvIdx, TenantIdx>,
    /// Id prefixes reserved for a publisher (`USN-` → canonical).
    pub prefixes: BTreeMap<String, TenantIdx>,
    /// A random id of this installation, part of every message id.
    pub installation: String,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Watchers of each public artifact.
    pub watchers: HashMap<ArtIdx, Vec<TenantIdx>>,
    /// Tenants' VEX statements (see [`ServiceMem::vex_decision`]).
    pub vex: VexIndex,
    /// Webhook subscriptions per tenant (derived from `subscriptions`;
    /// every notice looks its readers up here).
    webhooks: Webhooks,
    pub next_notice_id: i64,
    pub next_delivery_id: i64,
    pub next_group_id: i64,
}

/// A token as listed to its tenant and to admins (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub tenant: TenantIdx,
    pub created_at_ms: i64,
    pub minted_by: Option<String>,
    pub revoked_at_ms: Option<i64>,
}

impl ServiceMem {
    pub fn load(state: ServiceState) -> ServiceMem {
        let mut mem = ServiceMem {
            next_notice_id: state.next_notice_id.max(1),
            next_delivery_id: state.next_delivery_id.max(1),
            next_group_id: state.next_group_id.max(1),
            ..Default::default()
        };
        for (t, roles) in state.roles {
            mem.roles
                .insert(t, roles.split(',').filter_map(Role::parse).collect());
        }
        for TokenRow {
            id,
            tenant,
            hash,
            revoked_at_ms,
            created_at_ms,
            minted_by,
        } in state.tokens
        {
            if revoked_at_ms.is_none() {
                mem.tokens.insert(hash, (id.clone(), tenant));
            }
            mem.token_list.insert(
                id.clone(),
                TokenInfo {
                    id,
                    tenant,
                    created_at_ms,
                    minted_by,
                    revoked_at_ms,
                },
            );
        }
        mem.record_owners = state.record_owners.into_iter().collect();
        mem.prefixes = state.prefixes.into_iter().collect();
        mem.installation = state.installation;
        for row in &state.subscriptions {
            if let Some(s) = Subscription::from_row(row) {
                mem.subscriptions.insert(s.id.clone(), s);
            }
        }
        for (t, a) in state.watches {
            mem.watchers.entry(a).or_default().push(t);
        }
        for row in state.vex {
            mem.add_vex(row);
        }
        mem.reindex();
        mem
    }

    /// Rebuilds the per-tenant webhook index after a subscription change
    /// (see [`Webhooks`]).
    pub fn reindex(&mut self) {
        self.webhooks = Webhooks::index(&self.subscriptions);
    }

    /// Keeps a VEX statement, in place of the tenant's earlier one on the
    /// same artifact about the same vulnerability and packages.
    pub fn add_vex(&mut self, row: VexRow) {
        self.vex.add(row);
    }

    /// The owner's VEX statement that decides `record` on `a`: on the
    /// nearest of `a` and its ancestors that has one (a statement covers
    /// its artifact's subtree, unless it was made for the artifact alone),
    /// made by `a`'s owner, naming the record (its id, an alias or an
    /// upstream id) and, when it is about packages, one the record
    /// affects; of several there, the latest.
    pub fn vex_decision(&self, catalog: &Catalog, a: ArtIdx, record: &Record) -> Option<&VexRow> {
        // Most chains hold no statement: found without a name made.
        if !std::iter::once(a)
            .chain(catalog.ancestors(a))
            .any(|x| self.vex.artifacts.contains_key(&x))
        {
            return None;
        }
        let tenant = catalog.node(a).tenant;
        let names = record_names(record);
        std::iter::once(a)
            .chain(catalog.ancestors(a))
            .find_map(|x| {
                names
                    .iter()
                    .filter_map(|n| self.vex.by_name.get(&(x, n.clone())))
                    .flatten()
                    .filter_map(|&i| {
                        let (seq, r) = self.vex.rows[i].as_ref()?;
                        (r.tenant == tenant
                            && (x == a || r.subtree)
                            && (r.packages.is_empty()
                                || r.packages.iter().any(|p| affects_package(record, p))))
                        .then_some((*seq, r))
                    })
                    .max_by_key(|(seq, _)| *seq)
                    .map(|(_, r)| r)
            })
    }

    pub fn has_role(&self, t: TenantIdx, role: Role) -> bool {
        self.roles.get(&t).is_some_and(|r| r.contains(&role))
    }

    /// Whether the token is still valid (not revoked).
    pub fn token_active(&self, id: &str) -> bool {
        self.token_list
            .get(id)
            .is_some_and(|t| t.revoked_at_ms.is_none())
    }

    /// The tenant that published a record; `None` for the operator's.
    pub fn record_owner(&self, adv: AdvIdx) -> Option<TenantIdx> {
        self.record_owners.get(&adv).copied()
    }

    /// The longest reserved prefix of `id`, with its publisher.
    pub fn reserved_prefix(&self, id: &str) -> Option<(&str, TenantIdx)> {
        self.prefixes
            .iter()
            .filter(|(p, _)| id.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, t)| (p.as_str(), *t))
    }

    /// The message id of a delivery: unique across installations and the
    /// same on every retry (Standard Webhooks `webhook-id`).
    pub fn message_id(&self, delivery: i64) -> String {
        message_id(&self.installation, delivery)
    }

    fn webhooks_of(&self, t: TenantIdx) -> impl Iterator<Item = &Subscription> {
        self.webhooks.of(t, &self.subscriptions)
    }
}

/// What a record contributes to notices.
struct RecordInfo<'a> {
    id: &'a str,
    summary: Option<&'a str>,
    severity: Option<Severity>,
    aliases: &'a [String],
}

/// What a subscription's filter looks at of a notice of `info`'s record
/// on `node`, whose affected components have `facts` (purl types, package
/// names).
fn filter_input<'a>(
    info: &RecordInfo<'a>,
    node: &'a patchline_core::catalog::Node,
    facts: &'a (Vec<String>, Vec<String>),
) -> FilterInput<'a> {
    FilterInput {
        severity: info.severity,
        kind: node.kind,
        labels: &node.labels,
        purl_types: &facts.0,
        packages: &facts.1,
        advisory: info.id,
        aliases: info.aliases,
    }
}

/// What the delivery view keeps of a record.
pub fn record_facts(record: &Record) -> patchline_delivery::RecordFacts {
    let info = record_info(record);
    patchline_delivery::RecordFacts {
        id: info.id.into(),
        summary: info.summary.map(Into::into),
        severity: info.severity,
    }
}

fn record_info(record: &Record) -> RecordInfo<'_> {
    match record {
        Record::Advisory(a) => RecordInfo {
            id: a.id.as_str(),
            summary: a.osv.summary.as_deref(),
            severity: a.severity(),
            aliases: &a.osv.aliases,
        },
        Record::Failure(f) => RecordInfo {
            id: f.id.as_str(),
            summary: Some(&f.summary),
            severity: f.severity.as_deref().and_then(Severity::parse_word),
            aliases: &[],
        },
    }
}

/// (record, hash of the component list) -> [(component list, facts)].
type FilterFacts =
    HashMap<(AdvIdx, u64), Vec<(Vec<Option<ComponentId>>, Rc<(Vec<String>, Vec<String>)>)>>;

/// (record, hash of the hits) -> [(hits, group id, top-most introduction)].
type Groups = HashMap<(AdvIdx, u64), Vec<(Vec<ComponentHit>, i64, ArtIdx)>>;

/// Root causes known to be stored, by (record, cause): a write looks each
/// of its causes up here before the store. Only roots read back from the
/// store enter it (a root made by a write that then fails to commit never
/// does), and a stored root never changes, so an entry is never stale.
/// Bounded: emptied past [`RootCache::MAX`] entries.
#[derive(Debug, Default)]
pub struct RootCache {
    map: HashMap<(AdvIdx, RootCause), i64>,
}

impl RootCache {
    pub const MAX: usize = 1 << 20;

    fn get(&self, adv: AdvIdx, cause: RootCause) -> Option<i64> {
        self.map.get(&(adv, cause)).copied()
    }

    fn insert(&mut self, adv: AdvIdx, cause: RootCause, id: i64) {
        if self.map.len() >= Self::MAX {
            self.map.clear();
        }
        self.map.insert((adv, cause), id);
    }
}

/// Most records agreeing with a record whose roots a new cause may join
/// (the nearest, direct agreement first). A name shared by thousands of
/// records would otherwise cost a store lookup each, at every write of
/// each of them.
const AGREEING_LOOKED_AT: usize = 64;

/// The roots that records agreeing with a record hold for `causes`, by
/// cause (the lowest id where several do): made earlier in this write
/// (`known`), cached, or stored (one lookup per agreeing record).
fn shared_roots(
    store: &mut (impl CatalogStore + ?Sized),
    cache: &mut RootCache,
    known: &HashMap<(AdvIdx, RootCause), i64>,
    agreeing: &[AdvIdx],
    causes: &[RootCause],
) -> Result<HashMap<RootCause, i64>, patchline_store::StoreError> {
    let mut shared: HashMap<RootCause, i64> = HashMap::new();
    let mut keep = |cause: RootCause, id: i64| {
        shared
            .entry(cause)
            .and_modify(|s| *s = (*s).min(id))
            .or_insert(id);
    };
    for &other in agreeing {
        let mut ask: Vec<RootCause> = Vec::new();
        for &cause in causes {
            match known
                .get(&(other, cause))
                .copied()
                .or_else(|| cache.get(other, cause))
            {
                Some(id) => keep(cause, id),
                None => ask.push(cause),
            }
        }
        if ask.is_empty() {
            continue;
        }
        for (cause, id) in ask.iter().zip(store.root_ids(other, &ask)?) {
            if let Some(id) = id {
                cache.insert(other, *cause, id);
                keep(*cause, id);
            }
        }
    }
    Ok(shared)
}

/// Where a notice of this change that needs a root cause is: a new row of
/// the outbox, a reopening (a change of the outbox), or an open notice
/// placed again (one of [`Notifier::moves`]).
#[derive(Debug, Clone, Copy)]
enum Rooted {
    New(usize),
    Reopened(usize),
    Moved(usize),
}

/// Notice ids queued for one subscription: the ids, whether it is active,
/// how it groups.
type Queued = (Vec<i64>, bool, Grouping);

/// Collects notices and deliveries for one change.
#[derive(Debug)]
pub struct Notifier<'a> {
    pub catalog: &'a Catalog,
    pub mem: &'a mut ServiceMem,
    pub outbox: &'a mut Outbox,
    pub now_ms: i64,
    /// record -> subscription -> queued notice ids.
    pending: BTreeMap<AdvIdx, HashMap<String, Queued>>,
    /// The root cause of each new or reopened notice, given its id by
    /// [`Notifier::assign_roots`].
    causes: Vec<(Rooted, AdvIdx, RootCause)>,
    /// notice id -> root id, for batching grouped subscriptions.
    root_of: HashMap<i64, i64>,
    finder: StepFinder,
    /// Open notices placed again, with their stored (path, root): written
    /// by [`Notifier::assign_roots`] where either changed.
    moves: Vec<(NoticeMove, Vec<u32>, Option<i64>)>,
    /// What filters look at, per (record, affected components): computed
    /// once for all the artifacts sharing them.
    filter_facts: FilterFacts,
    /// Notice groups made by this change: (record, hash) -> [(hits, id, top)].
    groups: Groups,
    /// Estimated rendered bytes of each notice queued by this change.
    sizes: HashMap<i64, usize>,
    /// New notice ids per reading tenant (owner and watchers), for streams.
    pub created: Vec<(TenantIdx, i64)>,
    /// subscription -> (patch notice ids to deliver, subscription active).
    patches: BTreeMap<String, (Vec<i64>, bool)>,
}

impl<'a> Notifier<'a> {
    pub fn new(
        catalog: &'a Catalog,
        mem: &'a mut ServiceMem,
        outbox: &'a mut Outbox,
        now_ms: i64,
    ) -> Notifier<'a> {
        Notifier {
            catalog,
            mem,
            outbox,
            now_ms,
            pending: BTreeMap::new(),
            filter_facts: HashMap::new(),
            groups: HashMap::new(),
            sizes: HashMap::new(),
            created: Vec::new(),
            patches: BTreeMap::new(),
            causes: Vec::new(),
            root_of: HashMap::new(),
            finder: StepFinder::default(),
            moves: Vec::new(),
        }
    }

    /// An open notice that still applies, placed again: its group, path
    /// and root cause as they are now (written only where they changed).
    pub fn replace(
        &mut self,
        adv: AdvIdx,
        a: ArtIdx,
        hits: &[ComponentHit],
        stored: &patchline_store::ArtifactNotice,
    ) {
        let (group, top) = self.group(adv, hits);
        let path = self.path(top, a);
        let cause = self.finder.root_cause(self.catalog, top, a);
        self.causes
            .push((Rooted::Moved(self.moves.len()), adv, cause));
        self.moves.push((
            NoticeMove {
                id: stored.id,
                group,
                path,
                root: None,
            },
            stored.path.clone(),
            stored.root,
        ));
    }

    /// Gives every new or reopened notice of this change its root cause's
    /// id: the stored one, one made earlier in this write, or a new one
    /// from the notices' sequence. A new root of a rebase or a relaunch
    /// records the parent its step moves from (`waits_for`) and, when one
    /// exists, the successor it moves onto: `onto_of(record, tenant,
    /// parent)`.
    ///
    /// Records that alias one vulnerability share roots: a cause of a
    /// record with no root of its own joins the root of a record that
    /// agrees with it (`agreeing(record)`: sharing an id, alias or upstream
    /// id) for the same cause — the lowest id when several do — so the
    /// tenant gets one grouped notice where each record would have made
    /// one. Call before [`Notifier::finish`].
    pub fn assign_roots(
        &mut self,
        store: &mut (impl CatalogStore + ?Sized),
        cache: &mut RootCache,
        onto_of: &mut dyn FnMut(AdvIdx, TenantIdx, ArtIdx) -> Option<ArtIdx>,
        agreeing: &dyn Fn(AdvIdx) -> Vec<AdvIdx>,
    ) -> Result<(), patchline_store::StoreError> {
        if self.causes.is_empty() {
            return Ok(());
        }
        let moves = std::mem::take(&mut self.moves);
        let causes = std::mem::take(&mut self.causes);
        // Roots made earlier in this write (another record's pass), not
        // yet committed.
        let mut known: HashMap<(AdvIdx, RootCause), i64> = self
            .outbox
            .roots
            .iter()
            .map(|r| ((r.advisory, r.cause), r.id))
            .collect();
        let mut asked: BTreeMap<AdvIdx, Vec<RootCause>> = BTreeMap::new();
        for (_, adv, cause) in &causes {
            if known.contains_key(&(*adv, *cause)) {
                continue;
            }
            match cache.get(*adv, *cause) {
                Some(id) => {
                    known.insert((*adv, *cause), id);
                }
                None => asked.entry(*adv).or_default().push(*cause),
            }
        }
        // In the records' order, so that a record's new root is known to
        // the records after it that agree with it. `agreeing` answers are
        // kept for the records' chains (a change reaching many records
        // that agree walks the same ones).
        let mut agree_memo: HashMap<AdvIdx, Vec<AdvIdx>> = HashMap::new();
        for (adv, mut list) in asked {
            list.sort_unstable();
            list.dedup();
            let ids = store.root_ids(adv, &list)?;
            let mut missing: Vec<RootCause> = Vec::new();
            for (cause, id) in list.into_iter().zip(ids) {
                match id {
                    Some(id) => {
                        // Stored, so committed: it never changes.
                        cache.insert(adv, cause, id);
                        known.insert((adv, cause), id);
                    }
                    None => missing.push(cause),
                }
            }
            if missing.is_empty() {
                continue;
            }
            let class = self.agreeing_class(adv, &mut |r| {
                agree_memo.entry(r).or_insert_with(|| agreeing(r)).clone()
            });
            let shared = shared_roots(store, cache, &known, &class, &missing)?;
            for cause in missing {
                let id = match shared.get(&cause) {
                    Some(&id) => id,
                    None => {
                        let id = self.mem.next_notice_id;
                        self.mem.next_notice_id += 1;
                        let waits_for = patchline_core::remedy::upstream(
                            self.catalog,
                            cause.step,
                            cause.action,
                        );
                        let onto = waits_for.and_then(|p| onto_of(adv, cause.tenant, p));
                        self.outbox.roots.push(RootRow {
                            id,
                            advisory: adv,
                            cause,
                            at_ms: self.now_ms,
                            waits_for,
                            onto,
                        });
                        id
                    }
                };
                known.insert((adv, cause), id);
            }
        }
        for (at, adv, cause) in causes {
            let Some(&root) = known.get(&(adv, cause)) else {
                continue;
            };
            let notice = match at {
                Rooted::New(i) => self.outbox.notices.get_mut(i).map(|n| {
                    n.root = Some(root);
                    n.id
                }),
                Rooted::Reopened(i) => self.outbox.notice_changes.get_mut(i).and_then(|c| {
                    let regroup = c.regroup.as_mut()?;
                    regroup.2 = Some(root);
                    Some(c.id)
                }),
                Rooted::Moved(i) => {
                    // Written only where the path or the root changed
                    // (the group of components follows the path's hits).
                    if let Some((m, path, was)) = moves.get(i)
                        && (m.path != *path || *was != Some(root))
                    {
                        let mut m = m.clone();
                        m.root = Some(root);
                        self.outbox.notice_moves.push(m);
                    }
                    None
                }
            };
            if let Some(id) = notice {
                self.root_of.insert(id, root);
            }
        }
        Ok(())
    }

    /// The records whose roots a cause of `adv` may join: those agreeing
    /// with it directly or through a chain of records that agree, all of
    /// the same publisher as `adv` (another publisher's record could
    /// otherwise head a group and its plan), the nearest
    /// [`AGREEING_LOOKED_AT`] of them, sorted by index.
    fn agreeing_class(
        &self,
        adv: AdvIdx,
        agreeing: &mut dyn FnMut(AdvIdx) -> Vec<AdvIdx>,
    ) -> Vec<AdvIdx> {
        let owner = self.mem.record_owner(adv);
        let mut seen: HashSet<AdvIdx> = HashSet::from([adv]);
        let mut queue: VecDeque<AdvIdx> = VecDeque::from([adv]);
        let mut class = Vec::new();
        'walk: while let Some(r) = queue.pop_front() {
            for other in agreeing(r) {
                if class.len() >= AGREEING_LOOKED_AT {
                    break 'walk;
                }
                if self.mem.record_owner(other) == owner && seen.insert(other) {
                    class.push(other);
                    queue.push_back(other);
                }
            }
        }
        class.sort_unstable();
        class
    }

    /// The group of notices sharing these hits of this record (created on
    /// first use), and the top-most introduction among the hits.
    fn group(&mut self, adv: AdvIdx, hits: &[ComponentHit]) -> (i64, ArtIdx) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for hit in hits {
            hit.component.hash(&mut h);
            hit.introduced_by.hash(&mut h);
            hit.fixed.hash(&mut h);
        }
        let key = (adv, h.finish());
        if let Some(list) = self.groups.get(&key)
            && let Some((_, id, top)) = list.iter().find(|(stored, _, _)| stored.as_slice() == hits)
        {
            return (*id, *top);
        }
        let catalog = self.catalog;
        let depth = |a: ArtIdx| catalog.ancestors(a).count();
        let top = hits
            .iter()
            .map(|h| h.introduced_by)
            .min_by_key(|&a| depth(a))
            .unwrap_or(ArtIdx(0));
        let mut entries: Vec<GroupEntry> = hits
            .iter()
            .map(|h| GroupEntry {
                purl: h
                    .component
                    .map(|c| catalog.components().get(c).purl.to_string()),
                introduced_by: h.introduced_by.0,
                fixed: h.fixed.as_deref().map(str::to_string),
            })
            .collect();
        entries.sort_by(|a, b| a.purl.cmp(&b.purl));
        let id = self.mem.next_group_id;
        self.mem.next_group_id += 1;
        self.outbox.groups.push(GroupRow {
            id,
            advisory: adv,
            components: GroupDoc {
                components: entries,
            }
            .to_stored(),
        });
        self.groups
            .entry(key)
            .or_default()
            .push((hits.to_vec(), id, top));
        (id, top)
    }

    /// The lineage path of `a` from `top`, as artifact indexes.
    fn path(&self, top: ArtIdx, a: ArtIdx) -> Vec<u32> {
        patchline_core::propagate::path(self.catalog, top, a)
            .into_iter()
            .map(|x| x.0)
            .collect()
    }

    /// The rendered size of a notice, estimated from its components and
    /// its lineage path (the ids it will name).
    fn estimate(&self, hits: &[ComponentHit], path: &[u32]) -> usize {
        let components: usize = hits
            .iter()
            .take(NOTICE_COMPONENTS_MAX)
            .map(|h| {
                h.component
                    .map_or(0, |c| self.catalog.components().get(c).purl.len())
                    + h.fixed.as_deref().map_or(0, str::len)
                    + patchline_core::model::ID_LEN_MAX
                    + 64
            })
            .sum();
        let path: usize = path
            .iter()
            .map(|&i| self.catalog.node(ArtIdx(i)).id.as_str().len() + 3)
            .sum();
        512 + components + path
    }

    /// Records a notice for (record, artifact) and queues its deliveries.
    pub fn notice(&mut self, record: &Record, adv: AdvIdx, a: ArtIdx, hits: &[ComponentHit]) {
        let (group, top) = self.group(adv, hits);
        let path = self.path(top, a);
        let size = self.estimate(hits, &path);
        let id = self.mem.next_notice_id;
        self.mem.next_notice_id += 1;
        let cause = self.finder.root_cause(self.catalog, top, a);
        self.causes
            .push((Rooted::New(self.outbox.notices.len()), adv, cause));
        self.outbox.notices.push(NoticeRow {
            id,
            advisory: adv,
            artifact: a,
            tenant: self.catalog.node(a).tenant,
            state: NoticeState::Affected,
            group,
            path,
            at_ms: self.now_ms,
            root: None,
        });
        self.sizes.insert(id, size);
        self.decide_and_route(record, adv, a, hits, id);
    }

    /// Under the owner's VEX statement a new or reopened notice takes its
    /// decision at once (a change in the same commit) and is not sent to
    /// the owner; watchers are sent it as ever (their notices do not show
    /// the owner's state, and must not tell it by their absence).
    fn decide_and_route(
        &mut self,
        record: &Record,
        adv: AdvIdx,
        a: ArtIdx,
        hits: &[ComponentHit],
        id: i64,
    ) {
        let decided = self.decided(record, adv, a, id);
        let owner = decided.is_none();
        self.outbox.notice_changes.extend(decided);
        self.route(record, adv, a, hits, id, owner);
    }

    /// An open notice placed again ([`Notifier::replace`]) under the
    /// owner's VEX statement takes its decision (`not_affected` closes an
    /// acknowledged one too; `acknowledged` changes only affected and
    /// notified ones).
    pub fn decide(
        &mut self,
        record: &Record,
        adv: AdvIdx,
        a: ArtIdx,
        id: i64,
        current: NoticeState,
    ) {
        if let Some(change) = self.decided(record, adv, a, id)
            && change.state != current
            && (change.state == NoticeState::NotAffected || current.is_open())
        {
            self.outbox.notice_changes.push(change);
        }
    }

    /// The change that gives notice `id` the decision of the owner's VEX
    /// statement covering `a`, if one does.
    fn decided(&self, record: &Record, adv: AdvIdx, a: ArtIdx, id: i64) -> Option<NoticeChange> {
        let row = self.mem.vex_decision(self.catalog, a, record)?;
        Some(NoticeChange {
            id,
            advisory: adv,
            state: row.state,
            justification: row.justification.clone(),
            detail: row.detail.clone(),
            at_ms: self.now_ms,
            regroup: None,
            remediated_by: None,
        })
    }

    /// A closed notice applies again (reintroduced): reopened and re-sent.
    pub fn reopen(
        &mut self,
        record: &Record,
        adv: AdvIdx,
        a: ArtIdx,
        hits: &[ComponentHit],
        id: i64,
    ) {
        let (group, top) = self.group(adv, hits);
        let path = self.path(top, a);
        self.sizes.insert(id, self.estimate(hits, &path));
        let cause = self.finder.root_cause(self.catalog, top, a);
        self.causes.push((
            Rooted::Reopened(self.outbox.notice_changes.len()),
            adv,
            cause,
        ));
        self.outbox.notice_changes.push(NoticeChange {
            id,
            advisory: adv,
            state: NoticeState::Affected,
            justification: None,
            detail: None,
            at_ms: self.now_ms,
            regroup: Some((group, path, None)),
            remediated_by: None,
        });
        self.decide_and_route(record, adv, a, hits, id);
    }

    /// The artifact no longer carries the record; `by`: the change that
    /// did it, when known.
    pub fn remediate(&mut self, adv: AdvIdx, id: i64, by: Option<&RemediatedBy>) {
        self.outbox.notice_changes.push(NoticeChange {
            id,
            advisory: adv,
            state: NoticeState::Remediated,
            justification: None,
            detail: None,
            at_ms: self.now_ms,
            regroup: None,
            remediated_by: by.map(|r| Remediated {
                cause: r.cause,
                doc: r.to_stored(),
            }),
        });
    }

    /// Queues the notice for its readers: the owner (unless `owner` is
    /// false: it decided already) and the watchers of a public artifact.
    fn route(
        &mut self,
        record: &Record,
        adv: AdvIdx,
        a: ArtIdx,
        hits: &[ComponentHit],
        id: i64,
        owner: bool,
    ) {
        let node = self.catalog.node(a);
        let info = record_info(record);
        let facts = self.filter_facts(adv, hits);
        let input = filter_input(&info, node, &facts);
        // The owner, then watchers (rare), each once.
        let watchers = self.mem.watchers.get(&a).map(Vec::as_slice).unwrap_or(&[]);
        let public = node.visibility == patchline_core::Visibility::Public;
        let (created, pending) = (&mut self.created, &mut self.pending);
        let per_adv = pending.entry(adv).or_default();
        self.mem.webhooks.route(
            &self.mem.subscriptions,
            patchline_delivery::routing::readers(node.tenant, watchers, public)
                .filter(|&t| owner || t != node.tenant),
            &input,
            |t| created.push((t, id)),
            |s| match per_adv.get_mut(s.id.as_str()) {
                Some((ids, _, _)) => ids.push(id),
                None => {
                    per_adv.insert(s.id.clone(), (vec![id], s.state.is_active(), s.grouping));
                }
            },
        );
    }

    /// Whether `filter` passes the notice of `record` on `a` with `hits`.
    pub fn passes(
        &mut self,
        filter: &patchline_delivery::routing::Filter,
        record: &Record,
        adv: AdvIdx,
        a: ArtIdx,
        hits: &[ComponentHit],
    ) -> bool {
        let node = self.catalog.node(a);
        let info = record_info(record);
        let facts = self.filter_facts(adv, hits);
        filter.matches(&filter_input(&info, node, &facts))
    }

    /// Purl types and package names of the affected components, computed
    /// once per (record, component set): keyed by a hash and checked
    /// against the stored list, so no allocation on a hit.
    fn filter_facts(
        &mut self,
        adv: AdvIdx,
        hits: &[ComponentHit],
    ) -> Rc<(Vec<String>, Vec<String>)> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for hit in hits {
            hit.component.hash(&mut h);
        }
        let key = (adv, h.finish());
        let same = |stored: &Vec<Option<ComponentId>>| {
            stored.len() == hits.len() && stored.iter().zip(hits).all(|(s, h)| *s == h.component)
        };
        if let Some(list) = self.filter_facts.get(&key)
            && let Some((_, facts)) = list.iter().find(|(c, _)| same(c))
        {
            return facts.clone();
        }
        let components = self.catalog.components();
        let facts = Rc::new(patchline_delivery::routing::component_facts(
            hits.iter().filter_map(|h| h.component).map(|c| {
                let comp = components.get(c);
                (comp.purl.as_ref(), components.source_name(comp.source))
            }),
        ));
        self.filter_facts
            .entry(key)
            .or_default()
            .push((hits.iter().map(|h| h.component).collect(), facts.clone()));
        facts
    }

    /// Turns the queued notice ids into delivery rows.
    pub fn finish(mut self, purpose: Purpose) -> Vec<(TenantIdx, i64)> {
        // A grouped subscription's notices of every record together: the
        // records that agree share groups, so one message carries a group
        // whole (each member with its notice of each record).
        let mut grouped: BTreeMap<String, (Vec<i64>, bool)> = BTreeMap::new();
        for (_, per_sub) in std::mem::take(&mut self.pending) {
            let mut subs: Vec<(String, Queued)> = per_sub.into_iter().collect();
            subs.sort_by(|a, b| a.0.cmp(&b.0));
            for (sub, (ids, active, grouping)) in subs {
                let chunks = match grouping {
                    Grouping::Grouped => {
                        let queued = grouped.entry(sub).or_insert_with(|| (Vec::new(), active));
                        queued.0.extend(ids);
                        continue;
                    }
                    Grouping::Artifact => batches(&ids, &self.sizes)
                        .into_iter()
                        .map(<[i64]>::to_vec)
                        .collect(),
                    // Kept for the subscription's next digest, not sent.
                    Grouping::Digest => {
                        let now = self.now_ms;
                        self.outbox
                            .digest_items
                            .extend(ids.iter().map(|&id| (sub.clone(), id, now)));
                        continue;
                    }
                };
                self.queue(&sub, chunks, purpose, active);
            }
        }
        for (sub, (ids, active)) in grouped {
            let chunks = grouped_batches(&ids, &self.root_of, &self.sizes);
            self.queue(&sub, chunks, purpose, active);
        }
        self.created
    }

    /// One delivery of each chunk of notice ids to `sub`.
    fn queue(&mut self, sub: &str, chunks: Vec<Vec<i64>>, purpose: Purpose, active: bool) {
        for chunk in chunks {
            let id = self.mem.next_delivery_id;
            self.mem.next_delivery_id += 1;
            self.outbox.deliveries.push(DeliveryRow {
                id,
                subscription: sub.to_string(),
                purpose,
                notices: chunk,
                next_at_ms: self.now_ms,
                at_ms: self.now_ms,
                dead: !active,
            });
        }
    }

    /// Records a patch notice for `tenant` (its document already made)
    /// and queues one message of it for each of the tenant's webhooks
    /// whose filter the notice of one of `cleared` passes — where the
    /// tenant's notices of these artifacts went. Answers its id.
    pub fn patch(
        &mut self,
        record: &Record,
        adv: AdvIdx,
        successor: ArtIdx,
        tenant: TenantIdx,
        cleared: &[(ArtIdx, &[ComponentHit])],
        doc: &patchline_delivery::PatchDoc,
    ) -> i64 {
        let id = self.mem.next_notice_id;
        self.mem.next_notice_id += 1;
        self.outbox.patches.push(PatchRow {
            id,
            tenant,
            record: adv,
            successor,
            doc: doc.to_stored(),
            at_ms: self.now_ms,
        });
        // The tenant's event streams carry it too.
        self.created.push((tenant, id));
        let info = record_info(record);
        let all = self
            .mem
            .webhooks
            .of(tenant, &self.mem.subscriptions)
            .count();
        let mut subs: BTreeMap<String, bool> = BTreeMap::new();
        for &(a, hits) in cleared {
            if subs.len() == all {
                break;
            }
            let node = self.catalog.node(a);
            let facts = self.filter_facts(adv, hits);
            let input = filter_input(&info, node, &facts);
            self.mem.webhooks.route(
                &self.mem.subscriptions,
                std::iter::once(tenant),
                &input,
                |_| {},
                |s| {
                    subs.insert(s.id.clone(), s.state.is_active());
                },
            );
        }
        // Its rendered size, bounded by the document's caps: each index
        // becomes an id (or a record id) of at most `ID_LEN_MAX` bytes.
        let ids = 4
            + doc.clears.len()
            + doc.breaks.len()
            + doc.steps.iter().map(|s| 3 + s.clears.len()).sum::<usize>();
        self.sizes
            .insert(id, 1024 + ids * (patchline_core::model::ID_LEN_MAX + 4));
        for (subscription, active) in subs {
            self.patches
                .entry(subscription)
                .or_insert_with(|| (Vec::new(), active))
                .0
                .push(id);
        }
        id
    }

    /// Turns the queued patch notices into delivery rows: per
    /// subscription, messages of at most 100 patch notices and about
    /// 4 MiB, like notices.
    pub fn finish_patches(&mut self) {
        for (subscription, (ids, active)) in std::mem::take(&mut self.patches) {
            let chunks = batches(&ids, &self.sizes)
                .into_iter()
                .map(<[i64]>::to_vec)
                .collect();
            self.queue(&subscription, chunks, Purpose::Patch, active);
        }
    }

    /// Queues an existing notice (of root cause `root`, if any) for the
    /// given subscriptions (reminders).
    pub fn resend(&mut self, subscriptions: &[String], adv: AdvIdx, id: i64, root: Option<i64>) {
        if let Some(root) = root {
            self.root_of.insert(id, root);
        }
        let per_adv = self.pending.entry(adv).or_default();
        for s in subscriptions {
            let grouping = self
                .mem
                .subscriptions
                .get(s)
                .map_or(Grouping::Artifact, |s| s.grouping);
            per_adv
                .entry(s.clone())
                .or_insert_with(|| (Vec::new(), true, grouping))
                .0
                .push(id);
        }
    }
}

use crate::{Engine, EngineError};
use patchline_core::{ArtifactId, TenantId};
use patchline_store::{CatalogStore, StoredNotice};

impl<S: CatalogStore> Engine<S> {
    /// Creates (or gives roles to) a tenant with its first token.
    pub fn create_tenant(
        &mut self,
        id: &TenantId,
        roles: &[Role],
        token_id: &str,
        token_hash: &str,
    ) -> Result<TenantIdx, EngineError> {
        self.begin_write()?;
        if let Some(t) = self.catalog.tenant_idx(id.as_str())
            && self.svc.roles.contains_key(&t)
        {
            return Err(EngineError::Invalid(format!("tenant {id} already exists")));
        }
        let now = self.clock.now_ms();
        let t = self.catalog.ensure_tenant(id);
        let mut roles = roles.to_vec();
        if roles.is_empty() {
            roles.push(Role::Tenant);
        }
        roles.dedup();
        let text = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.outbox.roles.push((t, text, now));
        let row = self.token_row(t, token_id, token_hash, None, now);
        self.outbox.tokens.push(row.clone());
        self.commit(&[])?;
        self.svc.roles.insert(t, roles);
        self.remember_token(row);
        Ok(t)
    }

    fn token_row(
        &self,
        t: TenantIdx,
        id: &str,
        hash: &str,
        minted_by: Option<&str>,
        now: i64,
    ) -> TokenRow {
        TokenRow {
            id: id.to_string(),
            tenant: t,
            hash: hash.to_string(),
            created_at_ms: now,
            revoked_at_ms: None,
            minted_by: minted_by.map(str::to_string),
        }
    }

    /// Records a committed token, in memory and in the credentials
    /// snapshot.
    fn remember_token(&mut self, row: TokenRow) {
        self.credentials.insert(
            row.hash.clone(),
            Credential {
                tenant: row.tenant,
                tenant_id: self.catalog.tenant_id(row.tenant).clone(),
                token_id: row.id.clone(),
                publisher: self.svc.has_role(row.tenant, Role::Publisher),
            },
        );
        self.svc
            .tokens
            .insert(row.hash.clone(), (row.id.clone(), row.tenant));
        self.svc.token_list.insert(
            row.id.clone(),
            TokenInfo {
                id: row.id,
                tenant: row.tenant,
                created_at_ms: row.created_at_ms,
                minted_by: row.minted_by,
                revoked_at_ms: None,
            },
        );
    }

    /// Adds a token to an existing tenant (rotation: add, then revoke).
    /// `minted_by` is the token that asked (`None`: the admin): revoking
    /// it revokes this one too.
    pub fn add_token(
        &mut self,
        t: TenantIdx,
        token_id: &str,
        token_hash: &str,
        minted_by: Option<&str>,
    ) -> Result<(), EngineError> {
        self.begin_write()?;
        // A token minted by a revoked one would escape the cascade.
        if let Some(m) = minted_by
            && !self.svc.token_active(m)
        {
            return Err(EngineError::Forbidden(
                "the token that asked has been revoked".into(),
            ));
        }
        let row = self.token_row(t, token_id, token_hash, minted_by, self.clock.now_ms());
        self.outbox.tokens.push(row.clone());
        self.commit(&[])?;
        self.remember_token(row);
        Ok(())
    }

    /// Revokes one of `t`'s tokens (admins: any token) and every token it
    /// minted, transitively; answers the ids revoked.
    pub fn revoke_token(
        &mut self,
        t: Option<TenantIdx>,
        token_id: &str,
    ) -> Result<Vec<String>, EngineError> {
        self.begin_write()?;
        let found = self
            .svc
            .token_list
            .get(token_id)
            .filter(|info| info.revoked_at_ms.is_none() && t.is_none_or(|t| t == info.tenant));
        if found.is_none() {
            return Err(EngineError::NotFound {
                what: "token",
                id: token_id.to_string(),
            });
        }
        let mut revoked = vec![token_id.to_string()];
        let mut i = 0;
        while i < revoked.len() {
            let parent = revoked[i].clone();
            revoked.extend(
                self.svc
                    .token_list
                    .values()
                    .filter(|c| c.revoked_at_ms.is_none())
                    .filter(|c| c.minted_by.as_deref() == Some(parent.as_str()))
                    .map(|c| c.id.clone()),
            );
            i += 1;
        }
        let now = self.clock.now_ms();
        for id in &revoked {
            self.outbox.revoked_tokens.push((id.clone(), now));
        }
        self.commit(&[])?;
        self.svc.tokens.retain(|_, (id, _)| !revoked.contains(id));
        self.credentials.remove_tokens(&revoked);
        for id in &revoked {
            if let Some(info) = self.svc.token_list.get_mut(id) {
                info.revoked_at_ms = Some(now);
            }
        }
        Ok(revoked)
    }

    /// A tenant's tokens, oldest first.
    pub fn tokens_of(&self, t: TenantIdx) -> Vec<&TokenInfo> {
        let mut list: Vec<&TokenInfo> = self
            .svc
            .token_list
            .values()
            .filter(|i| i.tenant == t)
            .collect();
        list.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        list
    }

    /// Makes sure new deliveries get ids from `next` on (rows inserted by
    /// other means, such as a benchmark's).
    pub fn bump_delivery_ids(&mut self, next: i64) {
        self.svc.next_delivery_id = self.svc.next_delivery_id.max(next);
    }

    /// Publishes every live token to the credentials snapshot (at load and
    /// after a reload; commits update it token by token).
    pub(crate) fn refresh_credentials(&self) {
        let map = self
            .svc
            .tokens
            .iter()
            .map(|(hash, (id, t))| {
                (
                    hash.clone(),
                    Credential {
                        tenant: *t,
                        tenant_id: self.catalog.tenant_id(*t).clone(),
                        token_id: id.clone(),
                        publisher: self.svc.has_role(*t, Role::Publisher),
                    },
                )
            })
            .collect();
        self.credentials.replace(map);
    }

    /// The tenant and the token id a token hash belongs to.
    pub fn authenticate(&self, token_hash: &str) -> Option<(TenantIdx, &str)> {
        self.svc
            .tokens
            .get(token_hash)
            .map(|(id, t)| (*t, id.as_str()))
    }

    /// Reserves an id prefix for a publisher (admin): new records whose id
    /// starts with it may only be published by that publisher or an admin.
    pub fn reserve_prefix(&mut self, prefix: &str, t: TenantIdx) -> Result<(), EngineError> {
        self.begin_write()?;
        if prefix.is_empty()
            || prefix.len() > patchline_core::model::ID_LEN_MAX
            || !prefix.chars().all(patchline_core::model::is_id_char)
        {
            return Err(EngineError::Invalid(format!(
                "a prefix is 1 to {} bytes of {}",
                patchline_core::model::ID_LEN_MAX,
                patchline_core::model::ID_CHARS
            )));
        }
        self.outbox
            .prefixes
            .push((prefix.to_string(), Some((t, self.clock.now_ms()))));
        self.commit(&[])?;
        self.svc.prefixes.insert(prefix.to_string(), t);
        Ok(())
    }

    /// Releases a reserved prefix.
    pub fn release_prefix(&mut self, prefix: &str) -> Result<(), EngineError> {
        self.begin_write()?;
        if !self.svc.prefixes.contains_key(prefix) {
            return Err(EngineError::NotFound {
                what: "prefix",
                id: prefix.to_string(),
            });
        }
        self.outbox.prefixes.push((prefix.to_string(), None));
        self.commit(&[])?;
        self.svc.prefixes.remove(prefix);
        Ok(())
    }

    /// Stores a new subscription.
    pub fn put_subscription(&mut self, sub: Subscription) -> Result<(), EngineError> {
        self.begin_write()?;
        sub.filter.validate().map_err(EngineError::Invalid)?;
        let new = !self.svc.subscriptions.contains_key(&sub.id);
        if new && sub.id != patchline_delivery::OPERATOR_SUBSCRIPTION {
            let held = self
                .svc
                .subscriptions
                .values()
                .filter(|s| s.tenant == sub.tenant && !s.state.is_deleted())
                .count();
            if held >= SUBSCRIPTIONS_PER_TENANT_MAX {
                return Err(EngineError::Invalid(format!(
                    "a tenant holds at most {SUBSCRIPTIONS_PER_TENANT_MAX} subscriptions; delete one first"
                )));
            }
        }
        if sub.grouping == Grouping::Digest
            && !matches!(sub.channel, patchline_core::notice::Channel::Webhook { .. })
        {
            return Err(EngineError::Invalid(
                "digests are sent to webhooks: a pull or sse reader reads `GET /v1/notices?grouping=grouped`".into(),
            ));
        }
        match (sub.grouping, &sub.digest) {
            (Grouping::Digest, Some(d)) => d.schedule.validate().map_err(EngineError::Invalid)?,
            (Grouping::Digest, None) => {
                return Err(EngineError::Invalid(
                    "a digest subscription needs a \"digest\" schedule: {\"every\": \"day\"|\"week\", \"at\": \"HH:MM\", \"time_zone\"}".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(EngineError::Invalid(
                    "\"digest\" is for \"grouping\": \"digest\" subscriptions".into(),
                ));
            }
            (_, None) => {}
        }
        self.outbox.subscriptions.push(sub.to_row());
        // A new digest subscription starts with the tenant's notices open
        // now that its filter passes: its first digest lists them as
        // still open (those that come later are kept as they come).
        if sub.grouping == Grouping::Digest && !self.svc.subscriptions.contains_key(&sub.id) {
            let open = self.store.open_notices_of(sub.tenant)?;
            let at = sub.digest.as_ref().map_or(sub.created_at_ms, |d| d.last_ms);
            let Engine {
                catalog,
                db,
                match_cache,
                svc,
                outbox,
                ..
            } = self;
            let mut notifier = Notifier::new(catalog, svc, outbox, at);
            for (id, adv, a) in open {
                if (a.0 as usize) >= catalog.len() || (adv.0 as usize) >= db.len() {
                    continue;
                }
                let matches =
                    patchline_core::propagate::check_artifact_cached(catalog, db, a, match_cache);
                let Some(m) = matches.iter().find(|m| m.advisory == adv) else {
                    continue;
                };
                if notifier.passes(&sub.filter, db.get(adv), adv, a, &m.hits) {
                    notifier.outbox.digest_items.push((sub.id.clone(), id, at));
                }
            }
        }
        self.commit(&[])?;
        self.svc.subscriptions.insert(sub.id.clone(), sub);
        self.svc.reindex();
        self.refresh_targets();
        Ok(())
    }

    /// A subscription of `t` (admins: any), or not found.
    pub fn subscription(
        &self,
        t: Option<TenantIdx>,
        id: &str,
    ) -> Result<&Subscription, EngineError> {
        self.svc
            .subscriptions
            .get(id)
            .filter(|s| t.is_none_or(|t| s.tenant == t))
            .filter(|s| !s.state.is_deleted())
            .ok_or_else(|| EngineError::NotFound {
                what: "subscription",
                id: id.to_string(),
            })
    }

    /// Disables a subscription (its endpoint answered 410).
    pub fn disable_subscription(
        &mut self,
        id: &str,
        reason: DisableReason,
    ) -> Result<(), EngineError> {
        self.set_subscription_state(id, SubscriptionState::Disabled(reason))
    }

    /// Deletes a subscription (its owner asked): it leaves every list.
    pub fn delete_subscription(&mut self, id: &str) -> Result<(), EngineError> {
        self.set_subscription_state(id, SubscriptionState::Deleted)
    }

    fn set_subscription_state(
        &mut self,
        id: &str,
        state: SubscriptionState,
    ) -> Result<(), EngineError> {
        let mut sub = self.subscription(None, id)?.clone();
        sub.state = state;
        self.put_subscription(sub)
    }

    /// Follows a public artifact the tenant does not own.
    pub fn watch(&mut self, t: TenantIdx, artifact: &str) -> Result<ArtIdx, EngineError> {
        self.begin_write()?;
        let actor = Actor::Tenant(self.catalog.tenant_id(t).clone());
        let a = self
            .catalog
            .visible(artifact, &actor)
            .ok_or_else(|| EngineError::NotFound {
                what: "artifact",
                id: artifact.to_string(),
            })?;
        if self.svc.watchers.get(&a).is_some_and(|w| w.contains(&t)) {
            return Ok(a);
        }
        self.outbox.watches.push((t, a));
        self.commit(&[])?;
        self.svc.watchers.entry(a).or_default().push(t);
        Ok(a)
    }

    /// Records a tenant's VEX statements (OpenVEX or CycloneDX, read by
    /// `patchline_formats::vex`), in one commit. Each statement is kept on
    /// each artifact of the tenant it names (`artifact`, when given, for
    /// statements that name none of them; a CycloneDX document's subject
    /// first) and covers the artifact's subtree: the tenant's open notices
    /// there of a record the statement names (by id or alias) take its
    /// decision now, and the ones that appear later are born with it, not
    /// sent. The nearest statement decides. Statements that cannot apply
    /// are listed with the reason, never silently dropped.
    pub fn import_vex(
        &mut self,
        t: TenantIdx,
        doc: &patchline_formats::vex::VexDocument,
        artifact: Option<&str>,
        subtree: bool,
    ) -> Result<VexImported, EngineError> {
        use patchline_formats::vex::{Verdict, product_artifact};
        self.begin_write()?;
        let actor = Actor::Tenant(self.catalog.tenant_id(t).clone());
        // An artifact of the tenant's (foreign and missing ones alike are
        // not found: nothing tells whether another tenant's exists).
        let own = |catalog: &Catalog, id: &str| {
            catalog
                .visible(id, &actor)
                .filter(|&a| catalog.node(a).tenant == t)
        };
        // A product name's prefix is always taken off once, so an export
        // names each artifact unambiguously, whatever its id looks like;
        // `artifact` is an id, not a product name.
        let product = |catalog: &Catalog, name: &str| own(catalog, product_artifact(name));
        let fallback = match artifact {
            Some(id) => Some(own(&self.catalog, id).ok_or_else(|| EngineError::NotFound {
                what: "artifact",
                id: id.to_string(),
            })?),
            None => None,
        };
        let subject = doc.subject.iter().find_map(|s| product(&self.catalog, s));
        let now = self.clock.now_ms();
        let mut out = VexImported {
            statements: doc.statements.len(),
            ..VexImported::default()
        };
        let mut rows = Vec::new();
        // The records by each of their names (id, aliases, upstream ids;
        // lower case), made once an import keeps a statement: a look-up
        // per statement instead of a pass over every record.
        let mut named: Option<HashMap<String, Vec<AdvIdx>>> = None;
        for s in &doc.statements {
            let state = match &s.verdict {
                Verdict::NotAffected => NoticeState::NotAffected,
                Verdict::Acknowledged => NoticeState::Acknowledged,
                Verdict::Skip(why) => {
                    out.skipped.push((s.path.clone(), why.clone()));
                    continue;
                }
            };
            if s.names.len() > 1 + VEX_ALIASES_MAX || s.packages.len() > VEX_PACKAGES_MAX {
                out.skipped.push((
                    s.path.clone(),
                    format!(
                        "{} aliases and {} packages: a statement keeps at most \
                         {VEX_ALIASES_MAX} of each",
                        s.names.len() - 1,
                        s.packages.len()
                    ),
                ));
                continue;
            }
            if let Some(bad) = s.names.iter().find(|n| {
                n.is_empty()
                    || n.len() > patchline_core::model::ID_LEN_MAX
                    || !n.chars().all(patchline_core::model::is_id_char)
            }) {
                out.skipped.push((
                    s.path.clone(),
                    format!(
                        "vulnerability name {:?} is not an id (1 to 256 of {})",
                        bad.chars().take(64).collect::<String>(),
                        patchline_core::model::ID_CHARS
                    ),
                ));
                continue;
            }
            let decision = match Decision::new(
                state,
                s.justification.map(|j| j.as_str().to_string()),
                s.detail.clone(),
            ) {
                Ok(d) => d,
                Err(e) => {
                    out.skipped.push((s.path.clone(), e.to_string()));
                    continue;
                }
            };
            // Products are artifacts (or name none of the tenant's: then the
            // statement does not apply); packages scope the statement to
            // the records that affect them, on the artifacts named or else
            // the document's subject or `artifact`.
            let mut artifacts: Vec<ArtIdx> = s
                .products
                .iter()
                .filter_map(|p| product(&self.catalog, p))
                .collect();
            artifacts.sort_unstable();
            artifacts.dedup();
            let mut packages: Vec<String> =
                s.packages.iter().flat_map(|p| package_names(p)).collect();
            packages.sort();
            packages.dedup();
            // Products that name none of the tenant's artifacts leave the
            // statement to an explicit `artifact` only: a document's
            // subject is what its packages are in, not what an unknown
            // product is.
            let subject = if s.products.is_empty() { subject } else { None };
            if artifacts.is_empty() {
                match fallback.or(subject) {
                    Some(a) => artifacts.push(a),
                    None => {
                        let named: Vec<String> = s
                            .products
                            .iter()
                            .take(3)
                            .map(|p| {
                                let mut shown: String = p.chars().take(80).collect();
                                if shown.len() < p.len() {
                                    shown.push('…');
                                }
                                format!("{shown:?}")
                            })
                            .collect();
                        out.skipped.push((
                            s.path.clone(),
                            if named.is_empty() {
                                "names no product: say which artifact it is about \
                                 (the `artifact` parameter)"
                                    .to_string()
                            } else {
                                format!(
                                    "names no artifact of yours ({}); the `artifact` parameter \
                                     says which one it is about",
                                    named.join(", ")
                                )
                            },
                        ));
                        continue;
                    }
                }
            }
            // The statement's vulnerability is its name; its aliases are
            // kept but do not widen it (a record that shares an alias is
            // another record's business).
            let name = &s.names[0];
            let named = named.get_or_insert_with(|| names_index(&self.db));
            if !named.contains_key(&name.to_ascii_lowercase()) {
                out.no_record.push(name.clone());
            }
            for a in artifacts {
                rows.push(VexRow {
                    tenant: t,
                    artifact: a,
                    names: s.names.clone(),
                    packages: packages.clone(),
                    subtree,
                    state,
                    justification: decision.justification.clone(),
                    detail: decision.detail.clone(),
                    at_ms: now,
                    ord: u32::try_from(rows.len()).unwrap_or(u32::MAX),
                });
            }
            if rows.len() > VEX_IMPORT_ROWS_MAX {
                return Err(EngineError::Invalid(format!(
                    "this document makes more than {VEX_IMPORT_ROWS_MAX} statements \
                     (one per statement and artifact): split it"
                )));
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let new = rows.iter().filter(|r| !self.svc.vex.contains(r)).count();
        if self.svc.vex.count(t) + new > VEX_STATEMENTS_PER_TENANT_MAX {
            return Err(EngineError::Invalid(format!(
                "a tenant keeps at most {VEX_STATEMENTS_PER_TENANT_MAX} VEX statements; \
                 this document would make {} more than the {} kept",
                new,
                self.svc.vex.count(t)
            )));
        }
        // What they weigh: bounded by import and by tenant.
        let bytes: usize = rows.iter().map(VexIndex::weight).sum();
        if bytes > VEX_IMPORT_BYTES_MAX || self.svc.vex.bytes(t) + bytes > VEX_BYTES_PER_TENANT_MAX
        {
            return Err(EngineError::Invalid(format!(
                "these statements weigh {} KiB; an import keeps at most {} MiB and a \
                 tenant {} MiB ({} KiB kept)",
                bytes / 1024,
                VEX_IMPORT_BYTES_MAX >> 20,
                VEX_BYTES_PER_TENANT_MAX >> 20,
                self.svc.vex.bytes(t) / 1024
            )));
        }
        // The statements take effect in memory first (the nearest one
        // decides, whichever document it came in); a failed commit
        // reloads the memory from the store.
        for row in &rows {
            self.svc.add_vex(row.clone());
        }
        let mut seen = HashSet::new();
        let named = named.unwrap_or_default();
        for row in &rows {
            let records = named
                .get(&row.names[0].to_ascii_lowercase())
                .cloned()
                .unwrap_or_default();
            let covered: Vec<ArtIdx> = if row.subtree {
                std::iter::once(row.artifact)
                    .chain(self.catalog.descendants(row.artifact))
                    .filter(|&a| self.catalog.node(a).tenant == t)
                    .collect()
            } else {
                vec![row.artifact]
            };
            for adv in records {
                let record = self.db.get(adv);
                for (id, a, current) in self.store.notices_on(adv, &covered)? {
                    if current.is_closed() || !seen.insert(id) {
                        continue;
                    }
                    // The statement that decides it now (the nearest, the
                    // latest): not always this one.
                    let Some(d) = self.svc.vex_decision(&self.catalog, a, record) else {
                        continue;
                    };
                    let applies = match d.state {
                        NoticeState::NotAffected => true,
                        _ => current.is_open(),
                    };
                    if !applies || d.state == current {
                        continue;
                    }
                    self.outbox.notice_changes.push(NoticeChange {
                        id,
                        advisory: adv,
                        state: d.state,
                        justification: d.justification.clone(),
                        detail: d.detail.clone(),
                        at_ms: now,
                        regroup: None,
                        remediated_by: None,
                    });
                }
            }
        }
        out.recorded = rows.len();
        out.notices = self.outbox.notice_changes.len();
        out.no_record.sort();
        out.no_record.dedup();
        self.outbox.vex = rows;
        self.commit(&[])?;
        Ok(out)
    }

    /// Withdraws a tenant's VEX statement (the artifact it is on, its
    /// vulnerability name, the packages it is about): notices that appear
    /// later are no longer born with its decision; decisions it already
    /// made stay (the tenant's word, as when made one by one). Whether
    /// there was one.
    pub fn withdraw_vex(
        &mut self,
        t: TenantIdx,
        artifact: &str,
        name: &str,
        packages: &[String],
    ) -> Result<bool, EngineError> {
        self.begin_write()?;
        let actor = Actor::Tenant(self.catalog.tenant_id(t).clone());
        let Some(a) = self
            .catalog
            .visible(artifact, &actor)
            .filter(|&a| self.catalog.node(a).tenant == t)
        else {
            return Err(EngineError::NotFound {
                what: "artifact",
                id: artifact.to_string(),
            });
        };
        // The packages as a listing shows them (lower-case names).
        let mut names: Vec<String> = packages.iter().map(|p| p.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let key = (t, a, name.to_string(), names);
        if !self.svc.vex.remove(&key) {
            return Ok(false);
        }
        let (t, a, name, packages) = key;
        self.outbox.vex_withdrawn.push((t, a, name, packages));
        self.commit(&[])?;
        Ok(true)
    }

    /// The tenant acknowledges a notice, or states that it does not apply;
    /// `notice` may name a group (a root cause): then every open notice of
    /// it changes, in one commit.
    pub fn ack(
        &mut self,
        t: Option<TenantIdx>,
        notice: i64,
        state: NoticeState,
        justification: Option<String>,
        detail: Option<String>,
    ) -> Result<Acked, EngineError> {
        let Decision {
            justification,
            detail,
        } = Decision::new(state, justification, detail)?;
        self.begin_write()?;
        let n = self.store.notice(notice)?;
        if n.is_none()
            && let Some(group) = self.store.root_members(notice)?
            && t.is_none_or(|t| t == group.tenant)
        {
            return self.ack_group(notice, group, state, justification, detail);
        }
        // A watcher reads a public artifact's notice but does not own it.
        if let (Some(n), Some(t)) = (&n, t)
            && n.tenant != t
            && (n.artifact.0 as usize) < self.catalog.len()
            && self.catalog.node(n.artifact).visibility == patchline_core::Visibility::Public
            && self
                .svc
                .watchers
                .get(&n.artifact)
                .is_some_and(|w| w.contains(&t))
        {
            return Err(EngineError::Forbidden(format!(
                "notice {notice} is about a watched artifact: its owner acknowledges it"
            )));
        }
        let n = n
            .filter(|n| t.is_none_or(|t| t == n.tenant))
            .ok_or_else(|| EngineError::NotFound {
                what: "notice",
                id: notice.to_string(),
            })?;
        if n.state.is_closed() {
            return Err(EngineError::Invalid(format!(
                "notice {notice} is already {}{}",
                n.state,
                if n.state == NoticeState::NotAffected {
                    " (a tenant's not_affected is final)"
                } else {
                    " (it reopens by itself if it applies again)"
                }
            )));
        }
        if n.state == state {
            return Ok(Acked::Notice(n));
        }
        let now = self.clock.now_ms();
        self.outbox.notice_changes.push(NoticeChange {
            id: n.id,
            advisory: n.advisory,
            state,
            justification: justification.clone(),
            detail: detail.clone(),
            at_ms: now,
            regroup: None,
            remediated_by: None,
        });
        self.commit(&[])?;
        Ok(Acked::Notice(StoredNotice {
            state,
            justification,
            detail,
            updated_at_ms: now,
            remediated_by: None,
            ..n
        }))
    }

    /// [`Engine::ack`] of a group: its open notices (affected, notified,
    /// and for `not_affected` acknowledged ones too) take the state; closed
    /// ones stay as they are. Refused when every notice of it is closed.
    fn ack_group(
        &mut self,
        root: i64,
        group: patchline_store::RootMembers,
        state: NoticeState,
        justification: Option<String>,
        detail: Option<String>,
    ) -> Result<Acked, EngineError> {
        let open: Vec<i64> = group
            .members
            .iter()
            .filter(|m| !m.state.is_closed())
            .map(|m| m.id)
            .collect();
        if open.is_empty() {
            return Err(EngineError::Invalid(format!(
                "every notice of group {root} is closed already (remediated or not affected)"
            )));
        }
        let now = self.clock.now_ms();
        for m in &group.members {
            if m.state.is_closed() || m.state == state {
                continue;
            }
            // The member's own record (a record that agrees with the
            // root's may have notices in its group).
            self.outbox.notice_changes.push(NoticeChange {
                id: m.id,
                advisory: m.advisory,
                state,
                justification: justification.clone(),
                detail: detail.clone(),
                at_ms: now,
                regroup: None,
                remediated_by: None,
            });
        }
        let changed = self.outbox.notice_changes.len();
        if changed > 0 {
            self.commit(&[])?;
        }
        // The open notices of the first artifacts (an artifact's notice of
        // each record that agrees), and how many artifacts are open.
        let mut artifacts: Vec<ArtIdx> = Vec::new();
        let mut members = Vec::new();
        for m in group.members.iter().filter(|m| !m.state.is_closed()) {
            let listed = match artifacts.iter().position(|&a| a == m.artifact) {
                Some(i) => i < patchline_delivery::GROUP_ARTIFACTS_MAX,
                None => {
                    artifacts.push(m.artifact);
                    artifacts.len() <= patchline_delivery::GROUP_ARTIFACTS_MAX
                }
            };
            if listed {
                members.push(m.id);
            }
        }
        debug_assert!(open.len() >= members.len());
        Ok(Acked::Group {
            root,
            changed,
            members,
            artifacts: artifacts.len(),
        })
    }

    /// Queues the reminders and escalations `policy` makes due at `now`
    /// (`patchline_delivery::reminder`), in one commit; `operator` is the
    /// operator's escalation subscription, if any. Returns how many
    /// notices were reminded.
    pub fn schedule_reminders(
        &mut self,
        now: i64,
        policy: &ReminderPolicy,
        operator_subscription: Option<&str>,
    ) -> Result<usize, EngineError> {
        self.begin_write()?;
        let due = self
            .store
            .due_reminders(policy.due_before(now), policy.limit)?;
        if due.is_empty() {
            return Ok(0);
        }
        let Engine {
            catalog,
            svc,
            outbox,
            ..
        } = self;
        let plan = policy.plan(
            &due,
            |t| {
                // A digest subscription's digest is its reminder.
                svc.webhooks_of(t)
                    .filter(|s| s.state.is_active() && s.grouping != Grouping::Digest)
                    .map(|s| s.id.clone())
                    .collect()
            },
            operator_subscription,
        );
        let roots: HashMap<i64, i64> = due
            .iter()
            .filter_map(|n| Some((n.id, n.root?.id)))
            .collect();
        let mut notifier = Notifier::new(catalog, svc, outbox, now);
        let mut escalations = Notifier::new_detached(now);
        for r in &plan {
            if r.purpose == Purpose::Escalation {
                escalations.resend(&r.subscriptions, r.advisory, r.notice);
            } else {
                let root = roots.get(&r.notice).copied();
                notifier.resend(&r.subscriptions, r.advisory, r.notice, root);
            }
            notifier.outbox.reminded.push((r.notice, now));
        }
        notifier.finish(Purpose::Reminder);
        escalations.finish_into(&mut self.svc, &mut self.outbox, Purpose::Escalation);
        self.commit(&[])?;
        Ok(due.len())
    }
}

/// Tenants' VEX statements, indexed by (artifact, vulnerability name in
/// lower case) for [`ServiceMem::vex_decision`] and by their key for
/// replacement: adding and finding are O(1) however many statements an
/// artifact holds (a linear search made a restart with 100,000 statements
/// on one artifact take a minute).
#[derive(Debug, Default)]
pub struct VexIndex {
    /// (order added or replaced, row); a withdrawn row leaves `None`
    /// behind (its place is a listing's cursor).
    rows: Vec<Option<(u64, VexRow)>>,
    by_name: HashMap<(ArtIdx, String), Vec<usize>>,
    /// Statements per artifact: whether a lineage chain holds any.
    artifacts: HashMap<ArtIdx, usize>,
    by_key: HashMap<VexKey, usize>,
    /// Statements per tenant (see [`VEX_STATEMENTS_PER_TENANT_MAX`]).
    per_tenant: HashMap<TenantIdx, usize>,
    /// What the tenant's statements weigh ([`VexIndex::weight`]).
    bytes: HashMap<TenantIdx, usize>,
    next: u64,
}

/// (tenant, artifact, vulnerability name, packages).
pub type VexKey = (TenantIdx, ArtIdx, String, Vec<String>);

impl VexIndex {
    fn key(row: &VexRow) -> VexKey {
        (
            row.tenant,
            row.artifact,
            row.names[0].clone(),
            row.packages.clone(),
        )
    }

    /// Whether a row with this key is stored (adding it replaces one).
    pub fn contains(&self, row: &VexRow) -> bool {
        self.by_key.contains_key(&Self::key(row))
    }

    /// The tenant's statements.
    pub fn count(&self, t: TenantIdx) -> usize {
        self.per_tenant.get(&t).copied().unwrap_or(0)
    }

    /// What the tenant's statements weigh.
    pub fn bytes(&self, t: TenantIdx) -> usize {
        self.bytes.get(&t).copied().unwrap_or(0)
    }

    /// What a statement weighs in memory and in the store, about.
    pub fn weight(row: &VexRow) -> usize {
        let text = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        128 + text(&row.names)
            + text(&row.packages)
            + row.justification.as_ref().map_or(0, String::len)
            + row.detail.as_ref().map_or(0, String::len)
    }

    pub fn add(&mut self, row: VexRow) {
        let key = Self::key(&row);
        let name = (row.artifact, row.names[0].to_ascii_lowercase());
        let seq = self.next;
        self.next += 1;
        let bytes = self.bytes.entry(row.tenant).or_default();
        *bytes += Self::weight(&row);
        if let Some(&i) = self.by_key.get(&key) {
            if let Some((_, old)) = &self.rows[i] {
                *bytes = bytes.saturating_sub(Self::weight(old));
            }
            self.rows[i] = Some((seq, row));
            return;
        }
        let i = self.rows.len();
        *self.per_tenant.entry(row.tenant).or_default() += 1;
        *self.artifacts.entry(row.artifact).or_default() += 1;
        self.rows.push(Some((seq, row)));
        self.by_key.insert(key, i);
        self.by_name.entry(name).or_default().push(i);
    }

    /// Every statement, in the order first added.
    pub fn iter(&self) -> impl Iterator<Item = &VexRow> {
        self.rows.iter().flatten().map(|(_, r)| r)
    }

    /// Removes the statement with this key; whether there was one.
    pub fn remove(&mut self, key: &VexKey) -> bool {
        let Some(i) = self.by_key.remove(key) else {
            return false;
        };
        if let Some((_, row)) = self.rows[i].take() {
            if let Some(n) = self.per_tenant.get_mut(&row.tenant) {
                *n -= 1;
            }
            if let Some(n) = self.artifacts.get_mut(&row.artifact) {
                *n -= 1;
                if *n == 0 {
                    self.artifacts.remove(&row.artifact);
                }
            }
            if let Some(b) = self.bytes.get_mut(&row.tenant) {
                *b = b.saturating_sub(Self::weight(&row));
            }
            let name = (row.artifact, row.names[0].to_ascii_lowercase());
            if let Some(list) = self.by_name.get_mut(&name) {
                list.retain(|&j| j != i);
                if list.is_empty() {
                    self.by_name.remove(&name);
                }
            }
        }
        true
    }

    /// A tenant's statements after the place `after` (a cursor: the place
    /// of the last one listed), at most `limit`, with their places.
    pub fn of_tenant(&self, t: TenantIdx, after: usize, limit: usize) -> Vec<(usize, &VexRow)> {
        self.rows
            .iter()
            .enumerate()
            .skip(after)
            .filter_map(|(i, r)| r.as_ref().map(|(_, r)| (i + 1, r)))
            .filter(|(_, r)| r.tenant == t)
            .take(limit)
            .collect()
    }
}

/// Most VEX statements (one per artifact, vulnerability and packages) a
/// tenant keeps.
pub const VEX_STATEMENTS_PER_TENANT_MAX: usize = 1_000_000;

/// Most statements one import keeps (statements times the artifacts each
/// is kept on).
pub const VEX_IMPORT_ROWS_MAX: usize = 100_000;

/// Most aliases, and most packages, one statement keeps (past them it is
/// skipped: they would be kept with it on each of its artifacts).
pub const VEX_ALIASES_MAX: usize = 64;
pub const VEX_PACKAGES_MAX: usize = 64;

/// Most bytes the statements of one import, and of one tenant, weigh.
pub const VEX_IMPORT_BYTES_MAX: usize = 64 << 20;
pub const VEX_BYTES_PER_TENANT_MAX: usize = 256 << 20;

/// Every record by each of its names (see [`record_names`]).
fn names_index(db: &patchline_core::AdvisoryDb) -> HashMap<String, Vec<AdvIdx>> {
    let mut index: HashMap<String, Vec<AdvIdx>> = HashMap::new();
    for (i, record) in db.iter() {
        for name in record_names(record) {
            index.entry(name).or_default().push(i);
        }
    }
    index
}

/// A record's names in lower case: its id, aliases and upstream ids.
fn record_names(record: &Record) -> Vec<String> {
    let mut names = vec![record.id().as_str().to_ascii_lowercase()];
    if let Record::Advisory(a) = record {
        names.extend(
            a.osv
                .aliases
                .iter()
                .chain(&a.osv.upstream)
                .map(|x| x.to_ascii_lowercase()),
        );
    }
    names.sort();
    names.dedup();
    names
}

/// Whether the record lists `name` (lower case) among the packages it
/// affects.
fn affects_package(record: &Record, name: &str) -> bool {
    match record {
        Record::Advisory(a) => a.osv.affected.iter().any(|x| {
            x.package
                .as_ref()
                .is_some_and(|p| p.name.eq_ignore_ascii_case(name))
        }),
        Record::Failure(_) => false,
    }
}

/// The names a statement's package goes by: its own and its source
/// package's (a binary package's `upstream`, `source`, `origin` or
/// `sourcerpm`), lower case; with the namespace too for ecosystems that
/// write it into the name (`@scope/name`, `group:artifact`).
fn package_names(purl: &str) -> Vec<String> {
    let Ok(p) = purl.parse::<patchline_formats::Purl>() else {
        return Vec::new();
    };
    let mut out = vec![p.name.to_ascii_lowercase()];
    // OSV names these packages with their namespace (a distribution's
    // namespace in deb, apk or rpm purls is not part of the name).
    match (p.ty.as_str(), &p.namespace) {
        ("maven", Some(ns)) => out.push(format!("{ns}:{}", p.name).to_ascii_lowercase()),
        ("npm" | "golang" | "composer" | "swift" | "github", Some(ns)) => {
            out.push(format!("{ns}/{}", p.name).to_ascii_lowercase())
        }
        _ => {}
    }
    if let Some((source, _)) = p.source_package() {
        out.push(source.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    out
}

/// Most subscriptions a tenant holds (each one is a fan-out of every
/// notice it passes).
pub const SUBSCRIPTIONS_PER_TENANT_MAX: usize = 100;

/// Longest note kept with an acknowledgement (bytes; longer ones are
/// truncated with a visible marker).
pub const ACK_NOTE_MAX: usize = 1024;

/// A tenant's decision on a notice, checked: `acknowledged` with an
/// optional note, or `not_affected` with a justification (OpenVEX's or
/// CycloneDX's word) or a detail (why, in words), or both. The detail is
/// bounded like every text on the way in (a group copies it onto each
/// notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub justification: Option<String>,
    pub detail: Option<String>,
}

impl Decision {
    pub fn new(
        state: NoticeState,
        justification: Option<String>,
        detail: Option<String>,
    ) -> Result<Decision, EngineError> {
        let bounded = |text: Option<String>| {
            text.filter(|t| !t.trim().is_empty()).map(|mut t| {
                patchline_core::text::truncate(&mut t, ACK_NOTE_MAX);
                t
            })
        };
        match state {
            // `justification` with an acknowledgement was its note before
            // `detail` existed: it still is.
            NoticeState::Acknowledged => Ok(Decision {
                justification: None,
                detail: bounded(detail.or(justification)),
            }),
            NoticeState::NotAffected => {
                let detail = bounded(detail);
                match justification.as_deref() {
                    Some(j) if Justification::parse(j).is_some() => Ok(Decision {
                        justification,
                        detail,
                    }),
                    None if detail.is_some() => Ok(Decision {
                        justification: None,
                        detail,
                    }),
                    Some(j) => Err(EngineError::Invalid(format!(
                        "justification {:?} is none of: {}",
                        j.chars().take(64).collect::<String>(),
                        Justification::names()
                    ))),
                    None => Err(EngineError::Invalid(format!(
                        "not_affected needs a justification (one of: {}) or a detail",
                        Justification::names()
                    ))),
                }
            }
            other => Err(EngineError::Invalid(format!(
                "a tenant can set acknowledged or not_affected, not {other}"
            ))),
        }
    }
}

/// What a VEX import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VexImported {
    /// Statements in the document.
    pub statements: usize,
    /// Statements kept (one per artifact they apply to).
    pub recorded: usize,
    /// Notices that took a decision.
    pub notices: usize,
    /// Statements not applied: (where, why).
    pub skipped: Vec<(String, String)>,
    /// Vulnerabilities no record names yet (kept: they apply when one
    /// is published).
    pub no_record: Vec<String>,
}

/// What an acknowledgement changed.
#[derive(Debug)]
pub enum Acked {
    /// One notice, as it is now.
    Notice(StoredNotice),
    /// A group: how many of its notices changed, its open notices on the
    /// first [`patchline_delivery::GROUP_ARTIFACTS_MAX`] artifacts (ids),
    /// and how many artifacts have an open notice.
    Group {
        root: i64,
        changed: usize,
        members: Vec<i64>,
        artifacts: usize,
    },
}

impl<S: CatalogStore> Engine<S> {
    /// Queues the digests due at `now`, in one commit: for each active
    /// digest subscription whose schedule fell due since its last digest,
    /// one message of purpose `digest` carrying the notices of its window
    /// (the first [`DIGEST_NOTICES_MAX`]), unless the window is empty and
    /// nothing is open; the window then starts again at `now`. Answers how
    /// many were queued.
    pub fn schedule_digests(&mut self, now: i64) -> Result<usize, EngineError> {
        self.begin_write()?;
        let due: Vec<Subscription> = self
            .svc
            .subscriptions
            .values()
            .filter(|s| s.state.is_active() && s.grouping == Grouping::Digest)
            .filter(|s| {
                s.digest
                    .as_ref()
                    .and_then(|d| d.schedule.next_after(d.last_ms))
                    .is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let mut queued = 0;
        let mut updated = Vec::new();
        for mut sub in due {
            let Some(digest) = sub.digest.as_mut() else {
                continue;
            };
            let window = self.store.digest_window(
                &sub.id,
                sub.tenant,
                digest.last_ms,
                now,
                DIGEST_NOTICES_MAX,
            )?;
            digest.last_ms = now;
            if window.total > 0 || window.open > 0 {
                let id = self.svc.next_delivery_id;
                self.svc.next_delivery_id += 1;
                self.outbox.deliveries.push(DeliveryRow {
                    id,
                    subscription: sub.id.clone(),
                    purpose: Purpose::Digest,
                    notices: window.notices,
                    next_at_ms: now,
                    at_ms: now,
                    dead: false,
                });
                queued += 1;
            }
            self.outbox.subscriptions.push(sub.to_row());
            updated.push(sub);
        }
        self.commit(&[])?;
        for sub in updated {
            self.svc.subscriptions.insert(sub.id.clone(), sub);
        }
        self.refresh_targets();
        Ok(queued)
    }
}

/// Most notices one digest lists (the rest are counted).
pub const DIGEST_NOTICES_MAX: usize = 10_000;

/// Deliveries queued without a catalog (escalations).
#[derive(Debug, Default)]
pub struct DetachedNotifier {
    now_ms: i64,
    pending: BTreeMap<(String, AdvIdx), Vec<i64>>,
}

impl DetachedNotifier {
    pub fn resend(&mut self, subscriptions: &[String], adv: AdvIdx, id: i64) {
        for s in subscriptions {
            self.pending.entry((s.clone(), adv)).or_default().push(id);
        }
    }

    pub fn finish_into(self, mem: &mut ServiceMem, outbox: &mut Outbox, purpose: Purpose) {
        for ((sub, _), ids) in self.pending {
            for chunk in batches(&ids, &HashMap::new()) {
                let id = mem.next_delivery_id;
                mem.next_delivery_id += 1;
                outbox.deliveries.push(DeliveryRow {
                    id,
                    subscription: sub.clone(),
                    purpose,
                    notices: chunk.to_vec(),
                    next_at_ms: self.now_ms,
                    at_ms: self.now_ms,
                    dead: false,
                });
            }
        }
    }
}

impl Notifier<'_> {
    pub fn new_detached(now_ms: i64) -> DetachedNotifier {
        DetachedNotifier {
            now_ms,
            pending: BTreeMap::new(),
        }
    }
}

/// Parses an artifact id for the API.
pub fn artifact_id(text: &str) -> Result<ArtifactId, EngineError> {
    ArtifactId::new(text).map_err(|e| EngineError::Invalid(e.to_string()))
}

/// What authenticating a request needs to know of a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub tenant: TenantIdx,
    pub tenant_id: TenantId,
    pub token_id: String,
    pub publisher: bool,
}

/// The live tokens by hash, as of the last commit: requests authenticate
/// against it without taking the engine's lock (so a long fan-out does not
/// hold up reads). The engine updates it after each commit that mints or
/// revokes a token, before it answers; a revoked token is refused from
/// then on.
#[derive(Debug, Default)]
pub struct Credentials {
    by_hash: std::sync::RwLock<HashMap<String, Credential>>,
}

impl Credentials {
    /// The credential of a token hash, if the token is live.
    pub fn get(&self, token_hash: &str) -> Option<Credential> {
        self.by_hash
            .read()
            .ok()
            .and_then(|m| m.get(token_hash).cloned())
    }

    pub(crate) fn replace(&self, map: HashMap<String, Credential>) {
        if let Ok(mut m) = self.by_hash.write() {
            *m = map;
        }
    }

    fn insert(&self, hash: String, c: Credential) {
        if let Ok(mut m) = self.by_hash.write() {
            m.insert(hash, c);
        }
    }

    fn remove_tokens(&self, ids: &[String]) {
        if let Ok(mut m) = self.by_hash.write() {
            m.retain(|_, c| !ids.contains(&c.token_id));
        }
    }
}
