//! What the store's suites share: the backends a test runs over (SQLite in
//! a temporary directory, PostgreSQL in a database made for the test and
//! dropped after it) and the macro that runs a test once per backend.
//!
//! PostgreSQL comes from `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets it);
//! when it is unset or the server cannot be reached, the test says so and
//! does not run, or fails in CI (`patchline_testkit::not_run`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The URL of the test server, or `None` after [`patchline_testkit::not_run`].
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("PATCHLINE_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            patchline_testkit::not_run(
                test,
                "PATCHLINE_TEST_POSTGRES_URL is not set (a PostgreSQL server for the tests, \
                 e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            None
        }
    }
}

/// `url` with its database replaced by `db` (the query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A database made for one test (`patchline_t_<pid>_<n>`), dropped when
/// the guard is, even when the test failed.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl TestDb {
    /// A fresh, empty database, or `None` after `not_run` (no URL, or the
    /// server is not there).
    pub fn create(test: &str) -> Option<TestDb> {
        let admin_url = postgres_url(test)?;
        let name = format!(
            "patchline_t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = match postgres::Client::connect(&admin_url, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                patchline_testkit::not_run(
                    test,
                    &format!(
                        "cannot reach PostgreSQL (PATCHLINE_TEST_POSTGRES_URL): {e}{}",
                        std::error::Error::source(&e)
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    ),
                );
                return None;
            }
        };
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// A plain connection, for what the traits do not show.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// Runs SQL as the administrator (e.g. `ALTER DATABASE`).
    pub fn admin(&self, sql: &str) {
        let mut admin = postgres::Client::connect(&self.admin_url, postgres::NoTls).unwrap();
        admin.batch_execute(sql).unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

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
