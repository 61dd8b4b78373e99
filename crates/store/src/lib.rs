//! Persistence of the catalog and of advisories and failures. The
//! [`CatalogStore`] trait is what the rest of patchline sees; SQLite in the
//! data directory ([`sqlite::SqliteStore`]) is the embedded default, and other
//! backends implement the same trait and run the same conformance suite
//! (`tests/conformance.rs`).
//!
//! The in-memory [`Catalog`] is the working copy; the store keeps it durable:
//! `load` rebuilds it exactly, `commit` writes one batch of changes in one
//! transaction, so a batch is either wholly stored or not at all.

pub mod sqlite;

use patchline_core::{AdvIdx, AdvisoryDb, Catalog, Changes};
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
    #[error("the stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(
        "the database was written by a newer patchline (schema {found}, this build knows {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

/// What a backend must do.
pub trait CatalogStore {
    /// Rebuilds the catalog and the advisory database.
    fn load(&mut self) -> Result<(Catalog, AdvisoryDb), StoreError>;

    /// Writes one batch in one transaction: the catalog's `changes` and
    /// the `records` (advisories, failures) that were published.
    fn commit(
        &mut self,
        catalog: &Catalog,
        changes: &Changes,
        db: &AdvisoryDb,
        records: &[AdvIdx],
    ) -> Result<(), StoreError>;
}
