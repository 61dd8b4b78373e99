//! The engine: the in-memory catalog and advisory database kept durable by
//! a [`CatalogStore`]. Every entry point (CLI, HTTP, scan) goes through it:
//! a batch of artifacts is applied whole or not at all, published records
//! are stored before they are evaluated, and impact questions are answered
//! from the current state, so that an artifact created after an advisory is
//! matched at once (CONTRACT.md §4.5).

pub mod jsonl;
pub mod report;
pub mod service;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;

use patchline_core::notice::{NoticeState, RemediationCause};
use patchline_core::{Clock, TenantIdx};
use patchline_delivery::RemediatedBy;
use patchline_store::Outbox;

use crate::service::{Notifier, ServiceMem};

use patchline_core::advisory::Failure;
use patchline_core::propagate::{self, ArtifactMatch, Impact, MatchCache};
use patchline_core::{
    Actor, AdvIdx, Advisory, AdvisoryDb, AdvisoryError, ArtIdx, ArtifactSpec, Catalog,
    CatalogError, Changes, Inheritance, Mode, Outcome, Published, Record,
};
use patchline_store::sqlite::SqliteStore;
use patchline_store::{CatalogStore, SecretKeys, StoreError};
use thiserror::Error;

/// Most example matches a batch report keeps (the counts are exact).
pub const REPORT_EXAMPLES_MAX: usize = 1000;
/// How often batch progress is reported, in items.
pub const PROGRESS_EVERY: usize = 4096;
/// Most records an alias lookup names (`affected CVE-…` when the CVE is
/// no record's id).
pub const ALIAS_RECORDS_MAX: usize = 100;
/// Holders whose matches a batch keeps at once (each can hold hundreds).
const HOLDER_CACHE_MAX: usize = 256;
/// An artifact written by a batch: its index, whether it existed (its
/// subtree is checked again), and what its change would remediate by.
type Changed = (ArtIdx, bool, Option<RemediatedBy>);

/// What an update of `a` does to the notices it remediates (below it
/// too), from its parent, own inventory and fixes before: moved onto
/// another parent — a relaunch for an instance, a rebase otherwise; cause
/// `successor` when the new parent supersedes the old one (directly or
/// down a chain), `rebase` otherwise — or changed itself (`rebuild`).
/// `None` when nothing that matching reads changed.
fn remediation_of(
    catalog: &Catalog,
    a: ArtIdx,
    (parent, inventory, fixes): (
        Option<ArtIdx>,
        Option<patchline_core::inventory::InvId>,
        Box<[patchline_core::AdvisoryId]>,
    ),
) -> Option<RemediatedBy> {
    let node = catalog.node(a);
    if node.parent != parent {
        let onto = node.parent;
        let successor = match (onto, parent) {
            (Some(new), Some(old)) => catalog.predecessors(new).any(|p| p == old),
            _ => false,
        };
        return Some(RemediatedBy {
            cause: if successor {
                RemediationCause::Successor
            } else {
                RemediationCause::Rebase
            },
            action: if node.kind == patchline_core::Kind::Instance {
                "relaunch"
            } else {
                "rebase"
            }
            .into(),
            artifact: a.0,
            onto: onto.map(|p| p.0),
        });
    }
    (node.inventory != inventory || node.fixes != fixes).then(|| RemediatedBy {
        cause: RemediationCause::Rebuild,
        action: "rebuild".into(),
        artifact: a.0,
        onto: None,
    })
}

/// How far down its chain of predecessors a successor is announced (a
/// publisher's chain of versions has no length bound; the announcement
/// does).
const ANNOUNCED_PREDECESSORS_MAX: usize = 64;

/// Milliseconds since the Unix epoch, by the system's clock (for callers
/// without an engine; the engine itself asks its injected [`Clock`]).
pub fn now_ms() -> i64 {
    patchline_core::SystemClock.now_ms()
}

/// Why an engine operation failed. Rejections leave everything unchanged.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{}{error}", location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Rejected {
        location: Option<String>,
        error: CatalogError,
    },
    #[error("{}{error}", location.as_deref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Advisory {
        location: Option<String>,
        error: AdvisoryError,
    },
    #[error("unknown {what} {id}")]
    NotFound { what: &'static str, id: String },
    /// The id is no record's, but records name it as an alias.
    #[error(
        "{id} is no record id; it is an alias of {}{}: ask for one of them",
        records.join(", "),
        if *more > 0 { format!(" and {more} more") } else { String::new() }
    )]
    Alias {
        id: String,
        /// The first [`ALIAS_RECORDS_MAX`] records naming it, by id.
        records: Vec<String>,
        /// How many more name it.
        more: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the data directory {0} is in use by another patchline process (is `patchline serve` running?)"
    )]
    Busy(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
}

/// One artifact of a batch, with where it came from (`line 12`).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub location: String,
    pub spec: ArtifactSpec,
}

/// A record (advisory or failure) affecting an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub artifact: ArtIdx,
    pub advisory: AdvIdx,
}

/// What a batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// (artifact, record) pairs now affected among the changed artifacts
    /// and, for updated ones, their descendants.
    pub affected_pairs: usize,
    pub examples: Vec<Match>,
}

/// What publishing a set of records did.
#[derive(Debug, Default, Clone)]
pub struct PublishReport {
    pub outcomes: Vec<Published>,
}

/// An impact kept between questions: the record, the catalog and record
/// generations it was computed at, and the impact itself (owned).
#[derive(Debug)]
struct CachedImpact {
    adv: AdvIdx,
    catalog: u64,
    db: u64,
    impact: std::sync::Arc<Impact<'static>>,
}

/// An impact that borrows nothing (its members copied out of the
/// inheritance table).
fn owned(impact: Impact<'_>) -> Impact<'static> {
    Impact::new(
        impact
            .groups
            .into_iter()
            .map(|g| propagate::Group {
                hits: g.hits,
                members: std::borrow::Cow::Owned(g.members.into_owned()),
            })
            .collect(),
    )
}

/// How many impacts are kept (a million-artifact impact holds 4 MB).
const IMPACTS_KEPT: usize = 4;

/// The engine over a store backend.
#[derive(Debug)]
pub struct Engine<S = SqliteStore> {
    store: S,
    catalog: Catalog,
    db: AdvisoryDb,
    inheritance: Option<Inheritance>,
    /// Component → advisories, kept across batches (see `MatchCache`).
    match_cache: MatchCache,
    /// Root causes known to be stored, by key (they never change once
    /// committed; see `service::RootCache`).
    root_cache: service::RootCache,
    /// The last few impacts asked for, valid while neither the catalog nor
    /// the records change (see [`Engine::impact_shared`]).
    impacts: Vec<CachedImpact>,
    /// Tenants' roles, tokens, subscriptions, watches.
    svc: ServiceMem,
    /// Whether changes record notices (the service does; one-off CLI
    /// questions on a catalog that is not served do not).
    notices_on: bool,
    /// Service rows of the operation under way, committed with it.
    outbox: Outbox,
    /// Notices created by the last commit, per reading tenant, for streams.
    created: Vec<(TenantIdx, i64)>,
    /// How many of `created` a commit already wrote into the change log.
    created_logged: usize,
    /// Notices other nodes created, per reading tenant, learnt by catching
    /// up (for this node's streams; never logged again).
    remote_created: Vec<(TenantIdx, i64)>,
    /// Deliveries other nodes queued since the last look (this node's
    /// workers may take them).
    remote_deliveries: u64,
    /// Another node changed the service state (tokens, subscriptions...)
    /// since the last look.
    remote_service: bool,
    /// Held for the engine's life: one writer per data directory.
    _lock: Option<DirLock>,
    /// Where every timestamp comes from.
    clock: std::sync::Arc<dyn Clock>,
    /// What the delivery path reads instead of taking the engine's lock:
    /// updated with each commit.
    view: std::sync::Arc<patchline_delivery::DeliveryView>,
    /// Live tokens, for authenticating without the engine's lock.
    credentials: std::sync::Arc<service::Credentials>,
    /// A commit failed and the durable state could not be reloaded: the
    /// memory may hold what was never committed.
    stale: bool,
}

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "patchline.lock";

/// How far in the future a record's `modified` may be (clock skew): a
/// later one would make every real update look stale.
pub const MODIFIED_SKEW_MAX_MS: i64 = 5 * 60 * 1000;

/// The exclusive lock of a data directory: one writer at a time. Taken
/// before anything in the directory is touched.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock, creating the directory (0700) and the lock file
    /// (0600) if needed; [`EngineError::Busy`] when another process has it.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, EngineError> {
        use std::os::unix::fs::OpenOptionsExt;
        patchline_store::sqlite::create_data_dir(data_dir)?;
        let lock_path = data_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| {
                EngineError::Store(StoreError::Open {
                    path: lock_path.display().to_string(),
                    source,
                })
            })?;
        if file.try_lock().is_err() {
            return Err(EngineError::Busy(data_dir.display().to_string()));
        }
        Ok(DirLock { _file: file })
    }
}

impl Engine<SqliteStore> {
    /// Opens the embedded store in `data_dir` and loads it. The data
    /// directory is locked for the engine's life: a second process (a CLI
    /// import while `serve` runs) is refused instead of racing the first.
    pub fn open(data_dir: &Path) -> Result<Engine<SqliteStore>, EngineError> {
        Engine::open_with(data_dir, SecretKeys::none())
    }

    /// [`Engine::open`] with the operator's keys for webhook secrets.
    pub fn open_with(
        data_dir: &Path,
        keys: SecretKeys,
    ) -> Result<Engine<SqliteStore>, EngineError> {
        let lock = DirLock::acquire(data_dir)?;
        Engine::open_locked(data_dir, lock, keys)
    }

    /// Closes the engine and hands back the data directory's lock, if it
    /// holds it.
    pub fn into_lock(self) -> Option<DirLock> {
        self._lock
    }

    /// Opens a data directory whose lock the caller already holds.
    pub fn open_locked(
        data_dir: &Path,
        lock: DirLock,
        keys: SecretKeys,
    ) -> Result<Engine<SqliteStore>, EngineError> {
        let mut engine = Engine::with_store(SqliteStore::open_with(data_dir, keys)?)?;
        engine._lock = Some(lock);
        Ok(engine)
    }

    /// Opens an existing catalog for a read command: the normal way when
    /// no other process holds the directory, read-only beside a running
    /// server otherwise. A directory without a catalog is an error (a
    /// mistyped `--data-dir` must not answer "unknown advisory").
    pub fn open_existing(data_dir: &Path) -> Result<Engine<SqliteStore>, EngineError> {
        if !data_dir.join(patchline_store::DB_FILE).is_file() {
            return Err(EngineError::Store(StoreError::NoCatalog(
                data_dir.display().to_string(),
            )));
        }
        match DirLock::acquire(data_dir) {
            Ok(lock) => Engine::open_locked(data_dir, lock, SecretKeys::none()),
            Err(EngineError::Busy(_)) => Engine::with_store(SqliteStore::open_read_only(data_dir)?),
            Err(e) => Err(e),
        }
    }
}

impl<S: CatalogStore + Send + 'static> Engine<S> {
    /// The same engine over a store chosen at run time (the server runs
    /// on either backend).
    pub fn into_dyn(self) -> Engine<patchline_store::DynStore> {
        Engine {
            store: Box::new(self.store),
            catalog: self.catalog,
            db: self.db,
            inheritance: self.inheritance,
            match_cache: self.match_cache,
            root_cache: self.root_cache,
            impacts: self.impacts,
            svc: self.svc,
            notices_on: self.notices_on,
            outbox: self.outbox,
            created: self.created,
            created_logged: self.created_logged,
            remote_created: self.remote_created,
            remote_deliveries: self.remote_deliveries,
            remote_service: self.remote_service,
            _lock: self._lock,
            clock: self.clock,
            view: self.view,
            credentials: self.credentials,
            stale: self.stale,
        }
    }
}

impl<S: CatalogStore> Engine<S> {
    pub fn with_store(mut store: S) -> Result<Engine<S>, EngineError> {
        let (catalog, db, state) = store.load_all()?;
        let svc = ServiceMem::load(state);
        Ok(Engine {
            store,
            catalog,
            db,
            inheritance: None,
            match_cache: MatchCache::new(),
            root_cache: service::RootCache::default(),
            impacts: Vec::new(),
            svc,
            notices_on: false,
            outbox: Outbox::default(),
            created: Vec::new(),
            created_logged: 0,
            remote_created: Vec::new(),
            remote_deliveries: 0,
            remote_service: false,
            _lock: None,
            clock: std::sync::Arc::new(patchline_core::SystemClock),
            view: patchline_delivery::DeliveryView::new(),
            credentials: std::sync::Arc::default(),
            stale: false,
        })
        .inspect(|e| {
            e.rebuild_view();
            e.refresh_credentials();
        })
    }

    /// The live tokens, current as of the last commit.
    pub fn credentials(&self) -> std::sync::Arc<service::Credentials> {
        self.credentials.clone()
    }

    /// The delivery view, current as of the last commit.
    pub fn view(&self) -> std::sync::Arc<patchline_delivery::DeliveryView> {
        self.view.clone()
    }

    /// Builds the delivery view from the whole state (at load, after a
    /// reload).
    fn rebuild_view(&self) {
        let changes = Changes {
            tenants: 0..self.catalog.tenants().len(),
            components: 0..0,
            inventories: 0..0,
            artifacts: (0..self.catalog.len() as u32).map(ArtIdx).collect(),
        };
        let records: Vec<AdvIdx> = self.db.iter().map(|(i, _)| i).collect();
        self.view.update_names(|n| n.truncate(0, 0));
        self.apply_view(&changes, &records);
        self.view.set_installation(&self.svc.installation);
        self.refresh_targets();
    }

    /// Brings the delivery view up to a commit's changes.
    fn apply_view(&self, changes: &Changes, records: &[AdvIdx]) {
        let catalog = &self.catalog;
        self.view.update_names(|n| {
            for t in changes.tenants.clone() {
                n.set_tenant(TenantIdx(t as u32), catalog.tenants()[t].as_str());
            }
            for &a in &changes.artifacts {
                let node = catalog.node(a);
                n.set_artifact(
                    a,
                    node.id.as_str(),
                    patchline_delivery::ArtifactFacts {
                        tenant: node.tenant,
                        kind: node.kind,
                        public: node.visibility == patchline_core::Visibility::Public,
                        removed: node.removed,
                    },
                );
            }
            for &r in records {
                n.set_record(r, service::record_facts(self.db.get(r)));
            }
        });
    }

    /// Republishes the webhook targets (a subscription changed).
    fn refresh_targets(&self) {
        let targets = self
            .svc
            .subscriptions
            .values()
            .filter(|s| !s.state.is_deleted())
            .map(|s| (s.id.clone(), s.target()))
            .collect();
        self.view.set_targets(targets);
    }

    /// Takes its time from `clock` from now on (tests set the time).
    pub fn set_clock(&mut self, clock: std::sync::Arc<dyn Clock>) {
        self.clock = clock;
    }

    /// The engine's clock.
    pub fn clock(&self) -> &std::sync::Arc<dyn Clock> {
        &self.clock
    }

    /// Records notices from now on (the service turns this on).
    pub fn enable_notices(&mut self) {
        self.notices_on = true;
    }

    pub fn service(&self) -> &ServiceMem {
        &self.svc
    }

    /// Notices other nodes created that this node learnt of since the last
    /// call (catching up), then those created by the last operation, per
    /// reading tenant: in id order.
    pub fn take_created(&mut self) -> Vec<(TenantIdx, i64)> {
        self.created_logged = 0;
        // Ids are given in the deployment's commit order: other nodes'
        // notices learnt while catching up come before this node's.
        let mut created = std::mem::take(&mut self.remote_created);
        created.append(&mut self.created);
        created
    }

    /// How many deliveries other nodes queued since the last call.
    pub fn take_remote_deliveries(&mut self) -> u64 {
        std::mem::take(&mut self.remote_deliveries)
    }

    /// Whether another node changed the service state (a token revoked, a
    /// subscription changed) since the last call.
    pub fn take_remote_service(&mut self) -> bool {
        std::mem::take(&mut self.remote_service)
    }

    /// The sequence of the last change of the deployment this engine
    /// holds (0 on the embedded store).
    pub fn applied_seq(&self) -> u64 {
        self.store.applied_seq()
    }

    /// Before a write: takes the deployment's write lock and applies what
    /// other nodes committed, so that the write is validated against every
    /// committed change (a no-op on the embedded store). The lock is
    /// released by the commit, or by [`Engine::end_write`] when the write
    /// is refused before committing. Re-entrant.
    pub fn begin_write(&mut self) -> Result<(), EngineError> {
        self.ensure_fresh()?;
        for attempt in 0..2 {
            match self.store.begin_write(&mut self.catalog, &mut self.db) {
                Ok(caught) => {
                    self.absorb(caught);
                    return Ok(());
                }
                Err(e) => {
                    self.store.end_write();
                    if !self.recover(&e) || attempt == 1 {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes a token from the deployment-wide budget `key` (see
    /// [`CatalogStore::take_budget`]); `None` on the embedded store.
    pub fn take_budget(&mut self, key: &str, per_min: u32) -> Result<Option<f64>, EngineError> {
        let now = self.clock.now_ms();
        Ok(self.store.take_budget(key, per_min, now)?)
    }

    /// Releases the write lock a refused write left held (a no-op when it
    /// is not held).
    pub fn end_write(&mut self) {
        self.store.end_write();
    }

    /// Whether a write could commit now as far as the store's hold on its
    /// database goes (see [`CatalogStore::check_hold`]); for readiness.
    pub fn check_hold(&mut self) -> Result<(), EngineError> {
        self.store.check_hold().map_err(EngineError::from)
    }

    /// Applies what other nodes committed since the last look, without the
    /// write lock (a node following its deployment). `true` when anything
    /// came in.
    pub fn catch_up(&mut self) -> Result<bool, EngineError> {
        self.ensure_fresh()?;
        match self.store.catch_up(&mut self.catalog, &mut self.db) {
            Ok(caught) => {
                let any = caught.as_ref().is_some_and(|c| !c.is_empty());
                self.absorb(caught);
                Ok(any)
            }
            Err(e) => {
                self.recover(&e);
                Err(e.into())
            }
        }
    }

    /// After a failed catch-up: a read that failed left the memory as it
    /// was; a log that no longer reaches back, or rows that do not fit,
    /// may have left it half-applied, so the whole state is reloaded (or
    /// marked stale). `true` when it was reloaded.
    fn recover(&mut self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Corrupt(_) | StoreError::Lagged { .. }) {
            return false;
        }
        if self.reload().is_err() {
            self.stale = true;
            return false;
        }
        true
    }

    /// Brings what the catalog and records do not hold (the view, the
    /// service state, the id counters) up to changes caught up with.
    fn absorb(&mut self, caught: Option<patchline_store::CaughtUp>) {
        let Some(c) = caught else { return };
        if !c.changes.is_empty() || !c.records.is_empty() {
            self.inheritance = None;
            self.apply_view(&c.changes, &c.records);
        }
        let counters = (
            self.svc.next_notice_id,
            self.svc.next_delivery_id,
            self.svc.next_group_id,
        );
        if let Some(state) = c.service {
            self.remote_service = true;
            self.svc = ServiceMem::load(state);
            self.view.set_installation(&self.svc.installation);
            self.refresh_targets();
            self.refresh_credentials();
        }
        let (n, d, g) = c.next_ids.unwrap_or(counters);
        self.svc.next_notice_id = self.svc.next_notice_id.max(counters.0).max(n);
        self.svc.next_delivery_id = self.svc.next_delivery_id.max(counters.1).max(d);
        self.svc.next_group_id = self.svc.next_group_id.max(counters.2).max(g);
        self.remote_created.extend(c.readers);
        self.remote_deliveries += c.deliveries;
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn db(&self) -> &AdvisoryDb {
        &self.db
    }

    /// The catalog to mutate without persisting (benchmarks, what-if
    /// checks), with the advisory database. Roll the catalog back to a
    /// checkpoint before calling anything that commits.
    pub fn parts_mut(&mut self) -> (&mut Catalog, &AdvisoryDb) {
        self.inheritance = None;
        (&mut self.catalog, &self.db)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// After a failed commit the memory may be ahead of the store: reload
    /// so that what is answered is what is durable.
    /// Reloads the durable state if a failed commit left the memory ahead
    /// of it; an error (the store still unreachable) leaves it stale.
    pub fn ensure_fresh(&mut self) -> Result<(), EngineError> {
        if self.stale {
            self.reload()?;
            self.stale = false;
        }
        Ok(())
    }

    fn reload(&mut self) -> Result<(), EngineError> {
        let (catalog, db, state) = self.store.load_all()?;
        self.catalog = catalog;
        self.db = db;
        self.svc = ServiceMem::load(state);
        self.outbox = Outbox::default();
        self.created.clear();
        self.created_logged = 0;
        self.inheritance = None;
        // A reloaded catalog counts its generations anew.
        self.impacts.clear();
        self.rebuild_view();
        self.refresh_credentials();
        Ok(())
    }

    /// Applies a batch atomically: the first rejected item (or the first
    /// item the caller could not even read) rolls back the whole batch and is
    /// reported with its location. `progress` is called with the number of
    /// items applied so far, every [`PROGRESS_EVERY`] items.
    pub fn apply_batch<I>(
        &mut self,
        items: I,
        mode: Mode,
        actor: &Actor,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BatchReport, EngineError>
    where
        I: IntoIterator<Item = Result<BatchItem, EngineError>>,
    {
        self.begin_write()?;
        let cp = self.catalog.checkpoint();
        let mut report = BatchReport::default();
        let mut changed = Vec::new();
        // Successors this batch declares (new, or now superseding
        // something else): announced once the batch is reconciled.
        let mut announced: Vec<(ArtIdx, ArtIdx)> = Vec::new();
        for (n, item) in items.into_iter().enumerate() {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.catalog.rollback(cp);
                    return Err(e);
                }
            };
            let existing = self.catalog.lookup(item.spec.id.as_str());
            let before = existing.and_then(|a| self.catalog.node(a).supersedes);
            let was_public = existing.is_some_and(|a| {
                self.catalog.node(a).visibility == patchline_core::Visibility::Public
            });
            let shape = existing.map(|a| {
                let n = self.catalog.node(a);
                (n.parent, n.inventory, n.fixes.clone())
            });
            // A successor is announced when it is declared, and again when
            // it is made public (a staged release: those who may see it
            // now hear of it; those told already are not told twice).
            let mut declares = |catalog: &Catalog, a: ArtIdx| {
                let node = catalog.node(a);
                let published =
                    !was_public && node.visibility == patchline_core::Visibility::Public;
                if let Some(p) = node.supersedes
                    && (before != Some(p) || published)
                {
                    announced.retain(|&(s, _)| s != a);
                    announced.push((a, p));
                }
            };
            match self.catalog.apply(&item.spec, mode, actor) {
                Ok(Outcome::Created(a)) => {
                    report.created += 1;
                    changed.push((a, false, None));
                    declares(&self.catalog, a);
                }
                Ok(Outcome::Updated(a)) => {
                    report.updated += 1;
                    let by = shape.and_then(|old| remediation_of(&self.catalog, a, old));
                    changed.push((a, true, by));
                    declares(&self.catalog, a);
                }
                Ok(Outcome::Unchanged(_)) => report.unchanged += 1,
                Err(error) => {
                    self.catalog.rollback(cp);
                    return Err(EngineError::Rejected {
                        location: Some(item.location),
                        error,
                    });
                }
            }
            if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                progress(n + 1);
            }
        }
        let first_new = cp.artifacts();
        let reconciled = self
            .reconcile_artifacts(&changed, first_new, &mut report)
            .and_then(|()| self.announce_successors(&announced))
            .and_then(|()| self.refresh_root_plans(&changed, first_new, None));
        if let Err(e) = reconciled {
            self.catalog.rollback(cp);
            self.outbox = Outbox::default();
            return Err(e);
        }
        self.commit(&[])?;
        Ok(report)
    }

    /// Announces the patched successors a write published (`(successor,
    /// what it supersedes)`, both live): for each record the successor
    /// fixes — it affects what it supersedes and not the successor — one
    /// patch notice per (tenant, root cause) to each tenant that owns
    /// artifacts the successor clears (strictly below what it supersedes,
    /// every chain through it) whose notices are still open (affected,
    /// notified or acknowledged) and that may see the successor. Each
    /// carries the tenant's remedy plan for the record (which now moves
    /// onto the successor) and the records the successor breaks. In the
    /// write's transaction, like every notice.
    fn announce_successors(&mut self, announced: &[(ArtIdx, ArtIdx)]) -> Result<(), EngineError> {
        if announced.is_empty() || self.db.is_empty() || !self.notices_on {
            return Ok(());
        }
        self.prepare();
        let now = self.clock.now_ms();
        let Engine {
            catalog,
            db,
            inheritance,
            match_cache,
            svc,
            outbox,
            store,
            created,
            ..
        } = self;
        let (catalog, db) = (&*catalog, &*db);
        let Some(inh) = inheritance.as_ref() else {
            return Ok(());
        };
        // A successor replaces what it supersedes and, through it, each
        // older version down the chain: tenants still on any of them hear
        // of it.
        let pairs: Vec<(ArtIdx, ArtIdx)> = announced
            .iter()
            .flat_map(|&(s, p)| {
                std::iter::once(p)
                    .chain(catalog.predecessors(p))
                    .take(ANNOUNCED_PREDECESSORS_MAX)
                    .map(move |q| (s, q))
            })
            .collect();
        // Each record's impact and plan, computed once for the write.
        let mut plans: HashMap<AdvIdx, (Impact<'_>, Vec<patchline_core::remedy::Step>)> =
            HashMap::new();
        // (tenant, record) pairs each successor was announced for already,
        // by an earlier write: a successor is announced once to each (a
        // `supersedes` taken away and declared again announces nothing).
        let mut told: HashMap<ArtIdx, std::collections::HashSet<(TenantIdx, AdvIdx)>> =
            HashMap::new();
        // One patch notice per (successor, record, tenant, root cause),
        // over the whole chain: the artifacts cleared under every older
        // version, named by the newest version they are under (the first
        // met down the chain), with what the successor breaks against it.
        struct Pending {
            supersedes: ArtIdx,
            breaks: Rc<Vec<AdvIdx>>,
            /// (artifact, its group in the record's impact)
            arts: Vec<(ArtIdx, usize)>,
        }
        let mut pending: std::collections::BTreeMap<(ArtIdx, AdvIdx, TenantIdx, ArtIdx), Pending> =
            std::collections::BTreeMap::new();
        for (s, p) in pairs {
            if catalog.node(s).removed || catalog.node(p).removed {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = told.entry(s) {
                e.insert(store.announced(s)?.into_iter().collect());
            }
            let at_p = propagate::check_artifact_cached(catalog, db, p, match_cache);
            let at_s = propagate::check_artifact_cached(catalog, db, s, match_cache);
            let carries =
                |list: &[ArtifactMatch], adv: AdvIdx| list.iter().any(|m| m.advisory == adv);
            let breaks: Rc<Vec<AdvIdx>> = Rc::new(
                at_s.iter()
                    .filter(|m| !carries(&at_p, m.advisory))
                    .map(|m| m.advisory)
                    .collect(),
            );
            for fixed in at_p.iter().filter(|m| !carries(&at_s, m.advisory)) {
                let adv = fixed.advisory;
                let (impact, _) = plans.entry(adv).or_insert_with(|| {
                    let impact = propagate::impact(catalog, inh, db, adv);
                    let steps = patchline_core::remedy::plan(
                        catalog,
                        &impact,
                        patchline_core::remedy::PlanFor::All,
                        &Actor::Admin,
                    );
                    (impact, steps)
                });
                let cleared = patchline_core::remedy::cleared_by(catalog, impact, p);
                if cleared.is_empty() {
                    continue;
                }
                let arts: Vec<ArtIdx> = cleared.iter().map(|c| c.artifact).collect();
                let open: HashMap<ArtIdx, NoticeState> = store
                    .notices_on(adv, &arts)?
                    .into_iter()
                    .map(|(_, a, st)| (a, st))
                    .collect();
                let before = &told[&s];
                for c in &cleared {
                    if !open.get(&c.artifact).is_some_and(|st| {
                        matches!(
                            st,
                            NoticeState::Affected
                                | NoticeState::Notified
                                | NoticeState::Acknowledged
                        )
                    }) {
                        continue;
                    }
                    let t = catalog.link(c.artifact).tenant;
                    if before.contains(&(t, adv))
                        || !catalog.may_see_idx(&Actor::Tenant(catalog.tenant_id(t).clone()), s)
                    {
                        continue;
                    }
                    pending
                        .entry((s, adv, t, c.root))
                        .or_insert_with(|| Pending {
                            supersedes: p,
                            breaks: breaks.clone(),
                            arts: Vec::new(),
                        })
                        .arts
                        .push((c.artifact, c.group));
                }
            }
        }
        let mut notifier = Notifier::new(catalog, svc, outbox, now);
        let by_tenant: HashMap<AdvIdx, _> = plans
            .iter()
            .map(|(&adv, (_, steps))| (adv, patchline_core::remedy::by_tenant(steps)))
            .collect();
        for ((s, adv, t, root), pending) in pending {
            let Pending {
                supersedes: p,
                breaks,
                arts,
            } = pending;
            let impact = &plans[&adv].0;
            let mut arts: Vec<(ArtIdx, &[propagate::ComponentHit])> = arts
                .into_iter()
                .map(|(a, g)| (a, impact.groups[g].hits.as_slice()))
                .collect();
            arts.sort_unstable_by_key(|(a, _)| *a);
            arts.dedup_by_key(|(a, _)| *a);
            let record = db.get(adv);
            let (clears, clears_total) = patchline_delivery::patch::capped(
                arts.iter().map(|(a, _)| *a),
                patchline_delivery::PATCH_CLEARS_MAX,
            );
            // In the order the tenant reads its plan (hidden ids never
            // order it).
            let viewer = Actor::Tenant(catalog.tenant_id(t).clone());
            // What the successor breaks, of what the tenant may know of:
            // every advisory; a failure only when the tenant may see the
            // failed artifact or published the failure.
            let tenant_breaks: Vec<AdvIdx> = breaks
                .iter()
                .copied()
                .filter(|&b| match db.get(b) {
                    Record::Advisory(_) => true,
                    Record::Failure(f) => {
                        catalog.may_see_idx(&viewer, f.artifact)
                            || notifier.mem.record_owner(b) == Some(t)
                    }
                })
                .collect();
            let mut mine: Vec<&patchline_core::remedy::Step> = by_tenant[&adv]
                .get(&t)
                .into_iter()
                .flatten()
                .copied()
                .collect();
            mine.sort_by_cached_key(|s| patchline_core::remedy::order_key(catalog, s, &viewer));
            // The tenant's grouped notices of this record name the
            // successor from now on: `refresh_root_plans`, run by the
            // write after this.
            let (steps, steps_total) = patchline_delivery::patch::stored_steps(mine);
            let doc = patchline_delivery::PatchDoc {
                v: patchline_delivery::PATCH_DOC_VERSION,
                supersedes: p.0,
                introduced_by: root.0,
                clears,
                clears_total,
                steps,
                steps_total,
                breaks: tenant_breaks
                    .iter()
                    .take(patchline_delivery::PATCH_BREAKS_MAX)
                    .map(|r| r.0)
                    .collect(),
                breaks_total: tenant_breaks.len() as u64,
            };
            notifier.patch(record, adv, s, t, &arts, &doc);
        }
        notifier.finish_patches();
        // The patch notices, for the tenants' event streams.
        created.append(&mut notifier.created);
        Ok(())
    }

    /// Removes artifacts (instances deleted, images retired).
    pub fn remove(&mut self, ids: &[&str], actor: &Actor) -> Result<usize, EngineError> {
        self.begin_write()?;
        let cp = self.catalog.checkpoint();
        for id in ids {
            if let Err(error) = self.catalog.remove(id, actor) {
                self.catalog.rollback(cp);
                return Err(EngineError::Rejected {
                    location: None,
                    error,
                });
            }
        }
        let removed: Vec<Changed> = ids
            .iter()
            .filter_map(|id| self.catalog.lookup(id))
            .map(|a| {
                let by = RemediatedBy {
                    cause: RemediationCause::Removal,
                    action: "remove".into(),
                    artifact: a.0,
                    onto: None,
                };
                (a, true, Some(by))
            })
            .collect();
        let mut report = BatchReport::default();
        let reconciled = self
            .reconcile_artifacts(&removed, usize::MAX, &mut report)
            .and_then(|()| self.refresh_root_plans(&removed, usize::MAX, None));
        if let Err(e) = reconciled {
            self.catalog.rollback(cp);
            self.outbox = Outbox::default();
            return Err(e);
        }
        self.commit(&[])?;
        Ok(ids.len())
    }

    /// Writes the catalog changes, `records` and the outbox in one
    /// transaction; on failure the durable state is reloaded.
    fn commit(&mut self, records: &[AdvIdx]) -> Result<(), EngineError> {
        let out = self.commit_locked(records);
        self.store.end_write();
        out
    }

    fn commit_locked(&mut self, records: &[AdvIdx]) -> Result<(), EngineError> {
        let changes = self.catalog.take_changes();
        let mut outbox = std::mem::take(&mut self.outbox);
        if changes.is_empty() && records.is_empty() && outbox.is_empty() {
            return Ok(());
        }
        if !changes.is_empty() {
            self.inheritance = None;
        }
        outbox.readers = self.created[self.created_logged..].to_vec();
        self.created_logged = self.created.len();
        if let Err(e) = self
            .store
            .commit(&self.catalog, &changes, &self.db, records, &outbox)
        {
            // The memory holds what was not committed: back to the durable
            // state, or, when the store cannot be read either (it is
            // unreachable), marked stale so that nothing is answered from
            // it before a reload succeeds (`ensure_fresh`).
            if self.reload().is_err() {
                self.stale = true;
            }
            return Err(e.into());
        }
        self.apply_view(&changes, records);
        Ok(())
    }

    /// Checks changed artifacts (and the subtrees of updated ones) against
    /// every open record, counts the pairs for the report and, when notices
    /// are on, records new notices and remediations. Artifacts that inherit
    /// an inventory share their holder's advisory matches (a bounded cache),
    /// so a million new instances cost a million lookups, not a million
    /// inventory scans. Artifacts from `first_new` on are new: they have no
    /// notices yet.
    fn reconcile_artifacts(
        &mut self,
        changed: &[Changed],
        first_new: usize,
        report: &mut BatchReport,
    ) -> Result<(), EngineError> {
        if self.db.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let Engine {
            catalog,
            db,
            match_cache,
            svc,
            outbox,
            store,
            created,
            notices_on,
            root_cache,
            ..
        } = self;
        let (catalog, db) = (&*catalog, &*db);
        let mut notifier = Notifier::new(catalog, svc, outbox, now);
        let mut by_holder: HashMap<ArtIdx, Rc<Vec<ArtifactMatch>>> = HashMap::new();
        let mut visit = |a: ArtIdx, by: Option<&RemediatedBy>| -> Result<(), EngineError> {
            let node = catalog.node(a);
            let mut current: Vec<ArtifactMatch> = Vec::new();
            let mut holder_matches: Rc<Vec<ArtifactMatch>> = Rc::default();
            if !node.removed {
                if let Some(h) = catalog.inventory_holder(a) {
                    if by_holder.len() >= HOLDER_CACHE_MAX {
                        by_holder.clear();
                    }
                    holder_matches = by_holder
                        .entry(h)
                        .or_insert_with(|| {
                            Rc::new(propagate::advisory_matches_cached(
                                catalog,
                                db,
                                h,
                                match_cache,
                            ))
                        })
                        .clone();
                }
                current = propagate::failure_matches(catalog, db, a);
            }
            let all = holder_matches.iter().chain(current.iter());
            report.affected_pairs += holder_matches.len() + current.len();
            for m in all.clone() {
                if report.examples.len() >= REPORT_EXAMPLES_MAX {
                    break;
                }
                report.examples.push(Match {
                    artifact: a,
                    advisory: m.advisory,
                });
            }
            if !*notices_on {
                return Ok(());
            }
            let mut existing: HashMap<AdvIdx, patchline_store::ArtifactNotice> =
                if (a.0 as usize) < first_new {
                    store
                        .notices_of_artifact(a)?
                        .into_iter()
                        .map(|n| (n.advisory, n))
                        .collect()
                } else {
                    HashMap::new()
                };
            for m in all {
                let record = db.get(m.advisory);
                match existing.remove(&m.advisory) {
                    None => notifier.notice(record, m.advisory, a, &m.hits),
                    Some(n) if n.state == NoticeState::Remediated => {
                        notifier.reopen(record, m.advisory, a, &m.hits, n.id)
                    }
                    // Still open: its lineage may have changed under it
                    // (re-parented, rebuilt above): placed again.
                    Some(n) if !n.state.is_closed() => {
                        notifier.replace(m.advisory, a, &m.hits, &n);
                        // Moved under an artifact with the owner's VEX
                        // statement: it takes the decision.
                        notifier.decide(record, m.advisory, a, n.id, n.state);
                    }
                    Some(_) => {}
                }
            }
            for (adv, n) in existing {
                let (id, state) = (n.id, n.state);
                if matches!(
                    state,
                    NoticeState::Affected | NoticeState::Notified | NoticeState::Acknowledged
                ) {
                    notifier.remediate(adv, id, by);
                }
            }
            Ok(())
        };
        for (a, updated, by) in changed {
            visit(*a, by.as_ref())?;
            if *updated {
                for d in catalog.descendants(*a) {
                    visit(d, by.as_ref())?;
                }
            }
        }
        notifier.assign_roots(
            store,
            root_cache,
            &mut |adv, t, p| successor_onto(catalog, db, match_cache, adv, t, p),
            &|adv| db.agreeing(adv),
        )?;
        created.extend(notifier.finish(patchline_core::notice::Purpose::Notice));
        Ok(())
    }

    /// Brings the plans of stored root causes (what a step waits for, the
    /// successor it moves onto) in line with the catalog after a write
    /// changed these artifacts (those from `first_new` on are new): roots
    /// whose step is one of them (re-parented), whose successor is one of
    /// them (rebuilt, hidden, removed) or whose upstream one of them
    /// supersedes, down its chain — and, below an updated artifact, the
    /// successors whose inventory it changed. With `record`, every root of
    /// that record whose upstream has successors (the record changed, so
    /// which successor is clean may have). Roots made by this write were
    /// planned on this catalog already.
    fn refresh_root_plans(
        &mut self,
        changed: &[Changed],
        first_new: usize,
        record: Option<AdvIdx>,
    ) -> Result<(), EngineError> {
        if !self.notices_on || self.db.is_empty() {
            return Ok(());
        }
        let Engine {
            catalog,
            db,
            match_cache,
            outbox,
            store,
            ..
        } = self;
        let catalog = &*catalog;
        let mut near: BTreeSet<ArtIdx> = BTreeSet::new();
        // A successor, with every version it supersedes down its chain
        // (roots waiting for any of them may move onto it).
        let successor = |s: ArtIdx, near: &mut BTreeSet<ArtIdx>| {
            if catalog.node(s).supersedes.is_some() {
                near.insert(s);
                near.extend(catalog.predecessors(s));
            }
        };
        match record {
            Some(_) => {
                if catalog.has_successors() {
                    for (a, node) in catalog.nodes() {
                        if !node.removed {
                            successor(a, &mut near);
                        }
                    }
                }
            }
            None => {
                for &(a, updated, _) in changed {
                    // A new artifact is in no stored root, unless it
                    // supersedes something.
                    if (a.0 as usize) < first_new {
                        near.insert(a);
                    }
                    successor(a, &mut near);
                    if updated && catalog.has_successors() {
                        for d in catalog.descendants(a) {
                            successor(d, &mut near);
                        }
                    }
                }
            }
        }
        if near.is_empty() {
            return Ok(());
        }
        let near: Vec<ArtIdx> = near.into_iter().collect();
        // The successor of one upstream for one tenant and record, found
        // once: every root waiting for it shares the walk down its chain
        // (found from outside: thousands of a tenant's groups waiting for
        // one base made each write walk a long chain once per group).
        let mut onto_of: HashMap<(AdvIdx, TenantIdx, ArtIdx), Option<ArtIdx>> = HashMap::new();
        for root in store.root_plans_near(&near, record)? {
            let waits_for = patchline_core::remedy::upstream(catalog, root.step, root.action);
            let onto = waits_for.and_then(|p| {
                *onto_of
                    .entry((root.advisory, root.tenant, p))
                    .or_insert_with(|| {
                        successor_onto(catalog, db, match_cache, root.advisory, root.tenant, p)
                    })
            });
            if (waits_for, onto) != (root.waits_for, root.onto) {
                outbox.root_plans.push(patchline_store::RootPlan {
                    waits_for,
                    onto,
                    ..root
                });
            }
        }
        Ok(())
    }

    /// Brings the notices of a record in line with its impact: new ones for
    /// newly affected artifacts, reopened ones for reintroductions,
    /// remediations for artifacts it no longer affects.
    fn reconcile_record(&mut self, adv: AdvIdx, changed: bool) -> Result<(), EngineError> {
        self.prepare();
        let mut existing: HashMap<ArtIdx, (i64, NoticeState)> = self
            .store
            .notices_of_advisory(adv)?
            .into_iter()
            .map(|(id, a, st)| (a, (id, st)))
            .collect();
        let now = self.clock.now_ms();
        let Engine {
            catalog,
            db,
            inheritance,
            svc,
            outbox,
            created,
            store,
            match_cache,
            root_cache,
            ..
        } = self;
        let Some(inh) = inheritance.as_ref() else {
            return Ok(());
        };
        let impact = propagate::impact(catalog, inh, db, adv);
        let record = db.get(adv);
        let mut notifier = Notifier::new(catalog, svc, outbox, now);
        // By tenant, then artifact: a tenant's notices of one fan-out get
        // neighbouring ids, so the rows a delivery marks `notified` share
        // a few pages instead of one page each; within a tenant the
        // artifact order keeps the index keyed by artifact growing in runs.
        let mut rows: Vec<(ArtIdx, &[propagate::ComponentHit])> =
            Vec::with_capacity(impact.artifact_count());
        rows.extend(impact.iter());
        rows.sort_unstable_by_key(|(a, _)| (catalog.node(*a).tenant, *a));
        for (a, hits) in rows {
            match existing.remove(&a) {
                None => notifier.notice(record, adv, a, hits),
                Some((id, NoticeState::Remediated)) => notifier.reopen(record, adv, a, hits, id),
                Some(_) => {}
            }
        }
        for (a, (id, state)) in existing {
            if matches!(
                state,
                NoticeState::Affected | NoticeState::Notified | NoticeState::Acknowledged
            ) {
                // Published again with other ranges (or withdrawn): the
                // record did it. At start-up the cause is not known.
                let by = changed.then(|| RemediatedBy {
                    cause: RemediationCause::Record,
                    action: "record".into(),
                    artifact: a.0,
                    onto: None,
                });
                notifier.remediate(adv, id, by.as_ref());
            }
        }
        notifier.assign_roots(
            store,
            root_cache,
            &mut |adv, t, p| successor_onto(catalog, db, match_cache, adv, t, p),
            &|adv| db.agreeing(adv),
        )?;
        created.extend(notifier.finish(patchline_core::notice::Purpose::Notice));
        Ok(())
    }

    /// Records the notices every open record should have and does not
    /// (the service's start-up: imports made while it was stopped, or a
    /// catalog served for the first time).
    pub fn reconcile_all(&mut self) -> Result<usize, EngineError> {
        let ids: Vec<AdvIdx> = self
            .db
            .iter()
            .filter(|(_, r)| r.is_open())
            .map(|(i, _)| i)
            .collect();
        let mut n = 0;
        for adv in ids {
            self.begin_write()?;
            self.reconcile_record(adv, false)?;
            n += self.outbox.notices.len();
            self.commit(&[])?;
        }
        Ok(n)
    }

    /// Publishes advisories as the operator (CLI imports, feeds); each is
    /// stored before anything is evaluated.
    pub fn publish_advisories(
        &mut self,
        advisories: Vec<(String, Advisory)>,
    ) -> Result<PublishReport, EngineError> {
        self.publish_advisories_as(advisories, &Actor::Admin)
    }

    /// Publishes advisories as `actor`: a record belongs to the tenant that
    /// first published it (or to the operator); only its owner or an admin
    /// may update or withdraw it, and a new id under a prefix reserved for
    /// another publisher is refused.
    pub fn publish_advisories_as(
        &mut self,
        advisories: Vec<(String, Advisory)>,
        actor: &Actor,
    ) -> Result<PublishReport, EngineError> {
        let records = advisories
            .into_iter()
            .map(|(loc, a)| (loc, Record::Advisory(a)))
            .collect();
        self.publish(records, actor)
    }

    /// Publishes a failure of one artifact; only its owner may.
    pub fn publish_failure(
        &mut self,
        failure: Failure,
        actor: &Actor,
    ) -> Result<Published, EngineError> {
        self.begin_write()?;
        if !self.catalog.owns(actor, failure.artifact)
            || self.catalog.node(failure.artifact).removed
        {
            return Err(EngineError::NotFound {
                what: "artifact",
                id: self.catalog.node(failure.artifact).id.to_string(),
            });
        }
        let failure = failure.bounded();
        let report = self.publish(vec![(String::new(), Record::Failure(failure))], actor)?;
        Ok(report.outcomes[0])
    }

    /// May `actor` publish `record` (new or over the stored one)?
    fn check_publisher(&self, record: &Record, actor: &Actor, now: i64) -> Result<(), EngineError> {
        let modified_ms = record.modified().as_unix_ms();
        if modified_ms > now + MODIFIED_SKEW_MAX_MS {
            return Err(EngineError::Invalid(format!(
                "{}: modified is in the future (more than {} minutes ahead of this server's clock)",
                record.id(),
                MODIFIED_SKEW_MAX_MS / 60_000
            )));
        }
        let Actor::Tenant(t) = actor else {
            return Ok(());
        };
        let me = self.catalog.tenant_idx(t.as_str());
        let id = record.id().as_str();
        match self.db.lookup(id) {
            Some(existing) => {
                let owner = self.svc.record_owner(existing);
                if owner.is_none() || owner != me {
                    return Err(EngineError::Forbidden(format!(
                        "{id} was published by someone else: only its publisher or an admin may change it"
                    )));
                }
            }
            None => {
                if let Some((prefix, owner)) = self.svc.reserved_prefix(id)
                    && Some(owner) != me
                {
                    return Err(EngineError::Forbidden(format!(
                        "ids starting with {prefix} are reserved for another publisher"
                    )));
                }
            }
        }
        Ok(())
    }

    fn publish(
        &mut self,
        records: Vec<(String, Record)>,
        actor: &Actor,
    ) -> Result<PublishReport, EngineError> {
        self.begin_write()?;
        let mut report = PublishReport::default();
        let mut changed = Vec::new();
        let now = self.clock.now_ms();
        let owner = match actor {
            Actor::Admin => None,
            Actor::Tenant(t) => self.catalog.tenant_idx(t.as_str()),
        };
        for (location, record) in records {
            if let Err(e) = self.check_publisher(&record, actor, now) {
                // Records already published in memory by this batch must
                // not outlive the rejection.
                self.reload()?;
                return Err(match e {
                    EngineError::Invalid(m) if !location.is_empty() => {
                        EngineError::Invalid(format!("{location}: {m}"))
                    }
                    other => other,
                });
            }
            let outcome = self
                .db
                .publish(record)
                .map_err(|error| EngineError::Advisory {
                    location: (!location.is_empty()).then_some(location),
                    error,
                });
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    // Records already published in memory must not outlive
                    // a rejection that the caller will report as "nothing
                    // changed": nothing was committed yet, so reload.
                    self.reload()?;
                    return Err(e);
                }
            };
            if let (Published::New(idx), Some(t)) = (outcome, owner) {
                self.outbox.record_owners.push((idx, t));
                self.svc.record_owners.insert(idx, t);
            }
            if outcome.changed() {
                changed.push(outcome.idx());
            }
            report.outcomes.push(outcome);
        }
        if self.notices_on {
            for &adv in &changed {
                let reconciled = self
                    .reconcile_record(adv, true)
                    .and_then(|()| self.refresh_root_plans(&[], 0, Some(adv)));
                if let Err(e) = reconciled {
                    self.reload()?;
                    return Err(e);
                }
            }
        }
        self.commit(&changed)?;
        Ok(report)
    }

    /// The inheritance table for the current catalog.
    pub fn inheritance(&mut self) -> &Inheritance {
        if !self
            .inheritance
            .as_ref()
            .is_some_and(|i| i.is_current(&self.catalog))
        {
            self.inheritance = Some(Inheritance::build(&self.catalog));
        }
        self.inheritance
            .get_or_insert_with(|| Inheritance::build(&self.catalog))
    }

    /// Makes sure the inheritance table is current, for `impact`.
    pub fn prepare(&mut self) {
        let _ = self.inheritance();
    }

    /// Every open record affecting artifact `a` now.
    pub fn check(&mut self, a: ArtIdx) -> Vec<ArtifactMatch> {
        propagate::check_artifact_cached(&self.catalog, &self.db, a, &mut self.match_cache)
    }

    /// The impact of a record; call [`Engine::prepare`] first.
    pub fn impact(&self, adv: AdvIdx) -> Impact<'_> {
        match &self.inheritance {
            Some(inh) if inh.is_current(&self.catalog) => {
                propagate::impact(&self.catalog, inh, &self.db, adv)
            }
            _ => {
                // Not prepared: compute with a private table (correct, slower).
                let inh = Inheritance::build(&self.catalog);
                owned(propagate::impact(&self.catalog, &inh, &self.db, adv))
            }
        }
    }

    /// The impact of a record, kept between questions while neither the
    /// catalog nor the records change (the last [`IMPACTS_KEPT`] asked for):
    /// repeated questions about one record (remedy plans per tenant,
    /// `affected` pages) skip recomputing it.
    pub fn impact_shared(&mut self, adv: AdvIdx) -> std::sync::Arc<Impact<'static>> {
        let (cg, dg) = (self.catalog.generation(), self.db.generation());
        if let Some(pos) = self
            .impacts
            .iter()
            .position(|c| c.adv == adv && c.catalog == cg && c.db == dg)
        {
            let hit = self.impacts.remove(pos);
            let impact = hit.impact.clone();
            self.impacts.push(hit);
            return impact;
        }
        self.impacts.retain(|c| c.catalog == cg && c.db == dg);
        self.prepare();
        let impact = std::sync::Arc::new(owned(self.impact(adv)));
        if self.impacts.len() >= IMPACTS_KEPT {
            self.impacts.remove(0);
        }
        self.impacts.push(CachedImpact {
            adv,
            catalog: cg,
            db: dg,
            impact: impact.clone(),
        });
        impact
    }

    pub fn lookup_record(&self, id: &str) -> Result<AdvIdx, EngineError> {
        if let Some(adv) = self.db.lookup(id) {
            return Ok(adv);
        }
        // An exact record id always wins; without one, say which records
        // name it (an alias is public knowledge: advisories only).
        let naming = self.db.naming(id);
        let more = naming.len().saturating_sub(ALIAS_RECORDS_MAX);
        let records: Vec<String> = naming
            .into_iter()
            .take(ALIAS_RECORDS_MAX)
            .map(|a| self.db.get(a).id().to_string())
            .collect();
        Err(if records.is_empty() {
            EngineError::NotFound {
                what: "advisory",
                id: id.to_string(),
            }
        } else {
            EngineError::Alias {
                id: id.to_string(),
                records,
                more,
            }
        })
    }

    /// A record `actor` may know of: every advisory (they are public
    /// knowledge), and failures of artifacts it may see or that it
    /// published. Anything else answers exactly like a missing id.
    pub fn lookup_record_for(&self, id: &str, actor: &Actor) -> Result<AdvIdx, EngineError> {
        let adv = self.lookup_record(id)?;
        let visible = match (self.db.get(adv), actor) {
            (_, Actor::Admin) | (Record::Advisory(_), _) => true,
            (Record::Failure(f), Actor::Tenant(_)) => {
                self.owns_record(actor, adv) || self.catalog.may_see_idx(actor, f.artifact)
            }
        };
        if visible {
            Ok(adv)
        } else {
            Err(EngineError::NotFound {
                what: "advisory",
                id: id.to_string(),
            })
        }
    }

    /// Did `actor` publish the record (admins own every record)?
    pub fn owns_record(&self, actor: &Actor, adv: AdvIdx) -> bool {
        match actor {
            Actor::Admin => true,
            Actor::Tenant(t) => {
                let me = self.catalog.tenant_idx(t.as_str());
                me.is_some() && self.svc.record_owner(adv) == me
            }
        }
    }
}

/// The successor tenant `t`'s step moves onto from `p` for record `adv`:
/// of `p`'s successors (down their chains), the newest `t` may see that
/// the record does not affect (the remedy plan's rule), if any.
fn successor_onto(
    catalog: &Catalog,
    db: &AdvisoryDb,
    cache: &mut MatchCache,
    adv: AdvIdx,
    t: TenantIdx,
    p: ArtIdx,
) -> Option<ArtIdx> {
    if !catalog.has_successors() || catalog.successors(p).is_empty() {
        return None;
    }
    let viewer = Actor::Tenant(catalog.tenant_id(t).clone());
    patchline_core::remedy::Successors::of(catalog).best(catalog, p, &viewer, |s| {
        !propagate::check_artifact_cached(catalog, db, s, cache)
            .iter()
            .any(|m| m.advisory == adv)
    })
}
