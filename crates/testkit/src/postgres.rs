//! A PostgreSQL database of its own for each test, from the server named by
//! `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets it).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The URL of the test server, or `None` after [`patchline_testkit::not_run`].
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("PATCHLINE_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            crate::not_run(
                test,
                "PATCHLINE_TEST_POSTGRES_URL is not set (a PostgreSQL server for the tests, \
                 e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            None
        }
    }
}

/// `url` with its database replaced by `db` (the query string kept);
/// `None` when `url` is not of the form `SCHEME://…`.
pub fn with_database(url: &str, db: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
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
    Some(out)
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
                crate::not_run(
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
            url: with_database(&admin_url, &name).expect("a postgres:// URL"),
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
