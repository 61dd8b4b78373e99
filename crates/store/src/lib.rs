//! Persistence of the catalog and of advisories and failures. The
//! [`CatalogStore`] trait is what the rest of patchline sees; SQLite in the
//! data directory ([`sqlite::SqliteStore`]) is the embedded default,
//! PostgreSQL ([`postgres::PgStore`]) the shared store of a scale-out
//! deployment. Both implement the same traits ([`CatalogStore`],
//! [`DeliveryQueue`], [`NoticeReader`]) and run the same conformance suite
//! (`tests/conformance.rs`).
//!
//! The in-memory [`Catalog`] is the working copy; the store keeps it durable:
//! `load` rebuilds it exactly, `commit` writes one batch of changes in one
//! transaction, so a batch is either wholly stored or not at all.

mod codec;
pub mod postgres;
pub mod secrets;
pub mod service;
pub mod sqlite;

use patchline_core::notice::NoticeState;
use patchline_core::remedy::RootCause;
use patchline_core::{AdvIdx, AdvisoryDb, ArtIdx, Catalog, Changes, TenantIdx};
pub use secrets::SecretKeys;
pub use service::{
    ArtifactNotice, Claimed, DeliveryInfo, DigestWindow, Finished, OpenGroup, Outbox, PatchRow,
    RootMember, RootMembers, RootPlan, RootRow, ServiceState, StoredNotice, StoredRoot, VexRow,
};
use thiserror::Error;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "patchline.db";

/// Why the store failed. Messages never include SQL or row contents that a
/// client should not see; the server maps every kind to a generic answer.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the data directory {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot be reached now (refused, closed, timed out):
    /// worth trying again later; the server answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection was lost while the database was committing: the
    /// change may be saved though no answer came (the server answers 503
    /// and says so; the node reloads as after any failed commit).
    #[error("database unavailable during the commit, which may have been saved: {0}")]
    CommitUnknown(String),
    #[error("the stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(
        "the database was written by a newer patchline (schema {found}, this build knows {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("no catalog at {0} (no patchline.db there; check --data-dir)")]
    NoCatalog(String),
    #[error("{0}")]
    Secrets(String),
    /// Another node committed a change this node had not applied (it
    /// lost the write lock): nothing was written; the node reloads and the
    /// write may be tried again.
    #[error("{0}")]
    Conflict(String),
    /// The change log no longer holds what this node missed (it was
    /// pruned while the node lagged): reload the whole state.
    #[error("this node fell behind the change log (at {applied}, log starts at {first}): reload")]
    Lagged { applied: u64, first: u64 },
    /// Another process holds what this one needs (a PostgreSQL database
    /// served by another node).
    #[error("{0}")]
    Busy(String),
}

/// What other nodes of the deployment committed since this node last read
/// the change log, already applied to the caller's catalog and advisory
/// database by [`CatalogStore::begin_write`] or [`CatalogStore::catch_up`]:
/// what the caller must bring up to date besides.
#[derive(Debug, Default)]
pub struct CaughtUp {
    /// The sequence of the last change now applied.
    pub seq: u64,
    /// The catalog rows that came in (for the delivery view).
    pub changes: Changes,
    /// Records added or replaced.
    pub records: Vec<AdvIdx>,
    /// The whole service state, when a change touched it (tenants' roles,
    /// tokens, record owners, prefixes, subscriptions, watches).
    pub service: Option<ServiceState>,
    /// Notices those changes created or reopened, per reading tenant (for
    /// the event streams of this node).
    pub readers: Vec<(TenantIdx, i64)>,
    /// Deliveries those changes queued (workers of this node may take
    /// them).
    pub deliveries: u64,
    /// The next free notice, delivery and group ids (read under the write
    /// lock: the next commit's ids follow every node's).
    pub next_ids: Option<(i64, i64, i64)>,
}

impl CaughtUp {
    /// Nothing came in.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.records.is_empty()
            && self.service.is_none()
            && self.readers.is_empty()
            && self.deliveries == 0
    }
}

/// What a backend must do.
pub trait CatalogStore {
    /// Several nodes share this store: takes the deployment's write lock
    /// (held until [`CatalogStore::end_write`]) and applies to `catalog` and
    /// `db` every change other nodes committed since this node's last, so
    /// that what is validated next sees them. `None` for a store only this
    /// process writes (SQLite). After an error the caller reloads whole.
    fn begin_write(
        &mut self,
        _catalog: &mut Catalog,
        _db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        Ok(None)
    }

    /// Releases the write lock, if held (after a commit, or a write that
    /// was refused before committing).
    fn end_write(&mut self) {}

    /// Applies other nodes' committed changes without the write lock (a
    /// node following the deployment between its own writes).
    fn catch_up(
        &mut self,
        _catalog: &mut Catalog,
        _db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        Ok(None)
    }

    /// The sequence of the last change this store committed or applied
    /// (0 for a store without a change log).
    fn applied_seq(&self) -> u64 {
        0
    }

    /// Whether this store may commit now: a store fenced by a node's hold
    /// on its database ([`postgres::NodeLock`]) answers
    /// [`StoreError::Unavailable`] while the hold is lost (between a cut
    /// of its connection and the watcher taking it again). For readiness.
    fn check_hold(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes one token from the deployment-wide bucket `key` (refilled at
    /// `per_min` a minute, holding at most `per_min`) and answers what is
    /// left (negative: spent). `None` for a store only this process uses
    /// (the caller's own bucket is the deployment's).
    fn take_budget(
        &mut self,
        _key: &str,
        _per_min: u32,
        _now_ms: i64,
    ) -> Result<Option<f64>, StoreError> {
        Ok(None)
    }

    /// Rebuilds the catalog and the advisory database.
    fn load(&mut self) -> Result<(Catalog, AdvisoryDb), StoreError>;

    /// Writes one batch in one transaction: the catalog's `changes`, the
    /// `records` (advisories, failures) that were published and the service
    /// rows that follow from them (notices, deliveries, subscriptions...).
    fn commit(
        &mut self,
        catalog: &Catalog,
        changes: &Changes,
        db: &AdvisoryDb,
        records: &[AdvIdx],
        outbox: &Outbox,
    ) -> Result<(), StoreError>;

    /// Tenants' roles, tokens, subscriptions, watches and id counters.
    fn load_service(&mut self) -> Result<ServiceState, StoreError>;

    /// The catalog, the records and the service state as of one moment:
    /// a backend other processes write to (several nodes) reads them in
    /// one snapshot, so that no token or subscription names a tenant or
    /// artifact the catalog read before it does not hold.
    #[allow(clippy::type_complexity)]
    fn load_all(&mut self) -> Result<(Catalog, AdvisoryDb, ServiceState), StoreError> {
        let (catalog, db) = self.load()?;
        Ok((catalog, db, self.load_service()?))
    }

    /// Every notice of a record: (notice id, artifact, state).
    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError>;

    /// Every notice about an artifact.
    fn notices_of_artifact(&mut self, a: ArtIdx) -> Result<Vec<ArtifactNotice>, StoreError>;

    /// The (tenant, record) pairs a successor's patch notices were sent
    /// for already (a successor is announced once to each).
    fn announced(&mut self, successor: ArtIdx) -> Result<Vec<(TenantIdx, AdvIdx)>, StoreError>;

    /// A record's notices on these artifacts: (notice id, artifact, state),
    /// in no particular order; artifacts without one are left out.
    fn notices_on(
        &mut self,
        adv: AdvIdx,
        artifacts: &[ArtIdx],
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError>;

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError>;

    /// The ids of these root causes of a record, in the same order, where
    /// they exist.
    fn root_ids(
        &mut self,
        adv: AdvIdx,
        causes: &[RootCause],
    ) -> Result<Vec<Option<i64>>, StoreError>;

    /// A root cause's owner, record and notices; `None` when `root` names
    /// none.
    fn root_members(&mut self, root: i64) -> Result<Option<RootMembers>, StoreError>;

    /// The plans of the roots whose step, `waits_for` or `onto` is one of
    /// `arts` (of record `adv` only, when given): what a change of those
    /// artifacts may change. One per (tenant, record, step, action).
    fn root_plans_near(
        &mut self,
        arts: &[ArtIdx],
        adv: Option<AdvIdx>,
    ) -> Result<Vec<RootPlan>, StoreError>;

    /// A tenant's open notices (affected, notified, acknowledged): (id,
    /// record, artifact), oldest first.
    fn open_notices_of(
        &mut self,
        tenant: TenantIdx,
    ) -> Result<Vec<(i64, AdvIdx, ArtIdx)>, StoreError>;

    /// What a digest subscription's window `[from_ms, to_ms)` holds (see
    /// [`DigestWindow`]), the first `limit` notices listed.
    fn digest_window(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<DigestWindow, StoreError>;

    /// Open notices last reminded (or created) before `before_ms`.
    fn due_reminders(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError>;
}

/// The durable delivery queue the workers drain: SQLite here, a NATS
/// JetStream work queue or PostgreSQL `SKIP LOCKED` elsewhere.
pub trait DeliveryQueue: Send {
    /// Puts back deliveries whose lease expired (the worker died).
    fn release_expired(&mut self, now_ms: i64) -> Result<usize, StoreError>;
    /// Claims up to `limit` due deliveries for `lease_ms`.
    fn claim(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records attempts (one group commit).
    fn finish(&mut self, results: &[Finished]) -> Result<(), StoreError>;
    /// Records attempts, then claims up to `limit` due deliveries; a
    /// backend may do both in one commit.
    fn finish_and_claim(
        &mut self,
        results: &[Finished],
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.finish(results)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.claim(now_ms, lease_ms, limit)
    }
    /// Dead deliveries of a subscription become pending again.
    fn replay(&mut self, subscription: &str, now_ms: i64) -> Result<usize, StoreError>;
    /// Pending work of a subscription goes to the dead letters.
    fn bury(&mut self, subscription: &str, reason: &str) -> Result<usize, StoreError>;
    /// The notices a delivery carries, by id.
    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError>;
    /// The patch notices a delivery of purpose `patch` carries, by id
    /// (oldest first; ids that do not exist are left out).
    fn patches(&mut self, ids: &[i64]) -> Result<Vec<PatchRow>, StoreError>;
    /// (root, open notices now) of these root causes.
    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError>;
    /// The groups of a digest subscription's open notices (its tenant's
    /// own), the first `limit` by root id.
    fn digest_open(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        limit: usize,
    ) -> Result<Vec<OpenGroup>, StoreError>;
    /// When the next queued delivery is due.
    fn next_due(&mut self) -> Result<Option<i64>, StoreError>;
    /// The last change committed to the deployment's change log (0 without
    /// one): what a node must have applied before it renders rows read
    /// now (the names, visibility and subscriptions they need).
    fn log_seq(&mut self) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Extends the leases of these deliveries, still in flight, to
    /// `until_ms` (their node is alive and still working on them); answers
    /// how many were extended.
    fn renew(&mut self, ids: &[i64], until_ms: i64) -> Result<usize, StoreError>;
}

/// The API's reads of notices and deliveries.
pub trait NoticeReader: Send {
    /// A tenant's notices (own and watched) after a cursor, oldest first.
    fn notices_after(
        &mut self,
        tenant: TenantIdx,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError>;
    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError>;
    /// Notices by id, oldest first; ids that do not exist are left out.
    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError>;
    /// See [`DeliveryQueue::root_open_counts`].
    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError>;
    /// A root cause's notices after a cursor, oldest first.
    fn root_notices_after(
        &mut self,
        root: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError>;
    /// Patch notices after a cursor, oldest first: one tenant's, or
    /// (`None`) every tenant's.
    fn patches_after(
        &mut self,
        tenant: Option<TenantIdx>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PatchRow>, StoreError>;
    /// (artifact kind code, state, count) of a record's notices.
    fn progress_counts(&mut self, adv: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError>;
    /// (bucket start ms, state, count) of a record's state transitions.
    fn progress_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError>;
    /// (cause, count) of a record's notices remediated now, by what
    /// remediated them (`"unknown"` for those remediated before causes
    /// were kept, or without one).
    fn remediation_counts(&mut self, adv: AdvIdx) -> Result<Vec<(String, i64)>, StoreError>;
    /// (bucket start ms, cause, count) of a record's remediations that
    /// had a cause.
    fn remediation_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError>;
    fn deliveries(
        &mut self,
        subscription: &str,
        state: Option<patchline_core::notice::DeliveryState>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError>;
    fn delivery_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Notices read through pull or a stream become `notified`.
    fn mark_notified(&mut self, ids: &[i64], at_ms: i64) -> Result<(), StoreError>;
    /// See [`DeliveryQueue::log_seq`].
    fn log_seq(&mut self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// A store chosen at run time (the embedded SQLite or PostgreSQL).
pub type DynStore = Box<dyn CatalogStore + Send>;

impl<T: CatalogStore + ?Sized> CatalogStore for Box<T> {
    fn begin_write(
        &mut self,
        catalog: &mut Catalog,
        db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        (**self).begin_write(catalog, db)
    }

    fn end_write(&mut self) {
        (**self).end_write()
    }

    fn catch_up(
        &mut self,
        catalog: &mut Catalog,
        db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        (**self).catch_up(catalog, db)
    }

    fn applied_seq(&self) -> u64 {
        (**self).applied_seq()
    }

    fn check_hold(&mut self) -> Result<(), StoreError> {
        (**self).check_hold()
    }

    fn take_budget(
        &mut self,
        key: &str,
        per_min: u32,
        now_ms: i64,
    ) -> Result<Option<f64>, StoreError> {
        (**self).take_budget(key, per_min, now_ms)
    }

    fn load(&mut self) -> Result<(Catalog, AdvisoryDb), StoreError> {
        (**self).load()
    }

    fn commit(
        &mut self,
        catalog: &Catalog,
        changes: &Changes,
        db: &AdvisoryDb,
        records: &[AdvIdx],
        outbox: &Outbox,
    ) -> Result<(), StoreError> {
        (**self).commit(catalog, changes, db, records, outbox)
    }

    fn load_service(&mut self) -> Result<ServiceState, StoreError> {
        (**self).load_service()
    }

    fn load_all(&mut self) -> Result<(Catalog, AdvisoryDb, ServiceState), StoreError> {
        (**self).load_all()
    }

    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        (**self).notices_of_advisory(adv)
    }

    fn notices_of_artifact(&mut self, a: ArtIdx) -> Result<Vec<ArtifactNotice>, StoreError> {
        (**self).notices_of_artifact(a)
    }

    fn notices_on(
        &mut self,
        adv: AdvIdx,
        artifacts: &[ArtIdx],
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        (**self).notices_on(adv, artifacts)
    }

    fn announced(&mut self, successor: ArtIdx) -> Result<Vec<(TenantIdx, AdvIdx)>, StoreError> {
        (**self).announced(successor)
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        (**self).notice(id)
    }

    fn root_ids(
        &mut self,
        adv: AdvIdx,
        causes: &[RootCause],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        (**self).root_ids(adv, causes)
    }

    fn root_members(&mut self, root: i64) -> Result<Option<RootMembers>, StoreError> {
        (**self).root_members(root)
    }

    fn root_plans_near(
        &mut self,
        arts: &[ArtIdx],
        adv: Option<AdvIdx>,
    ) -> Result<Vec<RootPlan>, StoreError> {
        (**self).root_plans_near(arts, adv)
    }

    fn digest_window(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<DigestWindow, StoreError> {
        (**self).digest_window(subscription, tenant, from_ms, to_ms, limit)
    }

    fn open_notices_of(
        &mut self,
        tenant: TenantIdx,
    ) -> Result<Vec<(i64, AdvIdx, ArtIdx)>, StoreError> {
        (**self).open_notices_of(tenant)
    }

    fn due_reminders(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        (**self).due_reminders(before_ms, limit)
    }
}
