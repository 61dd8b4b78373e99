//! The service on a PostgreSQL store when the database goes away: requests
//! answer 503 `busy` (not 500), and a write that could not be committed
//! leaves nothing behind in memory — found from outside: an artifact
//! created while the database refused connections was answered from memory
//! afterwards (and its identical re-creation answered 200) although it was
//! never stored.
//!
//! The database comes from `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets
//! it); without it the test fails in CI and says NOT RUN elsewhere.

mod common;

use common::{Api, VULNERABLE};
use patchline_testkit::postgres::TestDb;
use serde_json::json;

/// The PostgreSQL client blocks on a runtime of its own: the database is
/// set up and dropped outside the test's runtime, and its calls inside it
/// run on a thread of their own ([`sync`]).
#[test]
fn a_write_the_database_refused_leaves_nothing_behind() {
    let Some(db) = TestDb::create("a_write_the_database_refused_leaves_nothing_behind") else {
        return;
    };
    let url = db.url.clone();
    let api = Api::with(move |c| c.store = patchline_server::StoreBackend::Postgres { url });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(refused_write(&db, &api));
}

async fn refused_write(db: &TestDb, api: &Api) {
    let canonical = api.tenant("canonical", &["publisher"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;

    // The database refuses connections and the server's are cut.
    sync(|| {
        db.admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' \
             AND pid <> pg_backend_pid()",
            db.name, db.name
        ))
    });
    let ghost = json!({"id": "ghost", "kind": "image", "parent": "base"});
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&canonical),
            Some(ghost.clone()),
        )
        .await;
    assert_eq!(s.as_u16(), 503, "{v}");
    assert_eq!(v["error"]["code"], "busy", "{v}");
    let (s, v) = api
        .call("GET", "/v1/artifacts/ghost", Some(&canonical), None)
        .await;
    // The write was refused before it touched the memory (its first step,
    // catching up with the store, failed): the memory holds only what is
    // stored, and the artifact is not there.
    assert_eq!(
        s.as_u16(),
        404,
        "answered from a memory ahead of the store: {v}"
    );
    let (s, _) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(s.as_u16(), 503);

    // Back: the write never happened, and making it again stores it.
    sync(|| {
        db.admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
    });
    let (s, v) = api
        .call("GET", "/v1/artifacts/ghost", Some(&canonical), None)
        .await;
    assert_eq!(s.as_u16(), 404, "{v}");
    // The node takes its hold on the database again within seconds (its
    // lock connection was cut too); until then writes answer 503.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (s, v) = api
            .call(
                "POST",
                "/v1/artifacts",
                Some(&canonical),
                Some(ghost.clone()),
            )
            .await;
        if s.as_u16() == 201 {
            break;
        }
        assert_eq!(s.as_u16(), 503, "{v}");
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let stored: i64 = sync(|| {
        db.client()
            .query_one("SELECT count(*) FROM artifacts WHERE id = 'ghost'", &[])
            .unwrap()
            .get(0)
    });
    assert_eq!(stored, 1);
    let (s, _) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(s.as_u16(), 200);
}

/// Runs `f` on a thread of its own, outside the test's runtime.
fn sync<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}
