//! What only the PostgreSQL backend has to show: nodes started together
//! on an empty database migrate it once; claims of concurrent queues are
//! disjoint and never wait on each other's locks; a server on which a
//! commit would not be durable is refused; every table is logged.
//!
//! Each test makes its own database (see `support`), so they run in
//! parallel; without `PATCHLINE_TEST_POSTGRES_URL` they do not run (and
//! fail in CI).

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use patchline_core::notice::{DeliveryState, Purpose};
use patchline_store::postgres::{PgQueue, PgReader, PgStore, SCHEMA_VERSION};
use patchline_store::service::{DeliveryRow, Finished};
use patchline_store::{CatalogStore, DeliveryQueue, NoticeReader, Outbox, SecretKeys, StoreError};
use support::TestDb;

/// The tables the schema makes, every one of them logged.
const TABLES: usize = 22;

/// Eight nodes (stores, queues and readers) open one empty database at
/// the same moment: none fails, the schema is made once.
#[test]
fn concurrent_opens_migrate_once() {
    let Some(db) = TestDb::create("concurrent_opens_migrate_once") else {
        return;
    };
    const NODES: usize = 8;
    let barrier = Arc::new(Barrier::new(NODES));
    let handles: Vec<_> = (0..NODES)
        .map(|i| {
            let url = db.url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), StoreError> {
                barrier.wait();
                match i % 3 {
                    0 => drop(PgStore::open(&url, SecretKeys::none())?),
                    1 => drop(PgQueue::open(&url)?),
                    _ => drop(PgReader::open(&url)?),
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let mut client = db.client();
    let meta: Vec<(String, String)> = client
        .query("SELECT key, value FROM meta ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(meta.len(), 2, "{meta:?}");
    assert_eq!(meta[0].0, "installation");
    assert_eq!(meta[1], ("schema".to_string(), SCHEMA_VERSION.to_string()));
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables as usize, TABLES);
    // A later open finds everything in place and changes nothing.
    let mut store = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    assert_eq!(store.installation().unwrap(), meta[0].1);
}

/// Every table (and index) is logged: a crash of the server keeps what
/// was committed.
#[test]
fn no_table_is_unlogged() {
    let Some(db) = TestDb::create("no_table_is_unlogged") else {
        return;
    };
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    let mut client = db.client();
    let rows = client
        .query(
            "SELECT c.relname, c.relpersistence::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S')",
            &[],
        )
        .unwrap();
    assert!(rows.len() > TABLES);
    for r in rows {
        let (name, persistence): (String, String) = (r.get(0), r.get(1));
        assert_eq!(
            persistence, "p",
            "{name} is not a permanent, logged relation"
        );
    }
}

/// `synchronous_commit = off` or `fsync = off` would let an acknowledged
/// commit vanish: opening refuses, naming the setting.
#[test]
fn a_server_that_does_not_flush_commits_is_refused() {
    let Some(db) = TestDb::create("a_server_that_does_not_flush_commits_is_refused") else {
        return;
    };
    db.admin(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        db.name
    ));
    for err in [
        PgStore::open(&db.url, SecretKeys::none()).err(),
        PgQueue::open(&db.url).err(),
        PgReader::open(&db.url).err(),
    ] {
        let err = err.expect("refused");
        assert!(
            err.to_string().contains("synchronous_commit = off"),
            "{err}"
        );
    }
    // Nothing was created on the way.
    let tables: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    for setting in ["local", "remote_write", "on"] {
        db.admin(&format!(
            "ALTER DATABASE {} SET synchronous_commit = {setting}",
            db.name
        ));
        PgStore::open(&db.url, SecretKeys::none())
            .unwrap_or_else(|e| panic!("synchronous_commit = {setting} flushes: {e}"));
    }
}

/// A database whose stored version is not a number is not silently
/// treated as empty.
#[test]
fn an_unreadable_schema_version_is_refused() {
    let Some(db) = TestDb::create("an_unreadable_schema_version_is_refused") else {
        return;
    };
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    db.client()
        .batch_execute("UPDATE meta SET value = 'two' WHERE key = 'schema'")
        .unwrap();
    let err = PgStore::open(&db.url, SecretKeys::none()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

fn queue_deliveries(db: &TestDb, n: i64) {
    let mut store = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let (catalog, adv) = store.load().unwrap();
    let deliveries = (1..=n)
        .map(|id| DeliveryRow {
            id,
            subscription: format!("sub_{}", id % 5),
            purpose: Purpose::Notice,
            notices: vec![id],
            next_at_ms: 1000 + id % 17,
            at_ms: 100,
            dead: false,
        })
        .collect();
    store
        .commit(
            &catalog,
            &Default::default(),
            &adv,
            &[],
            &Outbox {
                deliveries,
                ..Default::default()
            },
        )
        .unwrap();
}

/// Four queues on four connections claim at once until nothing is left:
/// every delivery is claimed exactly once.
#[test]
fn concurrent_claims_are_disjoint() {
    let Some(db) = TestDb::create("concurrent_claims_are_disjoint") else {
        return;
    };
    const DELIVERIES: i64 = 400;
    const WORKERS: usize = 4;
    queue_deliveries(&db, DELIVERIES);
    let barrier = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (0..WORKERS)
        .map(|_| {
            let url = db.url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut q = PgQueue::open(&url).unwrap();
                barrier.wait();
                let mut got = Vec::new();
                loop {
                    let claimed = q.claim(5000, 600_000, 7).unwrap();
                    if claimed.is_empty() {
                        // Rows another worker holds right now are skipped:
                        // stop only when nothing at all is due.
                        if q.next_due().unwrap().is_none() {
                            break;
                        }
                        continue;
                    }
                    got.extend(claimed.into_iter().map(|c| c.id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(unique, (1..=DELIVERIES).collect::<HashSet<_>>());
}

/// A claim skips rows another transaction holds instead of waiting for
/// it: with deliveries 1 and 2 locked elsewhere, a claim answers at once
/// with the others, and takes 1 and 2 once they are free.
#[test]
fn claims_skip_locked_rows_without_waiting() {
    let Some(db) = TestDb::create("claims_skip_locked_rows_without_waiting") else {
        return;
    };
    queue_deliveries(&db, 6);
    let mut holder = db.client();
    let mut tx = holder.transaction().unwrap();
    tx.execute(
        "SELECT id FROM deliveries WHERE id IN (1, 2) FOR UPDATE",
        &[],
    )
    .unwrap();
    // The claim runs on its own thread: if it waited for the locks held
    // here, the test fails after a timeout instead of hanging.
    let url = db.url.clone();
    let (send, answers) = std::sync::mpsc::channel();
    let claimer = std::thread::spawn(move || {
        let mut q = PgQueue::open(&url).unwrap();
        let first: Vec<i64> = q
            .claim(5000, 60_000, 10)
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        send.send(first).unwrap();
        q
    });
    let first = answers
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the claim waited for rows another transaction holds");
    assert_eq!(first, vec![3, 4, 5, 6]);
    let mut q = claimer.join().unwrap();
    tx.rollback().unwrap();
    let ids: Vec<i64> = q
        .claim(5000, 60_000, 10)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
}

/// The server ends every session (a restart, an administrator): the call
/// that meets the closed connection fails, the next one reconnects —
/// except a reader's reads, which are made again at once on a new
/// connection (run twice, a read answers the same).
#[test]
fn a_closed_connection_is_made_again() {
    let Some(db) = TestDb::create("a_closed_connection_is_made_again") else {
        return;
    };
    let mut store = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let mut queue = PgQueue::open(&db.url).unwrap();
    let mut reader = PgReader::open(&db.url).unwrap();
    let before = store.installation().unwrap();
    let end_every_session = || {
        db.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    end_every_session();
    let _ = store.installation();
    assert_eq!(store.installation().unwrap(), before);
    let _ = queue.next_due();
    assert_eq!(queue.next_due().unwrap(), None);
    assert_eq!(reader.delivery_counts().unwrap(), vec![]);
    // Again, every read of the reader.
    end_every_session();
    assert_eq!(reader.notice(1).unwrap(), None);
}

/// A load while another node commits sees each batch wholly or not at
/// all (one snapshot), never an artifact whose tenant it did not load.
#[test]
fn loads_see_one_moment() {
    use patchline_core::{Actor, ArtifactId, ArtifactSpec, Kind, Mode, TenantId, Visibility};
    let Some(db) = TestDb::create("loads_see_one_moment") else {
        return;
    };
    const BATCHES: usize = 60;
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    let url = db.url.clone();
    let writer = std::thread::spawn(move || {
        let mut store = PgStore::open(&url, SecretKeys::none()).unwrap();
        let (mut catalog, adv) = store.load().unwrap();
        for i in 0..BATCHES {
            let spec = ArtifactSpec {
                id: ArtifactId::new(format!("img-{i}")).unwrap(),
                kind: Kind::Image,
                tenant: TenantId::new(format!("tenant-{i}")).unwrap(),
                name: None,
                parent: None,
                relation: None,
                visibility: Visibility::Public,
                labels: Default::default(),
                components: Some(vec![format!("pkg:generic/component-{i}@1.0")]),
                supersedes: None,
                fixes: vec![],
                warnings: Vec::new(),
            };
            catalog.apply(&spec, Mode::Create, &Actor::Admin).unwrap();
            let changes = catalog.take_changes();
            store
                .commit(&catalog, &changes, &adv, &[], &Default::default())
                .unwrap();
        }
    });
    let mut store = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let mut loads = 0;
    loop {
        let done = writer.is_finished();
        let (catalog, _) = store.load().expect("a consistent snapshot");
        assert_eq!(catalog.tenants().len(), catalog.len());
        loads += 1;
        if done {
            assert_eq!(catalog.len(), BATCHES);
            break;
        }
    }
    writer.join().unwrap();
    assert!(loads > 1);
}

/// One node per database: a second [`NodeLock`] is refused while the first
/// holds it; when the first's lock session is lost and another node takes
/// the database, the first's fenced store writes nothing and the first is
/// told it lost its hold.
#[test]
fn a_lost_node_hold_writes_nothing() {
    use patchline_store::postgres::NodeLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(db) = TestDb::create("a_lost_node_hold_writes_nothing") else {
        return;
    };
    let lost = Arc::new(AtomicBool::new(false));
    let flag = lost.clone();
    let first = NodeLock::acquire(&db.url, move |why| {
        assert!(why.contains("another patchline node took"), "{why}");
        flag.store(true, Ordering::SeqCst);
    })
    .unwrap();
    let mut store = PgStore::open(&db.url, SecretKeys::none())
        .unwrap()
        .fenced(&first);
    let (catalog, advisories) = store.load().unwrap();
    let empty_commit = |store: &mut PgStore| {
        store.commit(
            &catalog,
            &Default::default(),
            &advisories,
            &[],
            &Outbox::default(),
        )
    };
    empty_commit(&mut store).unwrap();
    store.check_hold().unwrap();

    match NodeLock::acquire(&db.url, |_| {}) {
        Err(StoreError::Busy(why)) => assert!(
            why.contains("another patchline node is serving the PostgreSQL database"),
            "{why}"
        ),
        other => panic!("a second node was not refused: {other:?}"),
    }

    // The first node's lock session dies (a network cut, an administrator)
    // and a second node takes the database before the watcher notices.
    let mut admin = db.client();
    let ended: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
             JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND d.datname = current_database() AND l.pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);
    let mut second = None;
    for _ in 0..100 {
        if let Ok(l) = NodeLock::acquire(&db.url, |_| {}) {
            second = Some(l);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _second = second.expect("the second node takes the database");
    // Readiness says so before any write is tried.
    let err = store.check_hold().unwrap_err();
    assert!(err.to_string().contains("does not hold"), "{err}");
    let err = empty_commit(&mut store).unwrap_err();
    assert!(err.to_string().contains("does not hold"), "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !lost.load(Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first node was not told it lost its hold"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(first);
}

/// A commit of a store that did not catch up with the change log (it lost
/// the write lock, or never took it) is refused whole: another node's
/// change is never overwritten. After catching up under the lock, the
/// same write commits as the next change.
#[test]
fn a_node_behind_the_change_log_cannot_commit_over_it() {
    use patchline_core::{Actor, ArtifactId, ArtifactSpec, Kind, Mode, TenantId, Visibility};
    let Some(db) = TestDb::create("a_node_behind_the_change_log_cannot_commit_over_it") else {
        return;
    };
    let spec = |id: &str| ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind: Kind::Image,
        tenant: TenantId::new("acme").unwrap(),
        name: None,
        parent: None,
        relation: None,
        visibility: Visibility::Public,
        labels: Default::default(),
        components: Some(vec![format!("pkg:generic/{id}@1.0")]),
        supersedes: None,
        fixes: vec![],
        warnings: Vec::new(),
    };
    let mut a = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let mut b = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let (mut cat_a, mut adv_a) = a.load().unwrap();
    let (mut cat_b, adv_b) = b.load().unwrap();

    a.begin_write(&mut cat_a, &mut adv_a).unwrap();
    cat_a
        .apply(&spec("from-a"), Mode::Create, &Actor::Admin)
        .unwrap();
    let changes = cat_a.take_changes();
    a.commit(&cat_a, &changes, &adv_a, &[], &Outbox::default())
        .unwrap();
    a.end_write();
    assert_eq!(a.applied_seq(), 1);

    // B writes without catching up: its artifact would take A's index.
    cat_b
        .apply(&spec("from-b"), Mode::Create, &Actor::Admin)
        .unwrap();
    let changes = cat_b.take_changes();
    let err = b
        .commit(&cat_b, &changes, &adv_b, &[], &Outbox::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let ids: Vec<String> = db
        .client()
        .query("SELECT id FROM artifacts ORDER BY idx", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["from-a"]);

    // Under the lock B first applies A's change, then writes after it.
    let (mut cat_b, mut adv_b) = b.load().unwrap();
    b.begin_write(&mut cat_b, &mut adv_b).unwrap();
    assert!(cat_b.lookup("from-a").is_some());
    cat_b
        .apply(&spec("from-b"), Mode::Create, &Actor::Admin)
        .unwrap();
    let changes = cat_b.take_changes();
    b.commit(&cat_b, &changes, &adv_b, &[], &Outbox::default())
        .unwrap();
    b.end_write();
    let caught = a.catch_up(&mut cat_a, &mut adv_a).unwrap().unwrap();
    assert_eq!(caught.seq, 2);
    assert_eq!(caught.changes.artifacts.len(), 1);
    assert!(cat_a.lookup("from-b").is_some());
}

/// One writer at a time: a node's `begin_write` waits while another holds
/// the deployment's write lock, and goes on as soon as it is released.
#[test]
fn the_write_lock_lets_one_node_write_at_a_time() {
    let Some(db) = TestDb::create("the_write_lock_lets_one_node_write_at_a_time") else {
        return;
    };
    let mut a = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let (mut cat_a, mut adv_a) = a.load().unwrap();
    a.begin_write(&mut cat_a, &mut adv_a).unwrap();
    let url = db.url.clone();
    let waiter = std::thread::spawn(move || {
        let mut b = PgStore::open(&url, SecretKeys::none()).unwrap();
        let (mut cat_b, mut adv_b) = b.load().unwrap();
        let started = std::time::Instant::now();
        b.begin_write(&mut cat_b, &mut adv_b).unwrap();
        let waited = started.elapsed();
        b.end_write();
        waited
    });
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(!waiter.is_finished(), "a second writer did not wait");
    a.end_write();
    let waited = waiter.join().unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(400),
        "{waited:?}"
    );
}

/// Nodes of a deployment share the database with each other only: a node
/// without a bus is refused beside them (and they beside it), and a node
/// of a deployment with another bus prefix is refused (found from outside:
/// a node started without `--bus` on a deployment's database ran beside it
/// and kept honouring tokens revoked on the others).
#[test]
fn a_database_serves_one_deployment() {
    use patchline_store::postgres::NodeLock;
    let Some(db) = TestDb::create("a_database_serves_one_deployment") else {
        return;
    };
    let first = NodeLock::acquire_shared(&db.url, |_| {}).unwrap();
    let second = NodeLock::acquire_shared(&db.url, |_| {}).unwrap();
    match NodeLock::acquire(&db.url, |_| {}) {
        Err(StoreError::Busy(why)) => {
            assert!(
                why.contains("with the same --bus and --bus-prefix"),
                "{why}"
            )
        }
        other => panic!("a node without a bus was let in: {other:?}"),
    }
    drop((first, second));
    // The holds go with their sessions (closed by the watchers' threads).
    let mut alone = None;
    for _ in 0..100 {
        if let Ok(l) = NodeLock::acquire(&db.url, |_| {}) {
            alone = Some(l);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let alone = alone.expect("the database is free once the deployment is gone");
    match NodeLock::acquire_shared(&db.url, |_| {}) {
        Err(StoreError::Busy(why)) => assert!(why.contains("without a bus"), "{why}"),
        other => panic!("a deployment's node was let in beside a lone node: {other:?}"),
    }
    drop(alone);

    let mut store = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    store.join_deployment("prod").unwrap();
    store.join_deployment("prod").unwrap();
    match store.join_deployment("staging") {
        Err(StoreError::Busy(why)) => {
            assert!(
                why.contains("\"prod\"") && why.contains("\"staging\""),
                "{why}"
            )
        }
        other => panic!("another deployment joined: {other:?}"),
    }
}

/// A node waits for the write lock at most `lock_timeout` (60 s unless the
/// operator set one; here 1 s through the URL), then answers unavailable:
/// a node holding the lock too long never stalls the others for ever.
#[test]
fn a_write_waits_for_the_lock_at_most_the_lock_timeout() {
    let Some(db) = TestDb::create("a_write_waits_for_the_lock_at_most_the_lock_timeout") else {
        return;
    };
    let mut a = PgStore::open(&db.url, SecretKeys::none()).unwrap();
    let (mut cat_a, mut adv_a) = a.load().unwrap();
    a.begin_write(&mut cat_a, &mut adv_a).unwrap();
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let impatient = format!("{}{sep}options=-c%20lock_timeout%3D1s", db.url);
    let mut b = PgStore::open(&impatient, SecretKeys::none()).unwrap();
    let (mut cat_b, mut adv_b) = b.load().unwrap();
    let started = std::time::Instant::now();
    let err = b.begin_write(&mut cat_b, &mut adv_b).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("lock timeout"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    b.end_write();
    a.end_write();
    // Released: B takes it at once.
    b.begin_write(&mut cat_b, &mut adv_b).unwrap();
    b.end_write();
}

/// An endpoint that accepts connections and never speaks (a wedged proxy)
/// is reported within the connect time-out and its grace, instead of
/// holding the caller for ever (found from outside: `serve --store` hung
/// at start without a word).
#[test]
fn a_silent_endpoint_is_unavailable_within_the_time_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        // Accept and keep the connections, answering nothing.
        let mut kept = Vec::new();
        for c in listener.incoming().take(1) {
            kept.push(c);
        }
        std::thread::sleep(std::time::Duration::from_secs(10));
        drop(kept);
    });
    let url = format!("postgres://u:S3cretPW@127.0.0.1:{port}/db?connect_timeout=1");
    let started = std::time::Instant::now();
    let err = PgStore::open(&url, SecretKeys::none()).unwrap_err();
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("no answer within"), "{message}");
    assert!(!message.contains("S3cretPW"), "{message}");
    drop(held);
}

/// The size of each index of `table`, by name.
fn index_sizes(client: &mut postgres::Client, table: &str) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
             FROM pg_index WHERE indrelid = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Marking delivered notices `notified` (what every delivery does to each
/// notice it carries) writes no index entry: the update is HOT, so it
/// neither grows the indexes of `notices` nor writes their WAL (schema
/// 10). Each index of the table keeps its size while 2,000 notices are
/// marked; with `state` in an index predicate, or with full pages, each
/// index would take 2,000 more entries.
#[test]
fn marking_notices_notified_writes_no_index_entry() {
    let Some(db) = TestDb::create("marking_notices_notified_writes_no_index_entry") else {
        return;
    };
    const NOTICES: i64 = 2000;
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    let mut client = db.client();
    client
        .batch_execute(&format!(
            "INSERT INTO notice_groups (id, advisory, components) VALUES (1, 0, '[]');
             INSERT INTO notices (id, advisory, artifact, tenant, state, grp, path,
                                  created_at, updated_at, reminded_at)
             SELECT g, 0, g, 1, 'affected', 1, '\\x0100', 0, 0, 0
             FROM generate_series(1, {NOTICES}) g"
        ))
        .unwrap();
    let sizes = |client: &mut postgres::Client| index_sizes(client, "notices");
    let before = sizes(&mut client);
    assert!(before.len() >= 5, "{before:?}");
    let mut q = PgQueue::open(&db.url).unwrap();
    q.finish(&[Finished {
        id: 1,
        claim: 0,
        state: DeliveryState::Delivered,
        status: Some(204),
        error: None,
        next_at_ms: 0,
        at_ms: 5000,
        notices: (1..=NOTICES).collect(),
    }])
    .unwrap();
    let notified: i64 = client
        .query_one(
            "SELECT count(*) FROM notices WHERE state = 'notified' AND updated_at = 5000",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(notified, NOTICES);
    assert_eq!(sizes(&mut client), before, "an index took new entries");
}

/// A claim never reads the rows other claims hold (schema 13): a claim
/// dates the rows it leases due at the lease's end, so the due index lists
/// only what is due. With 2,000 deliveries leased (what a few nodes hold
/// in flight), a claim of the next 10 reads about as many rows; when a
/// claim wrote only the lease (schema 11), it stepped over all 2,000 at
/// the head of the index, on every node, at every claim. The leased rows
/// read back as in flight, a claim made before their lease runs out finds
/// none of them, and they are due again when it does.
#[test]
fn a_claim_reads_no_row_another_claim_holds() {
    let Some(db) = TestDb::create("a_claim_reads_no_row_another_claim_holds") else {
        return;
    };
    const LEASED: i64 = 2000;
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    let mut client = db.client();
    let queue = |client: &mut postgres::Client, from: i64, to: i64| {
        client
            .batch_execute(&format!(
                "INSERT INTO deliveries (id, subscription, purpose, notices, state, next_at, created_at)
                 SELECT g, 'sub_' || (g % 7), 'notice', ARRAY[g], 'pending', g, 0
                 FROM generate_series({from}, {to}) g"
            ))
            .unwrap()
    };
    queue(&mut client, 1, LEASED);
    let mut holder = PgQueue::open(&db.url).unwrap();
    let mut claimed = 0;
    loop {
        let c = holder.claim(LEASED + 1, 60_000, 256).unwrap();
        if c.is_empty() {
            break;
        }
        claimed += c.len() as i64;
    }
    assert_eq!(claimed, LEASED);
    queue(&mut client, LEASED + 1, LEASED + 10);
    // Rows read through an index of `deliveries`, as PostgreSQL counts
    // them: a session reports its counts when it ends.
    let fetched = |client: &mut postgres::Client| -> i64 {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .unwrap();
        client
            .query_one(
                "SELECT coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname = 'deliveries'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    drop(holder);
    // The holder's counts arrive when its session has ended: wait until
    // they are in and stay put.
    let mut before = fetched(&mut client);
    let mut steady = 0;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = fetched(&mut client);
        steady = if now == before && now > 0 {
            steady + 1
        } else {
            0
        };
        before = now;
        if steady == 5 {
            break;
        }
    }
    assert_eq!(steady, 5, "the holder's reads were never reported");
    let mut next = PgQueue::open(&db.url).unwrap();
    let c = next.claim(LEASED + 20, 60_000, 10).unwrap();
    assert_eq!(
        c.iter().map(|c| c.id).collect::<Vec<_>>(),
        (LEASED + 1..=LEASED + 10).collect::<Vec<_>>()
    );
    drop(next);
    let mut read = 0;
    for _ in 0..150 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        read = fetched(&mut client) - before;
        if read > 0 {
            break;
        }
    }
    assert!(read > 0, "the claim's reads were never reported");
    assert!(
        read < 200,
        "a claim of 10 read {read} rows through the indexes: it stepped over the {LEASED} leased ones"
    );
    let mut reader = PgReader::open(&db.url).unwrap();
    assert_eq!(
        reader.delivery_counts().unwrap(),
        vec![("in_flight".to_string(), LEASED + 10)]
    );
    let mut q = PgQueue::open(&db.url).unwrap();
    assert!(q.claim(LEASED + 1000, 60_000, 10).unwrap().is_empty());
    // Every queued row is leased; a claim takes the rows whose lease ran
    // out.
    assert_eq!(q.next_due().unwrap(), None);
    let again = q.claim(LEASED + 2 + 60_000, 60_000, 5000).unwrap();
    assert_eq!(again.len() as i64, claimed);
}

/// A node that stalled past its lease (frozen, swapping, a drain longer
/// than the lease) does not overwrite the result of the node that claimed
/// the delivery after it (found from outside: 18 delivered rows turned
/// back into `failed` and were sent a third time, or `dead`). Node A
/// claims, its lease runs out, node B claims and delivers; A's late
/// failure is dropped, and the row stays delivered with B's status.
#[test]
fn a_late_result_does_not_overwrite_a_later_claim() {
    let Some(db) = TestDb::create("a_late_result_does_not_overwrite_a_later_claim") else {
        return;
    };
    drop(PgStore::open(&db.url, SecretKeys::none()).unwrap());
    db.client()
        .batch_execute(
            "INSERT INTO deliveries (id, subscription, purpose, notices, state, next_at, created_at)
             VALUES (1, 'sub_a', 'notice', '{}', 'pending', 0, 0)",
        )
        .unwrap();
    let mut a = PgQueue::open(&db.url).unwrap();
    let mut b = PgQueue::open(&db.url).unwrap();
    let by_a = a.claim(1000, 100, 10).unwrap();
    assert_eq!(by_a.len(), 1);
    // A's lease (until 1100) runs out; B claims the delivery again.
    let by_b = b.claim(2000, 100, 10).unwrap();
    assert_eq!(by_b.len(), 1);
    assert!(by_b[0].claim > by_a[0].claim, "{by_a:?} {by_b:?}");
    let result = |c: &patchline_store::Claimed, state, status, at_ms| Finished {
        id: c.id,
        claim: c.claim,
        state,
        status: Some(status),
        error: None,
        next_at_ms: at_ms + 5000,
        at_ms,
        notices: Vec::new(),
    };
    b.finish(&[result(&by_b[0], DeliveryState::Delivered, 204, 2050)])
        .unwrap();
    a.finish(&[result(&by_a[0], DeliveryState::Dead, 500, 2100)])
        .unwrap();
    let row = db
        .client()
        .query_one(
            "SELECT state, last_status, delivered_at, attempts FROM deliveries WHERE id = 1",
            &[],
        )
        .unwrap();
    let state: String = row.get(0);
    let status: Option<i64> = row.get(1);
    let delivered_at: Option<i64> = row.get(2);
    let attempts: i64 = row.get(3);
    assert_eq!(
        (state.as_str(), status, delivered_at, attempts),
        ("delivered", Some(204), Some(2050), 1)
    );
}
