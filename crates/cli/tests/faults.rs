//! Faults of a deployment of several nodes (`serve --store postgres://…
//! --bus nats://…`), with real processes: a node SIGKILLed in the middle
//! of a fan-out and of its deliveries, the NATS server stopped for 10 s,
//! the PostgreSQL server stopped for 10 s and stopped in the middle of a
//! commit, every node restarted in turn under load, and one node cut off
//! the network for 10 s in a network namespace of its own.
//!
//! The NATS and PostgreSQL servers that are stopped are the test's own
//! (`PATCHLINE_TEST_NATS_SERVER`, and `initdb` + `pg_ctl` of the machine's
//! PostgreSQL), on free ports of loopback or of the namespace's link; the
//! machine's shared services are never touched (the NATS test puts its
//! database on the server of `PATCHLINE_TEST_POSTGRES_URL`, as a database
//! of its own). Webhooks go to `receiver.py`, which checks every signature
//! with the reference Standard Webhooks implementation. Every test prints
//! what it measured (duplicates, outage lengths, answers by status).
//! Without a tool or a service each test fails in CI and, elsewhere, says
//! that it did not run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::e2e::*;
use patchline_testkit::nats::{NatsServer, server_binary};
use patchline_testkit::postgres::{OwnPostgres, TestDb};
use serde_json::{Value, json};

/// The second advisory (the first is [`USN`]); both affect the Ubuntu
/// 18.04 image and so every instance of it.
const USN2: &str = "USN-4108-1";
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_secs(10);
/// Longest wait for any answer while something is down: a request that
/// takes longer is a hang.
const ANSWER_BOUND: Duration = Duration::from_secs(15);
/// The bus prefix of the test deployments (each on a NATS of its own).
const PREFIX: &str = "faults";

// ----- the deployment -----

/// A nats-server of the test's own, on `host`, with `sync_interval:
/// always` (as operators run it), its files in `dir/nats`.
fn own_nats(test: &str, host: &str, dir: &Path) -> Option<NatsServer> {
    let binary = server_binary(test)?;
    let dir = dir.join("nats");
    std::fs::create_dir_all(&dir).unwrap();
    Some(NatsServer::start_on(
        host,
        &binary,
        &dir,
        Some("sync_interval: always"),
    ))
}

/// Node `name` of a test deployment: its files in `dir/name`, its state
/// in the PostgreSQL database of `store`, its bus the test's `nats`.
fn node(dir: &Path, name: &str, store: &str, nats: &NatsServer) -> Server {
    Server::start_node(&dir.join(name), FAST_RETRY, store, &nats.url(), PREFIX)
}

/// Nodes a, b and c of a test deployment (see [`node`]).
fn three_nodes(dir: &Path, store: &str, nats: &NatsServer) -> Vec<Server> {
    ["a", "b", "c"]
        .iter()
        .map(|n| node(dir, n, store, nats))
        .collect()
}

/// The body of `POST /v1/advisories` for one of the Ubuntu test records.
fn advisory_body(advisory: &str) -> Vec<u8> {
    std::fs::read(testdata(&format!("advisories/ubuntu/{advisory}.json"))).unwrap()
}

/// `canonical` and `tenants` tenants subscribed to the receiver (made on
/// `nodes[1]`), the public Ubuntu image (on `nodes[0]`) and `per_tenant`
/// instances of it per tenant, made on every node at once (one client
/// thread per node). Answers the (name, token) pairs, the publisher first.
fn populate(
    nodes: &[&Server],
    rx: &Receiver,
    purls: &[Value],
    tenants: usize,
    per_tenant: usize,
) -> Vec<(String, String)> {
    let canonical = nodes[0].tenant("canonical", "publisher");
    let names: Vec<String> = (0..tenants).map(|t| format!("t{t}")).collect();
    let tokens = subscribed(nodes[1 % nodes.len()], rx, &canonical, &names);
    nodes[0].artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": purls}),
    );
    let work: Vec<(String, String)> = tokens
        .iter()
        .skip(1)
        .flat_map(|(t, token)| {
            (0..per_tenant).map(move |j| (token.clone(), format!("{t}-vm-{j:04}")))
        })
        .collect();
    std::thread::scope(|s| {
        for (k, node) in nodes.iter().enumerate() {
            let work = &work;
            s.spawn(move || {
                for (token, id) in work.iter().skip(k).step_by(nodes.len()) {
                    node.artifact(
                        token,
                        json!({"id": id, "kind": "instance", "parent": "base"}),
                    );
                }
            });
        }
    });
    tokens
}

/// Every artifact id a node lists (admin: all of them), in its order.
fn listing(node: &Server) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = node.ok(
            "GET",
            &format!("/v1/artifacts?limit=1000&after={after}"),
            ADMIN,
            None,
        );
        for a in page["artifacts"].as_array().unwrap() {
            out.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => return out,
        }
    }
}

/// Waits until every node lists the same artifacts in the same order;
/// answers that listing.
fn same_catalog(nodes: &[&Server], within: Duration) -> Vec<String> {
    let mut first = Vec::new();
    wait_until("every node lists the same artifacts", within, || {
        first = listing(nodes[0]);
        nodes[1..].iter().all(|n| listing(n) == first)
    });
    let unique: BTreeSet<&String> = first.iter().collect();
    assert_eq!(unique.len(), first.len(), "an artifact listed twice");
    first
}

/// Each tenant's feed is the same on every node, and no notice id comes
/// twice, in a feed or across them; answers the number of notices.
fn same_notices(nodes: &[&Server], tokens: &[(String, String)]) -> usize {
    let mut all = BTreeSet::new();
    let mut total = 0;
    for (t, token) in tokens {
        let feeds: Vec<Vec<i64>> = nodes
            .iter()
            .map(|n| {
                n.notices(token)
                    .iter()
                    .map(|v| v["notice_id"].as_i64().unwrap())
                    .collect()
            })
            .collect();
        for (i, feed) in feeds.iter().enumerate().skip(1) {
            assert_eq!(feed, &feeds[0], "{t}: node {i}'s feed is not node 0's");
        }
        total += feeds[0].len();
        all.extend(feeds[0].iter().copied());
    }
    assert_eq!(all.len(), total, "a notice id appears twice");
    total
}

// ----- requests during an outage -----

/// What the requests made during an outage were answered.
#[derive(Debug, Default)]
struct Tally {
    /// Artifacts whose creation was acknowledged (2xx).
    acked: Vec<String>,
    /// Artifacts whose creation was refused with 503.
    refused: Vec<String>,
    /// Answers by status.
    statuses: BTreeMap<u16, usize>,
    /// The 503 error messages seen.
    messages: BTreeSet<String>,
    /// Longest time to an answer.
    slowest: Duration,
    /// The advisory publication's status, when one was made.
    published: Option<u16>,
}

impl Tally {
    /// One request, answered within [`ANSWER_BOUND`] with a 2xx or with a
    /// 503 whose body is the JSON error shape; panics on anything else (a
    /// hang, another 5xx, a connection dropped without an answer).
    fn request(
        &mut self,
        node: &Server,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> u16 {
        let start = Instant::now();
        let answer = try_http(&node.addr, method, path, token, body, ANSWER_BOUND);
        let took = start.elapsed();
        let (status, body) = answer
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e} after {took:?}", node.addr));
        assert!(took < ANSWER_BOUND, "{method} {path} took {took:?}");
        self.slowest = self.slowest.max(took);
        *self.statuses.entry(status).or_default() += 1;
        if status == 503 {
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
                panic!(
                    "503 without a JSON body: {}",
                    String::from_utf8_lossy(&body)
                )
            });
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                v["error"]["code"].is_string() && !message.is_empty(),
                "503 without the error shape: {v}"
            );
            self.messages.insert(format!(
                "{}: {message}",
                v["error"]["code"].as_str().unwrap()
            ));
        } else {
            assert!(
                (200..300).contains(&status),
                "{method} {path} answered {status} during the outage: {}",
                String::from_utf8_lossy(&body)
            );
        }
        status
    }

    /// Requests on the nodes in turn until `until`: instances of the base
    /// image for the tenants in turn (ids `<tag>-<n>`), and a notices page
    /// every fifth request; at half time `publish` is published on
    /// `nodes[1]`.
    fn during(
        nodes: &[&Server],
        tokens: &[(String, String)],
        tag: &str,
        publish: &str,
        until: Instant,
    ) -> Tally {
        let mut tally = Tally::default();
        let half = until - OUTAGE / 2;
        let mut n = 0usize;
        while Instant::now() < until {
            let node = nodes[n % nodes.len()];
            let (_, token) = &tokens[1 + n % (tokens.len() - 1)];
            if tally.published.is_none() && Instant::now() >= half {
                let status = tally.request(
                    nodes[1],
                    "POST",
                    "/v1/advisories",
                    &tokens[0].1,
                    &advisory_body(publish),
                );
                tally.published = Some(status);
            } else if n % 5 == 4 {
                tally.request(node, "GET", "/v1/notices?limit=10", token, b"");
            } else {
                let id = format!("{tag}-{n:04}");
                let doc = json!({"id": id, "kind": "instance", "parent": "base"});
                let status = tally.request(
                    node,
                    "POST",
                    "/v1/artifacts",
                    token,
                    doc.to_string().as_bytes(),
                );
                if status == 503 {
                    tally.refused.push(id);
                } else {
                    tally.acked.push(id);
                }
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        tally
    }
}

/// Every acknowledged artifact is there on every node (as it is listed).
fn assert_kept(listings: &[String], tally: &Tally) {
    let listed: BTreeSet<&String> = listings.iter().collect();
    let lost: Vec<&String> = tally.acked.iter().filter(|a| !listed.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged artifacts lost: {lost:?}");
}

/// The instance of `tenant`'s token with id `id`, made on `node` once it
/// accepts writes again; answers how long that took.
fn writes_again(node: &Server, token: &str, id: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let doc = json!({"id": id, "kind": "instance", "parent": "base"}).to_string();
    wait_until(
        &format!("{} accepts writes again", node.addr),
        within,
        || {
            let answer = try_http(
                &node.addr,
                "POST",
                "/v1/artifacts",
                token,
                doc.as_bytes(),
                ANSWER_BOUND,
            );
            match answer {
                Ok((s, _)) if (200..300).contains(&s) => true,
                Ok((503, _)) => {
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
                other => panic!("{id} on {}: {other:?}", node.addr),
            }
        },
    );
    start.elapsed()
}

/// The messages (webhook ids) accepted more than once.
fn messages_twice(records: &[Value]) -> usize {
    let mut seen = BTreeMap::<&str, usize>::new();
    for r in records.iter().filter(|r| r["status"] == 204) {
        *seen.entry(r["webhook_id"].as_str().unwrap()).or_default() += 1;
    }
    seen.values().filter(|n| **n > 1).count()
}

/// What each node's `/readyz` says is not ready; asserts each answers
/// 503 within the bound.
fn not_ready(nodes: &[&Server]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let (status, body) = try_http(&n.addr, "GET", "/readyz", "", b"", ANSWER_BOUND)
                .unwrap_or_else(|e| panic!("/readyz on {}: {e}", n.addr));
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 503, "{} is ready: {v}", n.addr);
            v["not_ready"].to_string()
        })
        .collect()
}

/// Every node is ready (`/readyz` 200) within `within`.
fn all_ready(nodes: &[&Server], within: Duration) {
    for n in nodes {
        wait_until(&format!("{} is ready", n.addr), within, || {
            try_http(&n.addr, "GET", "/readyz", "", b"", ANSWER_BOUND).is_ok_and(|(s, _)| s == 200)
        });
    }
}

/// Stops the nodes gracefully: each ends with 0 and never panicked.
fn stop_all(nodes: Vec<Server>) {
    for node in nodes {
        let (status, log) = node.process.stop_with_status();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

// ----- the tests -----

/// Three nodes; an advisory affecting 3,001 artifacts published on C,
/// answered, and C SIGKILLed once its deliveries are arriving (the
/// receiver answers each after 300 ms); then another published on A and A
/// SIGKILLed while the publication's transaction is open in PostgreSQL
/// (seen in `pg_stat_activity`). The second publication committed whole
/// (every notice there) or not at all (no notice, no advisory, and
/// publishing it again on B works); B delivers every notice of both at
/// least once, taking over what A and C had leased once their leases run
/// out, and the notices delivered twice are counted.
#[test]
fn sigkill_mid_fanout_on_three_nodes() {
    let test = "sigkill_mid_fanout_on_three_nodes";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = own_nats(test, "127.0.0.1", tmp.path()) else {
        return;
    };
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    // A's sessions carry a name of their own, to be found in
    // pg_stat_activity.
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let a_store = format!("{}{sep}application_name=faults-node-a", db.url);
    let mut nodes: Vec<Server> = [("a", &a_store), ("b", &db.url), ("c", &db.url)]
        .iter()
        .map(|(n, store)| node(tmp.path(), n, store, &nats))
        .collect();
    let (tenants, per_tenant) = (10, 300);
    let start = Instant::now();
    let tokens = populate(
        &nodes.iter().collect::<Vec<_>>(),
        &rx,
        &purls,
        tenants,
        per_tenant,
    );
    let expected = tenants * per_tenant + 1;
    say(&format!(
        "sigkill: {expected} artifacts made over three nodes in {:?}",
        start.elapsed()
    ));
    let canonical = tokens[0].1.clone();

    // C publishes, answers, and dies while deliveries are arriving.
    let start = Instant::now();
    let published = nodes[2].publish(&canonical, USN);
    let took = start.elapsed();
    assert_eq!(published["affected"], expected, "{published}");
    wait_until(
        "the first delivery arrives",
        Duration::from_secs(20),
        || !rx.records().is_empty(),
    );
    let by_state = nodes[0].deliveries();
    nodes[2].kill();
    let at_kill = rx.records().len();
    say(&format!(
        "sigkill: publication of {expected} notices answered in {took:?}; C killed with \
         {at_kill} messages received, deliveries by state {by_state:?}"
    ));

    // A publishes the second and dies with its transaction open.
    let (addr, body, token) = (
        nodes[0].addr.clone(),
        advisory_body(USN2),
        canonical.clone(),
    );
    let start = Instant::now();
    let request = std::thread::spawn(move || {
        try_http(&addr, "POST", "/v1/advisories", &token, &body, ANSWER_BOUND)
    });
    let mut watch = db.client();
    let mut open_at = None;
    while open_at.is_none() && !request.is_finished() && start.elapsed() < ANSWER_BOUND {
        let open: i64 = watch
            .query_one(
                r"SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_xid IS NOT NULL
                    AND application_name = 'faults-node-a'
                    AND query ~ '^\s*(INSERT INTO changes|COPY (notice|deliveries))'",
                &[],
            )
            .unwrap()
            .get(0);
        if open > 0 {
            open_at = Some(start.elapsed());
        }
    }
    nodes[0].kill();
    let killed_at = start.elapsed();
    let answer = request.join().unwrap();
    let acknowledged = answer.as_ref().is_ok_and(|(s, _)| (200..300).contains(s));
    // A COMMIT that reached PostgreSQL before the kill completes: give B
    // time to read it from the change log (it looks every 500 ms).
    std::thread::sleep(Duration::from_secs(2));
    let second: usize = tokens
        .iter()
        .map(|(_, token)| feed_ids(&nodes[1], token, USN2).len())
        .sum();
    say(&format!(
        "sigkill: A killed {killed_at:?} into the publication (its transaction seen open at \
         {open_at:?}; answer: {:?}); B sees {second} of its {expected} notices",
        answer.as_ref().map(|(s, _)| *s)
    ));
    assert!(
        second == 0 || second == expected,
        "a publication half committed: {second} of {expected} notices"
    );
    if second == 0 {
        assert!(!acknowledged, "an acknowledged publication was lost");
        let (status, v) = nodes[1].call(
            "GET",
            &format!("/v1/advisories/{USN2}/affected"),
            ADMIN,
            None,
        );
        assert_eq!(status, 404, "the uncommitted advisory is there: {v}");
        let published = nodes[1].publish(&canonical, USN2);
        assert_eq!(published["affected"], expected, "{published}");
        say("sigkill: the publication did not commit; published again on B");
    } else {
        say("sigkill: the publication committed whole before the kill");
    }

    // B alone delivers everything, A's and C's leases once they run out.
    let start = Instant::now();
    nodes[1].wait_drained(Duration::from_secs(90));
    let records = rx.records();
    let first_dups = delivered_once_or_more(&nodes[1], &records, &tokens, USN, expected);
    let second_dups = delivered_once_or_more(&nodes[1], &records, &tokens, USN2, expected);
    say(&format!(
        "sigkill: every notice of both delivered by B {:?} after the second kill; notices \
         delivered more than once: {first_dups} of {USN}, {second_dups} of {USN2} ({} messages \
         received twice: sent by a node that was killed before it read the answer)",
        start.elapsed(),
        messages_twice(&records)
    ));
    stop_all(vec![nodes.remove(1)]);
}

/// Three nodes on a database of the machine's PostgreSQL and a NATS of the
/// test's own; NATS SIGKILLed for 10 s while clients write on every node
/// (instances, an advisory): every write answers 2xx (PostgreSQL holds the
/// truth, the nodes read its change log every 500 ms) or 503 with a JSON
/// error, none takes longer than the bound; after NATS restarts on the
/// same port every acknowledged write is on every node, every notice is
/// delivered, and an event stream opened before the outage got every
/// notice of its tenant.
#[test]
fn nats_down_for_ten_seconds() {
    let test = "nats_down_for_ten_seconds";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut nats) = own_nats(test, "127.0.0.1", tmp.path()) else {
        return;
    };
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "100"]);
    let nodes = three_nodes(tmp.path(), &db.url, &nats);
    let all: Vec<&Server> = nodes.iter().collect();
    let tokens = populate(&all, &rx, &purls, 4, 20);
    nodes[0].publish(&tokens[0].1, USN);
    let (t1, t1_token) = tokens[2].clone();
    let live = EventStream::open(&nodes[2].addr, &t1_token, None);

    nats.kill_9();
    let down = Instant::now();
    let tally = Tally::during(&all, &tokens, "nats", USN2, down + OUTAGE);
    // Still down: the nodes have read each other's writes from the change
    // log in PostgreSQL.
    let listed = same_catalog(&all, Duration::from_secs(5));
    assert_kept(&listed, &tally);
    let while_down = down.elapsed() - OUTAGE;
    let unready = not_ready(&all);
    nats.spawn();
    let outage = down.elapsed();
    say(&format!(
        "nats: down for {outage:?}; answers during the outage by status {:?}, slowest {:?}, \
         {} instances acknowledged, {} refused, publication: {:?}; 503 messages: {:?}; every \
         node listed the same {} artifacts {while_down:?} after the last write, NATS still down; \
         /readyz meanwhile: 503, not ready: {unready:?}",
        tally.statuses,
        tally.slowest,
        tally.acked.len(),
        tally.refused.len(),
        tally.published,
        tally.messages,
        listed.len()
    ));
    if !matches!(tally.published, Some(200 | 201)) {
        nodes[1].publish(&tokens[0].1, USN2);
    }

    let start = Instant::now();
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_kept(&listed, &tally);
    let caught_up = start.elapsed();
    all_ready(&all, Duration::from_secs(20));
    let reconnected = start.elapsed();
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, 2 * listed.len(), "two advisories, every artifact");
    nodes[0].wait_drained(Duration::from_secs(60));
    let records = rx.records();
    let dups: Vec<usize> = [USN, USN2]
        .iter()
        .map(|a| delivered_once_or_more(&nodes[0], &records, &tokens, a, listed.len()))
        .collect();
    // The stream opened on C before the outage got every notice of t1.
    let feed: BTreeSet<i64> = [USN, USN2]
        .iter()
        .flat_map(|a| feed_ids(&nodes[2], &t1_token, a))
        .collect();
    wait_until(
        &format!("the stream on C receives every notice of {t1}"),
        Duration::from_secs(10),
        || live.ids().into_iter().collect::<BTreeSet<i64>>() == feed,
    );
    say(&format!(
        "nats: every node lists the same {} artifacts {caught_up:?} after the restart, all \
         ready after {reconnected:?}; {notices} notices delivered (more than once: {dups:?}); \
         the stream on C got all {} of {t1}'s",
        listed.len(),
        feed.len()
    ));
    drop(live);
    stop_all(nodes);
}

/// Three nodes on a PostgreSQL server of the test's own (and a NATS of its
/// own); PostgreSQL stopped (`pg_ctl stop -m immediate`) for 10 s while
/// clients write on every node and deliveries are out: requests answer
/// 2xx or 503 with a JSON error, within the bound; after `pg_ctl start`
/// every node accepts writes again without being restarted, every
/// acknowledged write is there on every node, and every notice is
/// delivered.
#[test]
fn postgres_down_for_ten_seconds() {
    let test = "postgres_down_for_ten_seconds";
    let Some(py) = python(test) else {
        return;
    };
    let Some(mut pg) = OwnPostgres::start(test, &["127.0.0.1"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = own_nats(test, "127.0.0.1", tmp.path()) else {
        return;
    };
    let store = pg.url("127.0.0.1");
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    let mut nodes = three_nodes(tmp.path(), &store, &nats);
    let all: Vec<&Server> = nodes.iter().collect();
    let tokens = populate(&all, &rx, &purls, 4, 50);
    nodes[0].publish(&tokens[0].1, USN);
    let (t1, t1_token) = tokens[2].clone();
    let live = EventStream::open(&nodes[2].addr, &t1_token, None);
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        nodes[0]
            .deliveries()
            .get("in_flight")
            .is_some_and(|n| *n > 0.0)
    });
    let received_before = rx.records().len();

    pg.stop_immediate();
    let down = Instant::now();
    let tally = Tally::during(&all, &tokens, "pg", USN2, down + OUTAGE);
    let unready = not_ready(&all);
    pg.start_again();
    let outage = down.elapsed();
    say(&format!(
        "postgres: down for {outage:?} ({received_before} messages received before); answers \
         during the outage by status {:?}, slowest {:?}, {} instances acknowledged, {} \
         refused, publication: {:?}; 503 messages: {:?}; /readyz meanwhile: 503, not \
         ready: {unready:?}",
        tally.statuses,
        tally.slowest,
        tally.acked.len(),
        tally.refused.len(),
        tally.published,
        tally.messages
    ));
    assert!(
        tally.statuses.get(&503).copied().unwrap_or(0) > 0,
        "no request was refused while PostgreSQL was down"
    );

    // Every node takes writes again, without a restart.
    let mut recovered = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        assert_eq!(node.process.exited(), None, "node {i} exited");
        let (_, token) = &tokens[1 + i % (tokens.len() - 1)];
        recovered.push(writes_again(
            node,
            token,
            &format!("after-{i}"),
            Duration::from_secs(60),
        ));
    }
    let all: Vec<&Server> = nodes.iter().collect();
    if !matches!(tally.published, Some(200 | 201)) {
        all[1].publish(&tokens[0].1, USN2);
    }
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_kept(&listed, &tally);
    let refused_but_there = tally
        .refused
        .iter()
        .filter(|id| listed.contains(id))
        .count();
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, 2 * listed.len(), "two advisories, every artifact");
    let start = Instant::now();
    all[0].wait_drained(Duration::from_secs(90));
    let records = rx.records();
    let dups: Vec<usize> = [USN, USN2]
        .iter()
        .map(|a| delivered_once_or_more(all[0], &records, &tokens, a, listed.len()))
        .collect();
    // The stream opened on C before the outage got every notice of t1,
    // those made after it included.
    let feed: BTreeSet<i64> = [USN, USN2]
        .iter()
        .flat_map(|a| feed_ids(all[2], &t1_token, a))
        .collect();
    wait_until(
        &format!("the stream on C receives every notice of {t1}"),
        Duration::from_secs(10),
        || live.ids().into_iter().collect::<BTreeSet<i64>>() == feed,
    );
    say(&format!(
        "postgres: nodes took writes again {recovered:?} after the restart; every node lists \
         the same {} artifacts ({refused_but_there} of the refused ones among them); all \
         {notices} notices delivered {:?} later (more than once: {dups:?}); the stream on C \
         got all {} of {t1}'s",
        listed.len(),
        start.elapsed(),
        feed.len()
    ));
    drop(live);
    stop_all(nodes);
}

/// The deployment's write lock as `pg_locks` shows it (the key of
/// `pg_advisory_lock`, `plwrite!` in ASCII, split in two 32-bit halves).
const WRITE_LOCK_HELD_BY: &str = "SELECT l.pid FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = (x'706c7772'::bigint)::oid AND l.objid = (x'69746521'::bigint)::oid";

/// Three nodes on a PostgreSQL server of the test's own; A publishes an
/// advisory and PostgreSQL stops (`pg_ctl stop -m immediate`) in the middle
/// of the publication's COMMIT: its commit record flushed to the WAL, the
/// answer not yet sent. To hold a commit at that point the server waits
/// for a synchronous standby that does not exist (`SyncRep`); the session
/// caught there is the one holding the deployment's write lock. A answers
/// 503 within the bound (it cannot know whether it committed). After the
/// restart the publication is there whole (recovery replayed it), on every
/// node, A included (its memory had rolled it back); publishing it again
/// makes no second notice; every notice is delivered; every node takes
/// writes again without a restart.
#[test]
fn postgres_stops_mid_commit() {
    let test = "postgres_stops_mid_commit";
    let Some(py) = python(test) else {
        return;
    };
    let Some(mut pg) = OwnPostgres::start(test, &["127.0.0.1"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = own_nats(test, "127.0.0.1", tmp.path()) else {
        return;
    };
    let store = pg.url("127.0.0.1");
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &[]);
    let mut nodes = three_nodes(tmp.path(), &store, &nats);
    let all: Vec<&Server> = nodes.iter().collect();
    let tokens = populate(&all, &rx, &purls, 4, 50);
    let expected = 4 * 50 + 1;
    let canonical = tokens[0].1.clone();
    all[0].wait_drained(Duration::from_secs(30));

    pg.hold_commits();
    let (addr, body, token) = (nodes[0].addr.clone(), advisory_body(USN), canonical.clone());
    let start = Instant::now();
    let request = std::thread::spawn(move || {
        try_http(&addr, "POST", "/v1/advisories", &token, &body, ANSWER_BOUND)
    });
    let mut watch = pg.client();
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE wait_event = 'SyncRep' AND pid IN ({WRITE_LOCK_HELD_BY})"
    );
    wait_until(
        "the publication's COMMIT waits with its record flushed",
        Duration::from_secs(10),
        || watch.query_one(&query, &[]).unwrap().get::<_, i64>(0) == 1,
    );
    let held_at = start.elapsed();
    drop(watch);
    pg.stop_immediate();
    let answer = request.join().unwrap();
    let answered_after = start.elapsed();
    let (status, body) = answer.expect("A answers while PostgreSQL is down");
    say(&format!(
        "mid-commit: the publication's COMMIT held at {held_at:?}, PostgreSQL stopped; A \
         answered after {answered_after:?}: {status} {}",
        String::from_utf8_lossy(&body)
    ));
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(error["error"]["code"], "busy", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("may or may not have been saved"),
        "a 503 mid-commit must not say nothing changed: {message}"
    );
    pg.release_commits_when_stopped();
    pg.start_again();

    // Recovery replays the commit: the publication is there, whole, on
    // every node, though A answered 503.
    all_ready(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(60));
    let affected = |node: &Server| -> usize {
        tokens
            .iter()
            .map(|(_, token)| {
                // A node reconnecting or reloading answers 503 a moment.
                let (status, page) = node.call("GET", "/v1/notices?limit=1000", token, None);
                match page["notices"].as_array() {
                    Some(list) if status == 200 => {
                        list.iter().filter(|n| n["advisory"] == USN).count()
                    }
                    _ => 0,
                }
            })
            .sum()
    };
    for (i, node) in nodes.iter().enumerate() {
        wait_until(
            &format!("node {i} shows the recovered publication"),
            Duration::from_secs(60),
            || affected(node) == expected,
        );
    }
    let all: Vec<&Server> = nodes.iter().collect();
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_eq!(listed.len(), expected);
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, expected);
    // Published again (what a client told 503 does): nothing new.
    let again = all[1].publish(&canonical, USN);
    assert_eq!(again["affected"], expected, "{again}");
    assert_eq!(same_notices(&all, &tokens), expected, "a second notice");
    let mut recovered = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        assert_eq!(node.process.exited(), None, "node {i} exited");
        let (_, token) = &tokens[1 + i % (tokens.len() - 1)];
        recovered.push(writes_again(
            node,
            token,
            &format!("after-{i}"),
            Duration::from_secs(60),
        ));
    }
    let all: Vec<&Server> = nodes.iter().collect();
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_eq!(
        listed.len(),
        expected + nodes.len(),
        "one more instance per node"
    );
    all[0].wait_drained(Duration::from_secs(60));
    let records = rx.records();
    let dups = delivered_once_or_more(all[0], &records, &tokens, USN, listed.len());
    say(&format!(
        "mid-commit: after the restart every node shows all {expected} notices of the \
         publication A answered 503 to; published again: no new notice; nodes took writes \
         again {recovered:?}; every notice delivered (more than once: {dups})"
    ));
    stop_all(nodes);
}

// ----- a rolling restart -----

/// Three nodes on a database of the machine's PostgreSQL and a NATS of
/// the test's own, under load: a client makes an instance every 40 ms on
/// the nodes in turn (skipping the one being restarted, as a load
/// balancer that drains a node first would), deliveries are out (the
/// receiver answers each after 200 ms), an event stream follows tenant t1.
/// Each node in turn is stopped with SIGTERM (it must exit 0, having
/// finished what it had in flight) and started again on the same
/// arguments; an advisory is published after the first restart; the event
/// stream, when its node goes, resumes on another with `Last-Event-ID`.
/// Afterwards every request had its answer (2xx), every acknowledged
/// artifact is on every node in the same order, every notice is delivered,
/// no webhook message arrives twice, and the resumed streams together got
/// every notice of t1 once.
#[test]
fn rolling_restart_loses_nothing() {
    let test = "rolling_restart_loses_nothing";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(nats) = own_nats(test, "127.0.0.1", tmp.path()) else {
        return;
    };
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "200"]);
    let names = ["a", "b", "c"];
    let start_node = |n: &str| node(tmp.path(), n, &db.url, &nats);
    let mut nodes: Vec<Option<Server>> = names.iter().map(|n| Some(start_node(n))).collect();
    let tokens = {
        let all: Vec<&Server> = nodes.iter().flatten().collect();
        populate(&all, &rx, &purls, 4, 30)
    };
    let (t1, t1_token) = tokens[1].clone();
    let canonical = tokens[0].1.clone();
    nodes[0].as_ref().unwrap().publish(&canonical, USN);

    // The load: addresses of the nodes up, read before each request.
    let up: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>> =
        std::sync::Arc::new(std::sync::Mutex::new(
            nodes
                .iter()
                .map(|n| n.as_ref().map(|s| s.addr.clone()))
                .collect(),
        ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (up, stop, tokens) = (up.clone(), stop.clone(), tokens.clone());
        std::thread::spawn(move || {
            let (mut acked, mut statuses) = (Vec::new(), BTreeMap::<u16, usize>::new());
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let addrs: Vec<String> = up.lock().unwrap().iter().flatten().cloned().collect();
                let addr = &addrs[n % addrs.len()];
                let (_, token) = &tokens[1 + n % (tokens.len() - 1)];
                let id = format!("roll-{n:05}");
                let doc = json!({"id": id, "kind": "instance", "parent": "base"}).to_string();
                let answer = try_http(
                    addr,
                    "POST",
                    "/v1/artifacts",
                    token,
                    doc.as_bytes(),
                    ANSWER_BOUND,
                );
                let (status, body) = answer.unwrap_or_else(|e| panic!("{id} on {addr}: {e}"));
                *statuses.entry(status).or_default() += 1;
                assert!(
                    (200..300).contains(&status),
                    "{id} on {addr}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                acked.push(id);
                n += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
            (acked, statuses)
        })
    };

    // The stream of t1, resumed on another node when its node goes.
    let mut streams = vec![EventStream::open(
        &nodes[1].as_ref().unwrap().addr,
        &t1_token,
        None,
    )];
    let mut stream_on = 1;
    let mut restarts = Vec::new();
    for i in 0..nodes.len() {
        up.lock().unwrap()[i] = None;
        std::thread::sleep(Duration::from_millis(200));
        let began = Instant::now();
        let old = nodes[i].take().unwrap();
        let in_flight = old.deliveries().get("in_flight").copied().unwrap_or(0.0);
        let (status, log) = old.process.stop_with_status();
        let stopped = began.elapsed();
        assert!(
            status.is_some_and(|s| s.success()),
            "node {} did not stop cleanly: {status:?}\n{log}",
            names[i]
        );
        // Its stream ended with it: the client resumes on the next node
        // after the last event it got.
        if stream_on == i {
            let next = (i + 1) % nodes.len();
            let last = streams.iter().flat_map(EventStream::ids).max();
            streams.push(EventStream::open(
                &nodes[next].as_ref().unwrap().addr,
                &t1_token,
                last,
            ));
            stream_on = next;
        }
        let node = start_node(names[i]);
        up.lock().unwrap()[i] = Some(node.addr.clone());
        restarts.push(format!(
            "{}: stopped in {stopped:?} ({in_flight} deliveries in flight), ready again after \
             {:?}",
            names[i],
            began.elapsed()
        ));
        nodes[i] = Some(node);
        if i == 0 {
            nodes[0].as_ref().unwrap().publish(&canonical, USN2);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, statuses) = client.join().unwrap();

    let all: Vec<&Server> = nodes.iter().flatten().collect();
    let listed = same_catalog(&all, Duration::from_secs(10));
    let kept: BTreeSet<&String> = listed.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|a| !kept.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged artifacts lost: {lost:?}");
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, 2 * listed.len(), "two advisories, every artifact");
    all[0].wait_drained(Duration::from_secs(90));
    let records = rx.records();
    let dups: Vec<usize> = [USN, USN2]
        .iter()
        .map(|a| delivered_once_or_more(all[0], &records, &tokens, a, listed.len()))
        .collect();
    let twice = messages_twice(&records);
    let feed: BTreeSet<i64> = [USN, USN2]
        .iter()
        .flat_map(|a| feed_ids(all[0], &t1_token, a))
        .collect();
    wait_until(
        &format!("the resumed streams receive every notice of {t1}"),
        Duration::from_secs(10),
        || {
            streams
                .iter()
                .flat_map(EventStream::ids)
                .collect::<BTreeSet<i64>>()
                == feed
        },
    );
    let received: Vec<i64> = streams.iter().flat_map(EventStream::ids).collect();
    say(&format!(
        "rolling restart: {restarts:?}; {} instances made meanwhile, answers by status \
         {statuses:?}; every node lists the same {} artifacts; {notices} notices, all \
         delivered (notices more than once: {dups:?}, messages twice: {twice}); t1's \
         {} notices over {} streams, {} events",
        acked.len(),
        listed.len(),
        feed.len(),
        streams.len(),
        received.len()
    ));
    assert_eq!(twice, 0, "a graceful stop sent a message again");
    assert_eq!(received.len(), feed.len(), "an event received twice");
    drop(streams);
    stop_all(nodes.into_iter().flatten().collect());
}

// ----- a partition -----

/// A network namespace with a veth link to the host (a /30 of
/// 10.213.0.0/16 derived from the process id and a counter): the host's end and the
/// namespace's end each with an address. Deleted when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_addr: String,
    ns_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

impl Netns {
    /// `None` after `not_run` when not root or without `ip` (iproute2).
    fn create(test: &str) -> Option<Netns> {
        if !patchline_testkit::require_tools(test, &["ip"]) {
            return None;
        }
        if !patchline_testkit::is_root() {
            patchline_testkit::not_run(test, "network namespaces need root");
            return None;
        }
        // Each namespace of this process (tests run in parallel) its own
        // name and link.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let n = (pid.wrapping_mul(4).wrapping_add(k)) % (64 * 256);
        let (third, fourth) = (n / 64, (n % 64) * 4);
        let ns = Netns {
            name: format!("plf{pid}x{k}"),
            host_if: format!("plf{pid}x{k}h"),
            host_addr: format!("10.213.{third}.{}", fourth + 1),
            ns_addr: format!("10.213.{third}.{}", fourth + 2),
        };
        let ns_if = format!("plf{pid}x{k}n");
        // Leftovers of an earlier run with this process id.
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// What runs a program inside the namespace.
    fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// The link down: the namespace reaches nothing, nothing reaches it
    /// (packets are dropped; connections neither close nor answer).
    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A deployment with a node that can be cut off: PostgreSQL, NATS and
/// the webhook receiver (`receiver` its arguments) are the test's own,
/// listening on the host's end of a namespace's link; nodes A and B run
/// on the host, P (`nodes[2]`, its sessions named `faults-node-p` in
/// PostgreSQL) inside the namespace. The fields drop in order: the nodes
/// first, the namespace last.
struct Partitioned {
    nodes: Vec<Server>,
    rx: Receiver,
    pg: OwnPostgres,
    _nats: NatsServer,
    _tmp: tempfile::TempDir,
    net: Netns,
}

impl Partitioned {
    /// `None` when a tool or a service is missing (said by `not_run`).
    fn start(test: &str, receiver: &[&str]) -> Option<Partitioned> {
        let py = python(test)?;
        let net = Netns::create(test)?;
        let host = net.host_addr.clone();
        let pg = OwnPostgres::start(test, &["127.0.0.1", &host])?;
        let tmp = tempfile::tempdir().unwrap();
        let nats = own_nats(test, &host, tmp.path())?;
        let rx = Receiver::start_on(&host, &py, tmp.path(), receiver);
        let local = pg.url("127.0.0.1");
        let mut nodes: Vec<Server> = ["a", "b"]
            .iter()
            .map(|n| node(tmp.path(), n, &local, &nats))
            .collect();
        nodes.push(Server::start_node_via(
            &net.exec(),
            &format!("{}:0", net.ns_addr),
            &tmp.path().join("p"),
            FAST_RETRY,
            &format!("{}?application_name=faults-node-p", pg.url(&host)),
            &nats.url(),
            PREFIX,
        ));
        Some(Partitioned {
            nodes,
            rx,
            pg,
            _nats: nats,
            _tmp: tmp,
            net,
        })
    }

    /// [`populate`] over the three nodes.
    fn populate(&self, tenants: usize, per_tenant: usize) -> Vec<(String, String)> {
        let purls = ubuntu_purls(self._tmp.path());
        let all: Vec<&Server> = self.nodes.iter().collect();
        populate(&all, &self.rx, &purls, tenants, per_tenant)
    }
}

/// Three nodes, P in a network namespace of its own, reaching PostgreSQL,
/// NATS and the webhook receiver (all the test's own, listening on the
/// host's end of P's link) over a veth link. P follows a publication, then
/// its link is cut for 10 s while clients write on the two other nodes (an
/// advisory, instances); restored, P catches up: it lists exactly the
/// artifacts the others list, in the same order, each tenant's feed is the
/// same on every node with no notice id twice, P takes a write of its own
/// that the others see, and every notice is delivered.
#[test]
fn partitioned_node_catches_up() {
    let test = "partitioned_node_catches_up";
    let Some(mut d) = Partitioned::start(test, &["--delay-ms", "1000"]) else {
        return;
    };
    let tokens = d.populate(4, 20);
    let (net, rx) = (&d.net, &d.rx);
    let all: Vec<&Server> = d.nodes.iter().collect();
    // P publishes: its workers, woken first, take deliveries, and are
    // cut off with them out (the receiver answers after 1 s).
    let p = all[2];
    p.publish(&tokens[0].1, USN);
    let before = same_catalog(&all, Duration::from_secs(10));
    same_notices(&all, &tokens);
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        p.deliveries().get("in_flight").is_some_and(|n| *n > 0.0)
    });

    net.cut();
    let cut = Instant::now();
    let unreachable = try_http(&p.addr, "GET", "/healthz", "", b"", Duration::from_secs(1));
    assert!(
        unreachable.is_err(),
        "P answers while cut off: {unreachable:?}"
    );
    let tally = Tally::during(&all[..2], &tokens, "cut", USN2, cut + OUTAGE);
    net.restore();
    let outage = cut.elapsed();
    say(&format!(
        "partition: P cut off for {outage:?}, with {} messages received; answers on A and B \
         meanwhile by status {:?}, slowest {:?}, {} instances acknowledged, publication: {:?}",
        rx.records().len(),
        tally.statuses,
        tally.slowest,
        tally.acked.len(),
        tally.published
    ));
    assert!(
        tally.statuses.keys().all(|s| (200..300).contains(s)),
        "A and B answer while P is cut off: {:?}",
        tally.statuses
    );

    let start = Instant::now();
    let listed = same_catalog(&all, Duration::from_secs(30));
    let caught_up = start.elapsed();
    assert_kept(&listed, &tally);
    assert_eq!(listed.len(), before.len() + tally.acked.len());
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, 2 * listed.len(), "two advisories, every artifact");
    // P writes after the others' writes it missed, in the same order.
    p.artifact(
        &tokens[1].1,
        json!({"id": "from-p", "kind": "instance", "parent": "base"}),
    );
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_eq!(listed.last().map(String::as_str), Some("from-p"));
    let notices = same_notices(&all, &tokens);
    let counts: Vec<f64> = all
        .iter()
        .map(|n| n.metrics()["patchline_artifacts"])
        .collect();
    assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
    all[0].wait_drained(Duration::from_secs(60));
    let records = rx.records();
    let dups: Vec<usize> = [USN, USN2]
        .iter()
        .map(|a| delivered_once_or_more(all[0], &records, &tokens, a, listed.len()))
        .collect();
    let p_metrics = p.metrics();
    let p_sent = |k: &str| p_metrics.get(k).copied().unwrap_or(0.0);
    say(&format!(
        "partition: P lists the same {} artifacts as A and B {caught_up:?} after the link came \
         back, the same {notices} notices (no id twice), and its own write after them; every \
         notice delivered (more than once: {dups:?}; messages received twice: {}); P's \
         attempts: {} delivered, {} failed",
        listed.len(),
        messages_twice(&records),
        p_sent("patchline_webhook_delivered_total"),
        p_sent("patchline_webhook_failed_total"),
    ));
    drop(all);
    stop_all(std::mem::take(&mut d.nodes));
}

/// Three nodes, P in a network namespace of its own (as in
/// `partitioned_node_catches_up`); P publishes an advisory affecting 1,001
/// artifacts and its link is cut, for 20 s, while it holds the
/// deployment's write lock (seen in `pg_locks`). P's session cannot end
/// cleanly, so PostgreSQL must notice the silence (keepalive probes) and
/// end it, which rolls P's transaction back and releases the lock: A and
/// B keep taking writes, each answered within the bound. Restored, P's
/// publication committed whole or not at all (and then publishing it
/// again on A works); every node lists the same artifacts and the same
/// notices, P takes a write of its own, and every notice is delivered.
#[test]
fn partitioned_lock_holder_releases_the_deployment() {
    let test = "partitioned_lock_holder_releases_the_deployment";
    let Some(mut d) = Partitioned::start(test, &[]) else {
        return;
    };
    let (tenants, per_tenant) = (10, 100);
    let tokens = d.populate(tenants, per_tenant);
    let (net, rx, pg) = (&d.net, &d.rx, &d.pg);
    let all: Vec<&Server> = d.nodes.iter().collect();
    let expected = tenants * per_tenant + 1;
    all[0].wait_drained(Duration::from_secs(30));

    let (addr, body, token) = (all[2].addr.clone(), advisory_body(USN), tokens[0].1.clone());
    let start = Instant::now();
    let request = std::thread::spawn(move || {
        try_http(
            &addr,
            "POST",
            "/v1/advisories",
            &token,
            &body,
            Duration::from_secs(90),
        )
    });
    let mut watch = pg.client();
    let holder = format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'faults-node-p' AND pid IN ({WRITE_LOCK_HELD_BY})"
    );
    let mut held_at = None;
    while held_at.is_none() && !request.is_finished() && start.elapsed() < ANSWER_BOUND {
        if watch.query_one(&holder, &[]).unwrap().get::<_, i64>(0) > 0 {
            held_at = Some(start.elapsed());
        }
    }
    net.cut();
    let cut = Instant::now();
    let held_at = held_at.expect("P held the write lock while it published");
    let tally = Tally::during(&all[..2], &tokens, "cut", USN2, cut + 2 * OUTAGE);
    let still_held = watch.query_one(&holder, &[]).unwrap().get::<_, i64>(0);
    net.restore();
    let outage = cut.elapsed();
    say(&format!(
        "lock holder: P seen holding the write lock {held_at:?} into its publication, cut off \
         for {outage:?}; A and B meanwhile: answers by status {:?}, slowest {:?}, {} instances \
         acknowledged, publication: {:?}; P's sessions holding the lock at the end: {still_held}",
        tally.statuses,
        tally.slowest,
        tally.acked.len(),
        tally.published
    ));
    assert!(
        tally.statuses.keys().all(|s| (200..300).contains(s)),
        "A and B answer while P is cut off: {:?}",
        tally.statuses
    );
    assert_eq!(still_held, 0, "PostgreSQL still holds the lock for P");

    let answer = request.join().unwrap();
    let status = answer.as_ref().map(|(s, _)| *s);
    // P learns that its sessions are gone when it next uses them (a 503
    // or two, then it reconnects and reloads).
    let back = Instant::now();
    for node in &all {
        wait_until(
            &format!("{} answers reads", node.addr),
            Duration::from_secs(30),
            || {
                node.call("GET", "/v1/notices?limit=1", &tokens[1].1, None)
                    .0
                    == 200
            },
        );
    }
    let reads_after = back.elapsed();
    let listed = same_catalog(&all, Duration::from_secs(30));
    assert_kept(&listed, &tally);
    let first: usize = tokens
        .iter()
        .map(|(_, token)| feed_ids(all[0], token, USN).len())
        .sum();
    assert!(
        first == 0 || first == listed.len(),
        "P's publication half committed: {first} notices for {} artifacts",
        listed.len()
    );
    if first == 0 {
        assert!(
            !matches!(status, Ok(200..=299)),
            "an acknowledged publication was lost"
        );
        let published = all[0].publish(&tokens[0].1, USN);
        assert_eq!(published["affected"], listed.len(), "{published}");
    }
    let notices = same_notices(&all, &tokens);
    assert_eq!(notices, 2 * listed.len(), "two advisories, every artifact");
    assert!(listed.len() >= expected);
    let p = all[2];
    let again = writes_again(p, &tokens[1].1, "from-p", Duration::from_secs(60));
    let listed = same_catalog(&all, Duration::from_secs(10));
    assert_eq!(listed.last().map(String::as_str), Some("from-p"));
    all[0].wait_drained(Duration::from_secs(60));
    let records = rx.records();
    let dups: Vec<usize> = [USN, USN2]
        .iter()
        .map(|a| delivered_once_or_more(all[0], &records, &tokens, a, listed.len()))
        .collect();
    say(&format!(
        "lock holder: P's publication answered {status:?} ({}); every node answered reads \
         {reads_after:?} after the link came back; every node lists the same {} artifacts \
         and {notices} notices; P took a write {again:?} later; every notice delivered (more \
         than once: {dups:?})",
        if first == 0 {
            "rolled back, published again on A"
        } else {
            "committed"
        },
        listed.len()
    ));
    drop(all);
    stop_all(std::mem::take(&mut d.nodes));
}
