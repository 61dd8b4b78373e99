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
use patchline_core::{AdvIdx, AdvisoryDb, ArtIdx, Catalog, Changes};
pub use secrets::SecretKeys;
pub use service::{Claimed, DeliveryInfo, Finished, Outbox, ServiceState, StoredNotice};
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
    /// Another process holds what this one needs (a PostgreSQL database
    /// served by another node).
    #[error("{0}")]
    Busy(String),
}

/// What a backend must do.
pub trait CatalogStore {
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

    /// Every notice of a record: (notice id, artifact, state).
    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError>;

    /// Every notice about an artifact: (notice id, record, state).
    fn notices_of_artifact(
        &mut self,
        a: ArtIdx,
    ) -> Result<Vec<(i64, AdvIdx, NoticeState)>, StoreError>;

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError>;

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
    /// When the next queued delivery is due.
    fn next_due(&mut self) -> Result<Option<i64>, StoreError>;
}

/// The API's reads of notices and deliveries.
pub trait NoticeReader: Send {
    /// A tenant's notices (own and watched) after a cursor, oldest first.
    fn notices_after(
        &mut self,
        tenant: patchline_core::TenantIdx,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError>;
    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError>;
    /// Notices by id, oldest first; ids that do not exist are left out.
    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError>;
    /// (artifact kind code, state, count) of a record's notices.
    fn progress_counts(&mut self, adv: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError>;
    /// (bucket start ms, state, count) of a record's state transitions.
    fn progress_history(
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
}

/// A store chosen at run time (the embedded SQLite or PostgreSQL).
pub type DynStore = Box<dyn CatalogStore + Send>;

impl<T: CatalogStore + ?Sized> CatalogStore for Box<T> {
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

    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        (**self).notices_of_advisory(adv)
    }

    fn notices_of_artifact(
        &mut self,
        a: ArtIdx,
    ) -> Result<Vec<(i64, AdvIdx, NoticeState)>, StoreError> {
        (**self).notices_of_artifact(a)
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        (**self).notice(id)
    }

    fn due_reminders(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        (**self).due_reminders(before_ms, limit)
    }
}
