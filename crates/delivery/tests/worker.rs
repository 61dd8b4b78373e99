//! The worker on its explicit context alone — no engine, no server: a
//! SQLite store seeded with one notice and its delivery, a delivery view
//! set by hand, a host that records what it is asked, and a local receiver
//! answering a scripted status. (The worker's state machine through the
//! whole service is tested in `crates/server/tests/worker.rs`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchline_core::notice::{DeliveryState, NoticeState, Purpose, SubscriptionState};
use patchline_core::{
    Actor, AdvIdx, ArtifactId, ArtifactSpec, Clock as _, Kind, Mode, SystemClock, TenantId,
    Visibility,
};
use patchline_delivery::routing::{Filter, SecretEntry, Subscription};
use patchline_delivery::view::{ArtifactFacts, RecordFacts};
use patchline_delivery::worker::{DeliveryMetrics, Host, QueueFactory, Worker, WorkerConfig};
use patchline_delivery::{DeliveryView, GroupDoc, GroupEntry};
use patchline_store::service::{DeliveryRow, GroupRow, NoticeRow, SqliteQueue, SqliteReader};
use patchline_store::sqlite::SqliteStore;
use patchline_store::{CatalogStore, DeliveryQueue, NoticeReader, Outbox, StoreError};
use patchline_webhook::{Policy, Schedule, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the receiver got: (request head, body).
type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The value of `line` if it is the header `name` (any case).
fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, v) = line.split_once(':')?;
    n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

/// A receiver on 127.0.0.1 answering every request with `status`.
async fn receiver(status: u16) -> (String, Got) {
    receiver_paced(status, Duration::ZERO).await
}

/// [`receiver`], answering one request after the other, each `pause`
/// after it arrived.
async fn receiver_paced(status: u16, pause: Duration) -> (String, Got) {
    let got: Got = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let record = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| header_value(l, "content-length"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break (head, buf[end + 4..end + 4 + length].to_vec());
                }
            };
            record.lock().unwrap().push((head, body));
            tokio::time::sleep(pause).await;
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    (url, got)
}

#[derive(Debug, Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    gone: AtomicU64,
    rounds: AtomicU64,
}

impl DeliveryMetrics for Counts {
    fn attempt_seconds(&self, _: f64) {}
    fn delivered(&self, _: Option<f64>) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    fn dead(&self) {
        self.dead.fetch_add(1, Ordering::Relaxed);
    }
    fn gone(&self) {
        self.gone.fetch_add(1, Ordering::Relaxed);
    }
    fn reminded(&self, _: u64) {}
    fn round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// A host that records the subscriptions it was told are gone.
#[derive(Debug, Default, Clone)]
struct Recorder {
    gone: Arc<Mutex<Vec<String>>>,
}

impl Host for Recorder {
    async fn caught_up_to(&self, _: u64) -> bool {
        true
    }

    async fn endpoint_gone(&self, subscription: String) {
        self.gone.lock().unwrap().push(subscription);
    }
}

/// Delivery `id` of notice 1 to acme's webhook, due at `now`.
fn acme_delivery(id: i64, now: i64) -> DeliveryRow {
    DeliveryRow {
        id,
        subscription: "sub_acme".into(),
        purpose: Purpose::Notice,
        notices: vec![1],
        next_at_ms: now,
        at_ms: now,
        dead: false,
    }
}

struct World {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    worker: Arc<Worker<Recorder>>,
    counts: Arc<Counts>,
    secret: String,
}

/// One private instance of acme's with one notice, its group stored as
/// the versioned document, and one delivery of it to acme's webhook at
/// `url`; the view knows the names and the webhook.
fn world(url: &str) -> World {
    world_with(url, |_| {})
}

/// [`world`], with the worker's settings changed by `configure`.
fn world_with(url: &str, configure: impl FnOnce(&mut WorkerConfig)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut store = SqliteStore::open(&data).unwrap();
    let (mut catalog, db) = store.load().unwrap();
    let spec = ArtifactSpec {
        id: ArtifactId::new("acme-vm").unwrap(),
        kind: Kind::Instance,
        tenant: TenantId::new("acme").unwrap(),
        name: None,
        parent: None,
        relation: None,
        visibility: Visibility::Private,
        labels: Default::default(),
        components: None,
        fixes: vec![],
        supersedes: None,
        warnings: Vec::new(),
    };
    catalog.apply(&spec, Mode::Create, &Actor::Admin).unwrap();
    let vm = catalog.lookup("acme-vm").unwrap();
    let acme = catalog.node(vm).tenant;
    let secret = Secret::generate().to_string();
    let subscription = Subscription {
        id: "sub_acme".into(),
        tenant: acme,
        channel: patchline_core::notice::Channel::Webhook { url: url.into() },
        filter: Filter::default(),
        secrets: vec![SecretEntry {
            secret: secret.clone(),
            not_after_ms: None,
        }],
        state: SubscriptionState::Active,
        rate_per_s: 10,
        created_at_ms: 0,
        grouping: patchline_core::notice::Grouping::Artifact,
        digest: None,
    };
    let now = SystemClock.now_ms();
    let outbox = Outbox {
        subscriptions: vec![subscription.to_row()],
        groups: vec![GroupRow {
            id: 1,
            advisory: AdvIdx(0),
            components: GroupDoc {
                components: vec![GroupEntry {
                    purl: Some("pkg:deb/debian/libssl3@3.0.11".into()),
                    introduced_by: vm.0,
                    fixed: Some("3.0.12".into()),
                }],
            }
            .to_stored(),
        }],
        notices: vec![NoticeRow {
            id: 1,
            advisory: AdvIdx(0),
            artifact: vm,
            tenant: acme,
            state: NoticeState::Affected,
            group: 1,
            path: vec![vm.0],
            at_ms: now,
            root: None,
        }],
        deliveries: vec![acme_delivery(1, now)],
        ..Default::default()
    };
    let changes = catalog.take_changes();
    store.commit(&catalog, &changes, &db, &[], &outbox).unwrap();
    drop(store);
    let view = DeliveryView::new();
    view.update_names(|names| {
        names.set_tenant(acme, "acme");
        names.set_artifact(
            vm,
            "acme-vm",
            ArtifactFacts {
                tenant: acme,
                kind: Kind::Instance,
                public: false,
                removed: false,
            },
        );
        names.set_record(
            AdvIdx(0),
            RecordFacts {
                id: "DSA-1".into(),
                summary: Some("a summary".into()),
                severity: None,
            },
        );
    });
    view.set_targets(HashMap::from([(
        subscription.id.clone(),
        subscription.target(),
    )]));
    view.set_installation("inst");
    let queue_dir = data.clone();
    let queues: QueueFactory =
        Arc::new(move || Ok(Box::new(SqliteQueue::open(&queue_dir)?) as Box<dyn DeliveryQueue>));
    let counts = Arc::new(Counts::default());
    let mut config = WorkerConfig {
        webhook_policy: Policy::from_env_value(Some("127.0.0.0/8")).unwrap(),
        retry: Schedule::default(),
        claim_batch_max: 16,
        inflight_max: 4,
        round_gather: 128,
        round_linger_ms: 5,
        per_endpoint_inflight_max: 2,
        webhook_timeout_ms: 5000,
        lease_ms: 20_000,
        event_source: None,
        shared: false,
    };
    configure(&mut config);
    let worker = Arc::new(Worker {
        config,
        clock: Arc::new(SystemClock),
        queues,
        view,
        wake: Arc::default(),
        metrics: counts.clone(),
        host: Recorder::default(),
    });
    World {
        _dir: dir,
        data,
        worker,
        counts,
        secret,
    }
}

/// Runs the worker until the delivery leaves `pending`/`in_flight`, then
/// stops it; answers the delivery's recorded state.
async fn run_until_settled(w: &World) -> DeliveryState {
    let mut state = DeliveryState::Pending;
    run_until(w, |reader| {
        state = reader.deliveries("sub_acme", None, 10).unwrap()[0].state;
        !matches!(state, DeliveryState::Pending | DeliveryState::InFlight)
    })
    .await;
    state
}

/// Runs the worker until `done` answers true of the store (read every
/// 25 ms, 10 s at most), then stops it.
async fn run_until(w: &World, mut done: impl FnMut(&mut SqliteReader) -> bool) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(patchline_delivery::worker::run(w.worker.clone(), stop_rx));
    let mut reader = SqliteReader::open(&w.data).unwrap();
    for _ in 0..400 {
        if done(&mut reader) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the worker stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_is_delivered_signed_with_the_subscription_secret() {
    let (url, got) = receiver(204).await;
    let w = world(&url);
    assert_eq!(run_until_settled(&w).await, DeliveryState::Delivered);
    assert_eq!(w.counts.delivered.load(Ordering::Relaxed), 1);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (head, body) = &got[0];
    let header = |name: &str| {
        head.lines()
            .find_map(|l| header_value(l, name))
            .unwrap_or_default()
            .to_string()
    };
    let event: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "dev.patchline.notice");
    assert_eq!(event["source"], "/patchline/inst");
    assert_eq!(event["data"]["notices"][0]["artifact"], "acme-vm");
    assert_eq!(
        event["data"]["notices"][0]["components"][0]["fixed"],
        "3.0.12"
    );
    assert_eq!(event["data"]["records"]["DSA-1"]["summary"], "a summary");
    let secret = Secret::parse(&w.secret).unwrap();
    let now = SystemClock.now_ms() / 1000;
    patchline_webhook::sign::verify(
        &[&secret],
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        body,
        now,
        300,
    )
    .expect("signed with the subscription's secret");
    assert!(w.worker.host.gone.lock().unwrap().is_empty());
}

/// The store is down when the worker starts (its queue cannot be opened,
/// twice): the worker tries again and delivers once it opens. It gave up
/// for good before, and the node's deliveries stopped until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_cannot_be_opened_yet_is_tried_again() {
    let (url, got) = receiver(204).await;
    let w = world(&url);
    let (inner, refusals) = (w.worker.queues.clone(), Arc::new(AtomicU64::new(2)));
    let left = refusals.clone();
    let queues: QueueFactory = Arc::new(move || {
        if left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("the database is down".into()));
        }
        inner()
    });
    let worker = Arc::new(Worker {
        config: w.worker.config.clone(),
        clock: w.worker.clock.clone(),
        queues,
        view: w.worker.view.clone(),
        wake: Arc::default(),
        metrics: w.counts.clone(),
        host: Recorder::default(),
    });
    let w = World { worker, ..w };
    assert_eq!(run_until_settled(&w).await, DeliveryState::Delivered);
    assert_eq!(refusals.load(Ordering::Relaxed), 0, "both refusals met");
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_is_a_dead_letter_and_the_host_disables_the_subscription() {
    let (url, got) = receiver(410).await;
    let w = world(&url);
    assert_eq!(run_until_settled(&w).await, DeliveryState::Dead);
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(
        *w.worker.host.gone.lock().unwrap(),
        vec!["sub_acme".to_string()]
    );
    assert_eq!(w.counts.gone.load(Ordering::Relaxed), 1);
    assert_eq!(w.counts.dead.load(Ordering::Relaxed), 1);
    assert_eq!(w.counts.delivered.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_view_does_not_know_is_a_dead_letter_unsent() {
    let (url, got) = receiver(204).await;
    let w = world(&url);
    w.worker.view.set_targets(HashMap::new());
    assert_eq!(run_until_settled(&w).await, DeliveryState::Dead);
    assert!(got.lock().unwrap().is_empty());
}

/// A receiver that reads each request, answers the first with 204 after
/// `delay`, and never answers the others (a hung endpoint); answers how
/// many requests arrived.
async fn receiver_first_then_hang(delay: Duration) -> (String, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::Relaxed);
            if n > 0 {
                held.push(conn);
                continue;
            }
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                let _ = conn.read(&mut chunk).await;
                tokio::time::sleep(delay).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 204 X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, seen)
}

/// Waits until the receiver got both deliveries.
async fn both_sent(seen: &AtomicU64) {
    for _ in 0..1000 {
        if seen.load(Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.load(Ordering::Relaxed), 2, "both attempts under way");
}

/// How many of acme's deliveries are recorded delivered once the first
/// is (or 4 s after `since`), and how long after `since`.
async fn first_delivered(w: &World, since: std::time::Instant) -> (usize, Duration) {
    let mut reader = SqliteReader::open(&w.data).unwrap();
    loop {
        let rows = reader
            .deliveries("sub_acme", Some(DeliveryState::Delivered), 10)
            .unwrap();
        if !rows.is_empty() || since.elapsed() > Duration::from_secs(4) {
            return (rows.len(), since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A stopping worker records an attempt that ended while another still
/// waits on a hung endpoint, at once, not when the slow one ends (found
/// from outside: a 60 s drain left 27 delivered attempts unrecorded, and
/// another node sent them again once their leases ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_records_what_ended_while_others_drain() {
    let (url, seen) = receiver_first_then_hang(Duration::from_millis(300)).await;
    let w = world(&url);
    // A second delivery of the same notice, to the same endpoint.
    queue_more(&w, 2..=2);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(patchline_delivery::worker::run(w.worker.clone(), stop_rx));
    both_sent(&seen).await;
    // Stopped while both are out: the first is answered 300 ms later,
    // the other never (the worker's time-out is 5 s).
    let stopped = std::time::Instant::now();
    let _ = stop_tx.send(true);
    let (delivered, took) = first_delivered(&w, stopped).await;
    assert_eq!(delivered, 1, "recorded {took:?} after the stop");
    assert!(
        took < Duration::from_secs(2) && !task.is_finished(),
        "recorded {took:?} after the stop, while the hung attempt was still out"
    );
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the worker stops after its time-out")
        .unwrap();
}

/// Queues deliveries `ids` of notice 1 to acme's webhook, due now.
fn queue_more(w: &World, ids: std::ops::RangeInclusive<i64>) {
    let mut store = SqliteStore::open(&w.data).unwrap();
    let (catalog, db) = store.load().unwrap();
    let now = SystemClock.now_ms();
    let outbox = Outbox {
        deliveries: ids.map(|id| acme_delivery(id, now)).collect(),
        ..Default::default()
    };
    store
        .commit(&catalog, &Default::default(), &db, &[], &outbox)
        .unwrap();
}

/// Group commit: attempts that end one after another while the others
/// still run are recorded in one round, not a round each (three nodes ran
/// 2.2x the rounds of one for the same deliveries before rounds waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_gathers_the_results_of_attempts_still_running() {
    // The receiver answers one connection after the other, 20 ms each:
    // the results come in one by one over 160 ms.
    let (url, got) = receiver_paced(204, Duration::from_millis(20)).await;
    let w = world_with(&url, |c| {
        c.inflight_max = 8;
        c.claim_batch_max = 8;
        c.per_endpoint_inflight_max = 8;
        c.round_gather = 8;
        c.round_linger_ms = 3000;
    });
    queue_more(&w, 2..=8);
    run_until(&w, |reader| {
        reader
            .deliveries("sub_acme", Some(DeliveryState::Delivered), 10)
            .unwrap()
            .len()
            == 8
    })
    .await;
    assert_eq!(got.lock().unwrap().len(), 8);
    assert_eq!(w.counts.delivered.load(Ordering::Relaxed), 8);
    // One round claims the eight, one records them all (without the
    // wait, a round each: 9).
    assert_eq!(w.counts.rounds.load(Ordering::Relaxed), 2);
}

/// The wait is bounded: a round records what has ended after its linger
/// even while another attempt hangs on its endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_does_not_wait_on_a_hung_attempt_past_its_linger() {
    let (url, seen) = receiver_first_then_hang(Duration::from_millis(100)).await;
    let w = world_with(&url, |c| c.round_linger_ms = 300);
    queue_more(&w, 2..=2);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(patchline_delivery::worker::run(w.worker.clone(), stop_rx));
    both_sent(&seen).await;
    let sent = std::time::Instant::now();
    let (delivered, took) = first_delivered(&w, sent).await;
    // Answered after 100 ms, recorded at most 300 ms later; the other
    // attempt's time-out is 5 s.
    assert_eq!(delivered, 1, "recorded {took:?} after both were sent");
    assert!(
        took < Duration::from_secs(2),
        "recorded {took:?} after both were sent: the round waited on the hung attempt"
    );
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the worker stops after its time-out")
        .unwrap();
}
