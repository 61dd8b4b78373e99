//! What the store's suites share: the backends a test runs over (SQLite in
//! a temporary directory, PostgreSQL in a database made for the test and
//! dropped after it) and the macro that runs a test once per backend.
//!
//! PostgreSQL comes from `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets it);
//! when it is unset or the server cannot be reached, the test says so and
//! does not run, or fails in CI (`patchline_testkit::not_run`).

#![allow(dead_code)]

use patchline_store::postgres::{PgQueue, PgReader, PgStore};
use patchline_store::sqlite::SqliteStore;
use patchline_store::{CatalogStore, DeliveryQueue, NoticeReader, SecretKeys, StoreError};

/// Runs each test body once per backend: `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! each_backend {
    ($($(#[doc = $doc:literal])* fn $name:ident($b:ident: &Backend) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($b: &Backend) $body

            #[test]
            fn sqlite() {
                run(&Backend::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(b) = Backend::postgres(concat!(module_path!(), "::postgres")) {
                    run(&b);
                }
            }
        }
    )*};
}

pub use patchline_testkit::postgres::TestDb;

/// One backend's storage, fresh for one test.
#[derive(Debug)]
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres(test: &str) -> Option<Backend> {
        TestDb::create(test).map(Backend::Postgres)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub fn try_store_with(&self, keys: SecretKeys) -> Result<Box<dyn CatalogStore>, StoreError> {
        Ok(match self {
            Backend::Sqlite(dir) => Box::new(SqliteStore::open_with(dir.path(), keys)?),
            Backend::Postgres(db) => Box::new(PgStore::open(&db.url, keys)?),
        })
    }

    pub fn store_with(&self, keys: SecretKeys) -> Box<dyn CatalogStore> {
        self.try_store_with(keys).unwrap()
    }

    pub fn store(&self) -> Box<dyn CatalogStore> {
        self.store_with(SecretKeys::none())
    }

    pub fn try_queue(&self) -> Result<Box<dyn DeliveryQueue>, StoreError> {
        Ok(match self {
            Backend::Sqlite(dir) => {
                Box::new(patchline_store::service::SqliteQueue::open(dir.path())?)
            }
            Backend::Postgres(db) => Box::new(PgQueue::open(&db.url)?),
        })
    }

    pub fn queue(&self) -> Box<dyn DeliveryQueue> {
        self.try_queue().unwrap()
    }

    pub fn try_reader(&self) -> Result<Box<dyn NoticeReader>, StoreError> {
        Ok(match self {
            Backend::Sqlite(dir) => {
                Box::new(patchline_store::service::SqliteReader::open(dir.path())?)
            }
            Backend::Postgres(db) => Box::new(PgReader::open(&db.url)?),
        })
    }

    pub fn reader(&self) -> Box<dyn NoticeReader> {
        self.try_reader().unwrap()
    }

    /// One text value (or NULL) straight from the database, bypassing the
    /// store: what is really at rest.
    pub fn raw_text(&self, sql: &str) -> Option<String> {
        match self {
            Backend::Sqlite(dir) => {
                let conn =
                    rusqlite::Connection::open(dir.path().join(patchline_store::DB_FILE)).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres(db) => db.client().query_one(sql, &[]).unwrap().get(0),
        }
    }

    /// One count straight from the database.
    pub fn raw_count(&self, sql: &str) -> i64 {
        match self {
            Backend::Sqlite(dir) => {
                let conn =
                    rusqlite::Connection::open(dir.path().join(patchline_store::DB_FILE)).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Postgres(db) => db.client().query_one(sql, &[]).unwrap().get(0),
        }
    }

    /// Runs a statement straight on the database.
    pub fn raw_execute(&self, sql: &str) {
        match self {
            Backend::Sqlite(dir) => {
                let conn =
                    rusqlite::Connection::open(dir.path().join(patchline_store::DB_FILE)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Backend::Postgres(db) => db.client().batch_execute(sql).unwrap(),
        }
    }
}
