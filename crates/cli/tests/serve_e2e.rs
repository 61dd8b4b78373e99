//! End-to-end tests of `patchline serve`: the real binary over real HTTP,
//! its webhooks received by `receiver.py`, which checks every signature with
//! an independent Standard Webhooks implementation (PyPI `standardwebhooks`).
//!
//! They need `PATCHLINE_TEST_PYTHON` to name a Python that can import
//! `standardwebhooks` (`.ci/run` sets it up); without it each test fails in
//! CI and, elsewhere, says that it did not run. What they share with the
//! fault tests (`faults.rs`) is in `common/e2e.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::e2e::*;
use patchline_testkit::postgres::TestDb;
use serde_json::{Value, json};

// ----- the tests -----

#[test]
fn tenants_receive_exactly_their_notices() {
    tenants_receive_exactly_their_notices_on("tenants_receive_exactly_their_notices", false);
}

/// The same on a PostgreSQL store (`serve --store`).
#[test]
fn tenants_receive_exactly_their_notices_postgres() {
    tenants_receive_exactly_their_notices_on(
        "tenants_receive_exactly_their_notices_postgres",
        true,
    );
}

fn tenants_receive_exactly_their_notices_on(test: &str, postgres: bool) {
    let Some(py) = python(test) else {
        return;
    };
    let db = if postgres {
        let Some(db) = TestDb::create(test) else {
            return;
        };
        Some(db)
    } else {
        None
    };
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let rx = Receiver::start(&py, tmp.path(), &[]);
    let srv = Server::start_on(
        &tmp.path().join("data"),
        FAST_RETRY,
        db.as_ref().map(|d| d.url.as_str()),
    );

    let canonical = srv.tenant("canonical", "publisher");
    let acme = srv.tenant("acme", "tenant");
    let globex = srv.tenant("globex", "tenant");
    let tenants = [
        ("canonical", &canonical),
        ("acme", &acme),
        ("globex", &globex),
    ];
    let mut secrets = BTreeMap::new();
    for (name, token) in tenants {
        let path = format!("/{name}");
        secrets.insert(path.clone(), srv.subscribe(token, &rx.url(&path)).1);
    }
    rx.set_secrets(&secrets);

    srv.artifact(
        &canonical,
        json!({"id": "ubuntu-18.04", "kind": "image", "visibility": "public",
               "name": "Ubuntu 18.04 LTS", "components": purls}),
    );
    for (id, kind, parent) in [
        ("acme-web", "image", "ubuntu-18.04"),
        ("acme-tpl", "template", "acme-web"),
        ("acme-rep", "replica", "acme-tpl"),
        ("acme-vm-1", "instance", "acme-rep"),
        ("acme-vm-2", "instance", "acme-tpl"),
        ("acme-vm-3", "instance", "acme-web"),
    ] {
        srv.artifact(&acme, json!({"id": id, "kind": kind, "parent": parent}));
    }
    let upgraded: Vec<Value> = purls
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            if p.starts_with("pkg:deb/ubuntu/libbz2-1.0@") || p.starts_with("pkg:deb/ubuntu/bzip2@")
            {
                json!(p.replace("@1.0.6-8.1?", "@1.0.6-8.1ubuntu0.1?"))
            } else {
                json!(p)
            }
        })
        .collect();
    assert_ne!(upgraded, purls);
    for doc in [
        json!({"id": "globex-vm-1", "kind": "instance", "parent": "ubuntu-18.04"}),
        json!({"id": "globex-vm-2", "kind": "instance", "parent": "ubuntu-18.04"}),
        json!({"id": "globex-fixed", "kind": "image", "parent": "ubuntu-18.04",
               "components": upgraded}),
        json!({"id": "globex-fixed-tpl", "kind": "template", "parent": "globex-fixed"}),
        json!({"id": "globex-fixed-vm", "kind": "instance", "parent": "globex-fixed-tpl"}),
    ] {
        srv.artifact(&globex, doc);
    }

    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], 9, "{published}");

    // What the service says is affected (admin: every tenant, full paths)
    // is what the lineage above makes affected.
    let report = srv.ok(
        "GET",
        &format!("/v1/advisories/{USN}/affected"),
        ADMIN,
        None,
    );
    let affected: BTreeMap<String, (String, Value)> = report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let id = a["artifact"].as_str().unwrap().to_string();
            let tenant = a["tenant"].as_str().unwrap().to_string();
            (id, (tenant, a["path"].clone()))
        })
        .collect();
    let expected: BTreeSet<&str> = [
        "ubuntu-18.04",
        "acme-web",
        "acme-tpl",
        "acme-rep",
        "acme-vm-1",
        "acme-vm-2",
        "acme-vm-3",
        "globex-vm-1",
        "globex-vm-2",
    ]
    .into();
    assert_eq!(
        affected.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(
        affected["acme-vm-1"].1,
        json!([
            "ubuntu-18.04",
            "acme-web",
            "acme-tpl",
            "acme-rep",
            "acme-vm-1"
        ])
    );

    let of_tenant = |t: &str| -> BTreeSet<String> {
        affected
            .iter()
            .filter(|(_, (owner, _))| owner == t)
            .map(|(a, _)| a.clone())
            .collect()
    };
    wait_until(
        "every affected artifact is delivered",
        Duration::from_secs(20),
        || {
            let records = rx.records();
            tenants.iter().all(|(t, _)| {
                let path = format!("/{t}");
                strings(&all_of(accepted(&records, &path), "artifacts")) == of_tenant(t)
            })
        },
    );
    srv.wait_drained(Duration::from_secs(20));

    let records = rx.records();
    assert_signed(&records);
    for (t, token) in tenants {
        let path = format!("/{t}");
        let mine: Vec<&Value> = records.iter().filter(|r| r["path"] == path).collect();
        assert!(
            mine.iter().all(|r| r["status"] == 204),
            "{t}: failed requests {mine:?}"
        );
        let got = accepted(&records, &path);
        let notice_ids = all_of(got.iter().copied(), "notice_ids");
        // Only the tenant's own artifacts, each exactly as the report has it.
        assert!(
            all_of(got.iter().copied(), "tenant_of_each_notice")
                .iter()
                .all(|x| x == t),
            "{t} received notices about other tenants' artifacts: {mine:?}"
        );
        for r in got.iter().copied() {
            for (a, p) in r["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .zip(r["paths"].as_array().unwrap())
            {
                assert_eq!(&affected[a.as_str().unwrap()].1, p, "path of {a}");
            }
        }
        assert_eq!(
            strings(&all_of(got.iter().copied(), "advisories")),
            BTreeSet::from([USN.to_string()])
        );
        assert_eq!(
            strings(&all_of(got.iter().copied(), "artifacts")),
            of_tenant(t),
            "{t}"
        );
        // Exactly the notices the tenant reads from its feed, each once.
        let feed: BTreeMap<i64, Value> = srv
            .notices(token)
            .iter()
            .map(|n| (n["notice_id"].as_i64().unwrap(), n["artifact"].clone()))
            .collect();
        let pushed: BTreeMap<i64, Value> = notice_ids
            .iter()
            .map(|n| n.as_i64().unwrap())
            .zip(all_of(got.iter().copied(), "artifacts"))
            .collect();
        assert_eq!(pushed, feed, "{t}");
        assert_eq!(notice_ids.len(), feed.len(), "{t}: duplicates");
    }
    for masked in ["globex-fixed", "globex-fixed-tpl", "globex-fixed-vm"] {
        assert!(!affected.contains_key(masked));
        assert!(
            !all_of(records.iter(), "artifacts").contains(&json!(masked)),
            "{masked} is masked but was notified"
        );
    }

    // Instances created after the advisory are checked at once: the masked
    // one stays quiet, the affected one is pushed without waiting for
    // anything else.
    srv.artifact(
        &globex,
        json!({"id": "globex-fixed-vm-late", "kind": "instance", "parent": "globex-fixed"}),
    );
    let start = Instant::now();
    let late = srv.artifact(
        &acme,
        json!({"id": "acme-vm-late", "kind": "instance", "parent": "acme-rep"}),
    );
    assert_eq!(late["affected_by"], json!([USN]), "{late}");
    wait_until(
        "the late instance is delivered",
        Duration::from_secs(5),
        || all_of(accepted(&rx.records(), "/acme"), "artifacts").contains(&json!("acme-vm-late")),
    );
    say(&format!(
        "late instance delivered {:?} after its creation",
        start.elapsed()
    ));
    srv.wait_drained(Duration::from_secs(10));
    let records = rx.records();
    assert_signed(&records);
    let artifacts = all_of(records.iter(), "artifacts");
    assert!(!artifacts.contains(&json!("globex-fixed-vm-late")));
    assert_eq!(artifacts.iter().filter(|a| *a == "acme-vm-late").count(), 1);
    assert!(
        all_of(records.iter().filter(|r| r["path"] != "/acme"), "artifacts")
            .iter()
            .all(|a| a != "acme-vm-late")
    );
}

/// Tenants and instances per tenant of the crash test.
const CRASH_TENANTS: usize = 20;
const CRASH_INSTANCES: usize = 520;
/// Instances imported while the service is down.
const CRASH_LATE: usize = 50;

/// `patchline import artifacts` of these JSON lines (the service stopped).
fn import_artifacts(data: &Path, lines: &[String]) {
    let jsonl = data.with_extension("jsonl");
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["import", "artifacts"])
        .arg(&jsonl)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn crash_mid_fanout_loses_nothing() {
    let Some(py) = python("crash_mid_fanout_loses_nothing") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let purls = ubuntu_purls(tmp.path());

    // The cloud, imported before the service starts.
    let mut lines = vec![
        json!({"id": "base", "kind": "image", "tenant": "canonical", "visibility": "public",
               "components": purls})
        .to_string(),
    ];
    let names: Vec<String> = (0..CRASH_TENANTS).map(|t| format!("t{t:02}")).collect();
    for t in &names {
        for i in 0..CRASH_INSTANCES {
            lines.push(
                json!({"id": format!("{t}-vm-{i:04}"), "kind": "instance", "tenant": t,
                       "parent": "base"})
                .to_string(),
            );
        }
    }
    import_artifacts(&data, &lines);

    // A slow receiver, so that the crash comes in the middle of the fan-out.
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    let mut srv = Server::start(&data, FAST_RETRY);
    let canonical = srv.tenant("canonical", "publisher");
    let tokens = subscribed(&srv, &rx, &canonical, &names);

    let mut expected_notices = CRASH_TENANTS * CRASH_INSTANCES + 1;
    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], expected_notices, "{published}");
    let queued: f64 = srv.deliveries().values().sum();
    wait_until(
        "the first delivery arrives",
        Duration::from_secs(20),
        || !rx.records().is_empty(),
    );
    srv.kill();
    let at_kill = rx.records().len();
    say(&format!(
        "crash: killed the server with {at_kill} of {queued} deliveries received"
    ));
    assert!(
        (at_kill as f64) < queued,
        "the crash came after the fan-out"
    );

    // While it is down, instances are imported: the restart records their
    // notices. What was not acknowledged before the crash is sent again.
    let late: Vec<String> = (0..CRASH_LATE)
        .map(|i| {
            json!({"id": format!("t00-late-{i:03}"), "kind": "instance", "tenant": "t00",
                   "parent": "base"})
            .to_string()
        })
        .collect();
    import_artifacts(&data, &late);
    expected_notices += CRASH_LATE;
    let srv = Server::start(&data, FAST_RETRY);
    srv.wait_drained(Duration::from_secs(60));
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, USN, expected_notices);
    say(&format!(
        "crash: all {expected_notices} notices delivered; {duplicates} delivered twice"
    ));

    // The receiver down: deliveries fail and are retried until it is back;
    // its first answers after that are errors too.
    rx.stop();
    let failed_before = srv.metrics()["patchline_webhook_failed_total"];
    let second = "USN-4108-1";
    let published = srv.publish(&canonical, second);
    assert_eq!(published["affected"], expected_notices, "{published}");
    let queued = srv.unfinished();
    assert!(queued > 0.0);
    wait_until(
        "every delivery failed three times against the stopped receiver",
        Duration::from_secs(20),
        || srv.metrics()["patchline_webhook_failed_total"] - failed_before >= 3.0 * queued,
    );
    rx.spawn(&["--fail-first", "5"]);
    srv.wait_drained(Duration::from_secs(60));
    assert_eq!(srv.deliveries().get("dead"), Some(&0.0));
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, second, expected_notices);
    say(&format!(
        "receiver down: all {expected_notices} notices delivered; {duplicates} delivered twice"
    ));
    // A retry is the same message: it keeps its webhook id.
    let records = rx.records();
    let refused: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["status"] == 503)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(records.iter().filter(|r| r["status"] == 503).count(), 5);
    assert!(!refused.is_empty());
    let delivered: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["status"] == 204)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert!(refused.is_subset(&delivered), "{refused:?}");
}

#[test]
fn gone_disables_and_dead_letters_replay() {
    gone_disables_and_dead_letters_replay_on("gone_disables_and_dead_letters_replay", false);
}

/// The same on a PostgreSQL store (`serve --store`).
#[test]
fn gone_disables_and_dead_letters_replay_postgres() {
    gone_disables_and_dead_letters_replay_on(
        "gone_disables_and_dead_letters_replay_postgres",
        true,
    );
}

fn gone_disables_and_dead_letters_replay_on(test: &str, postgres: bool) {
    let Some(py) = python(test) else {
        return;
    };
    let db = if postgres {
        let Some(db) = TestDb::create(test) else {
            return;
        };
        Some(db)
    } else {
        None
    };
    let tmp = tempfile::tempdir().unwrap();
    // A slow 410: more deliveries are queued while the first one is out.
    let mut rx = Receiver::start(&py, tmp.path(), &["--status", "410", "--delay-ms", "1000"]);
    let srv = Server::start_on(
        &tmp.path().join("data"),
        FAST_RETRY,
        db.as_ref().map(|d| d.url.as_str()),
    );
    let canonical = srv.tenant("canonical", "publisher");
    let initech = srv.tenant("initech", "tenant");
    let (sub, secret) = srv.subscribe(&initech, &rx.url("/initech"));
    rx.set_secrets(&BTreeMap::from([("/initech".to_string(), secret)]));
    srv.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [
            "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04",
            "pkg:deb/ubuntu/bzip2@1.0.6-8.1?arch=amd64&distro=ubuntu-18.04"]}),
    );
    let instance = |i: usize| {
        srv.artifact(
            &initech,
            json!({"id": format!("vm-{i}"), "kind": "instance", "parent": "base"}),
        );
    };
    (0..3).for_each(instance);
    let start = Instant::now();
    srv.publish(&canonical, USN);
    (3..5).for_each(instance);
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "too slow to queue the deliveries before the first 410"
    );
    let feed = |srv: &Server| -> BTreeMap<i64, String> {
        srv.notices(&initech)
            .iter()
            .map(|n| {
                let id = n["notice_id"].as_i64().unwrap();
                (id, n["artifact"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let before: BTreeSet<i64> = feed(&srv).into_keys().collect();
    assert_eq!(before.len(), 5);

    let sub_path = format!("/v1/subscriptions/{sub}");
    wait_until(
        "the subscription is disabled",
        Duration::from_secs(20),
        || srv.ok("GET", &sub_path, &initech, None)["state"] == "disabled",
    );
    // One more notice while the subscription is disabled.
    instance(5);
    let during: Vec<i64> = feed(&srv)
        .into_iter()
        .filter(|(_, a)| a == "vm-5")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(during.len(), 1);

    // Every delivery is a dead letter, each after its own 410 was recorded,
    // or, for the notice made while the subscription was disabled, recorded
    // straight into the dead letters.
    let dead_path = format!("{sub_path}/deliveries?state=dead");
    let mut dead = Vec::new();
    wait_until("the deliveries are dead", Duration::from_secs(20), || {
        dead = srv.ok("GET", &dead_path, &initech, None)["deliveries"]
            .as_array()
            .unwrap()
            .clone();
        ids(&all_of(dead.iter(), "notices")).is_superset(&before)
            && ids(&all_of(dead.iter(), "notices")).contains(&during[0])
            && dead.iter().all(|d| {
                d["attempts"].as_i64() >= Some(1) || d["last_error"] == "subscription disabled"
            })
    });
    srv.wait_drained(Duration::from_secs(20));
    let records = rx.records();
    assert_signed(&records);
    assert!(!records.is_empty() && records.iter().all(|r| r["status"] == 410));

    // Enabled again, the receiver healthy: the replay delivers them all.
    let enabled = srv.ok("POST", &format!("{sub_path}/enable"), &initech, None);
    assert_eq!(enabled["state"], "active");
    rx.stop();
    rx.spawn(&[]);
    let replayed = srv.ok("POST", &format!("{sub_path}/replay"), &initech, None);
    assert_eq!(replayed["replayed"], dead.len(), "{replayed}");
    wait_until("the replay is delivered", Duration::from_secs(20), || {
        ids(&all_of(accepted(&rx.records(), "/initech"), "notice_ids")).is_superset(&before)
    });
    srv.wait_drained(Duration::from_secs(20));
    let records = rx.records();
    assert_signed(&records);
    let dead_after = srv.ok("GET", &dead_path, &initech, None);
    assert_eq!(dead_after["deliveries"], json!([]), "{dead_after}");
    assert_eq!(srv.ok("GET", &sub_path, &initech, None)["state"], "active");
    // The replay resends the same messages (same webhook ids).
    let webhook_ids = |status: i64| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["status"] == status)
            .map(|r| r["webhook_id"].as_str().unwrap().to_string())
            .collect()
    };
    let dead_ids: BTreeSet<String> = dead
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(webhook_ids(204), dead_ids);
    assert!(webhook_ids(410).is_subset(&dead_ids));

    // The notice recorded while the subscription was disabled reaches the
    // webhook after enable + replay too, like the ones that were pending.
    let received = ids(&all_of(accepted(&records, "/initech"), "notice_ids"));
    let all = srv.ok("GET", &format!("{sub_path}/deliveries"), &initech, None);
    assert!(
        received.contains(&during[0]),
        "notice {} (vm-5, created while the subscription was disabled) never reached the \
         webhook after enable + replay: no delivery carries it, so it is not a dead letter \
         and replay cannot bring it; deliveries: {all}",
        during[0]
    );
}

/// `serve --store postgres://…`: one node per database (a second is
/// refused with a clear message while the first runs), SIGKILL in the
/// middle of deliveries loses nothing (a new node on the same database —
/// with another, empty data directory — delivers the rest), and the state
/// is the database's, not the data directory's.
#[test]
fn postgres_store_one_node_and_kill() {
    let test = "postgres_store_one_node_and_kill";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "300"]);
    let mut srv = Server::start_on(&tmp.path().join("a"), FAST_RETRY, Some(&db.url));

    let second = Server::try_start(&tmp.path().join("b"), FAST_RETRY, Some(&db.url));
    let why = second
        .err()
        .expect("a second node on the same database is refused");
    assert!(
        why.contains("another patchline node is serving the PostgreSQL database"),
        "{why}"
    );
    assert!(!why.contains("password"), "{why}");

    let canonical = srv.tenant("canonical", "publisher");
    let names: Vec<String> = (0..5).map(|t| format!("t{t}")).collect();
    let tokens = subscribed(&srv, &rx, &canonical, &names);
    srv.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": purls}),
    );
    let per_tenant = 120;
    for (t, token) in tokens.iter().skip(1) {
        for i in 0..per_tenant {
            srv.artifact(
                token,
                json!({"id": format!("{t}-vm-{i:03}"), "kind": "instance", "parent": "base"}),
            );
        }
    }
    let expected = names.len() * per_tenant + 1;
    let published = srv.publish(&canonical, USN);
    assert_eq!(published["affected"], expected, "{published}");
    let queued: f64 = srv.deliveries().values().sum();
    // Killed while deliveries are out (the receiver answers after 300 ms).
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        srv.deliveries().get("in_flight").is_some_and(|n| *n > 0.0)
    });
    srv.kill();
    let at_kill = rx.records().len();
    say(&format!(
        "postgres: killed the node with {at_kill} of {queued} deliveries received"
    ));
    assert!(
        (at_kill as f64) < queued,
        "the kill came after the deliveries"
    );

    // The killed node's session ends with it, and its hold with it.
    let mut started = None;
    wait_until(
        "a new node starts on the database",
        Duration::from_secs(20),
        || match Server::try_start(&tmp.path().join("b"), FAST_RETRY, Some(&db.url)) {
            Ok(s) => {
                started = Some(s);
                true
            }
            Err(_) => false,
        },
    );
    let srv = started.unwrap();
    srv.wait_drained(Duration::from_secs(60));
    let duplicates = delivered_once_or_more(&srv, &rx.records(), &tokens, USN, expected);
    say(&format!(
        "postgres: all {expected} notices delivered; {duplicates} delivered twice"
    ));
    // The data directories hold no catalog: the database does.
    for d in ["a", "b"] {
        assert!(!tmp.path().join(d).join("patchline.db").exists());
    }
    // A graceful stop ends with 0 (it aborted with 134: the database
    // clients were dropped on the runtime's threads).
    let (status, log) = srv.process.stop_with_status();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    rx.stop();
}

/// Three nodes on one PostgreSQL database and one NATS bus are one
/// deployment: tenants, subscriptions and artifacts made on any node, an
/// advisory published on one, that node SIGKILLed while its deliveries are
/// out — every notice reaches its tenant's webhook (signatures checked by
/// the reference implementation), the dead node's leased deliveries are
/// taken over by the others, an event stream on a third node receives the
/// notices caused on the first, and a stream resumed with `Last-Event-ID`
/// on another node gets exactly the rest.
#[test]
fn three_nodes_one_deployment_and_kill() {
    let test = "three_nodes_one_deployment_and_kill";
    let Some(py) = python(test) else {
        return;
    };
    let Some(db) = TestDb::create(test) else {
        return;
    };
    let Some(bus) = patchline_testkit::nats::nats_url(test) else {
        return;
    };
    let prefix = format!("e2e{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let purls = ubuntu_purls(tmp.path());
    let mut rx = Receiver::start(&py, tmp.path(), &["--delay-ms", "2000"]);
    let mut nodes: Vec<Server> = ["a", "b", "c"]
        .iter()
        .map(|n| Server::start_node(&tmp.path().join(n), FAST_RETRY, &db.url, &bus, &prefix))
        .collect();

    let canonical = nodes[0].tenant("canonical", "publisher");
    let names: Vec<String> = (0..6).map(|t| format!("t{t}")).collect();
    // Tenants and subscriptions made on B, the image on A.
    let tokens = subscribed(&nodes[1], &rx, &canonical, &names);
    nodes[0].artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": purls}),
    );
    // An event stream of t1 on C, before anything affects it.
    let (t1, t1_token) = tokens[2].clone();
    assert_eq!(t1, "t1");
    let live = EventStream::open(&nodes[2].addr, &t1_token, None);
    // Instances made on every node in turn (each validated against the
    // image made on A).
    let per_tenant = 60;
    for (i, (t, token)) in tokens.iter().skip(1).enumerate() {
        for j in 0..per_tenant {
            nodes[(i + j) % 3].artifact(
                token,
                json!({"id": format!("{t}-vm-{j:03}"), "kind": "instance", "parent": "base"}),
            );
        }
    }
    let expected = names.len() * per_tenant + 1;
    let published = nodes[0].publish(&canonical, USN);
    assert_eq!(published["affected"], expected, "{published}");

    // A — the node that published, so the one whose workers were woken
    // first and took the deliveries — dies while they are out (the
    // receiver answers after 2 s).
    wait_until("deliveries are in flight", Duration::from_secs(20), || {
        nodes[2]
            .deliveries()
            .get("in_flight")
            .is_some_and(|n| *n > 0.0)
    });
    nodes[0].kill();
    let at_kill = rx.records().len();
    say(&format!(
        "three nodes: killed A with {at_kill} messages received, {:?} deliveries by state",
        nodes[2].deliveries()
    ));
    // A's leases run out (20 s) and another node sends what A held.
    nodes[2].wait_drained(Duration::from_secs(90));
    let duplicates = delivered_once_or_more(&nodes[2], &rx.records(), &tokens, USN, expected);
    let sent_by: Vec<f64> = [&nodes[1], &nodes[2]]
        .iter()
        .map(|n| {
            n.metrics()
                .get("patchline_webhook_delivered_total")
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    assert!(
        sent_by.iter().sum::<f64>() > 0.0,
        "no other node took over A's deliveries"
    );
    say(&format!(
        "three nodes: all {expected} notices delivered ({duplicates} twice); messages sent by B and C after the kill: {sent_by:?}"
    ));

    // The stream on C got every notice of t1, made on A.
    let feed = feed_ids(&nodes[2], &t1_token, USN);
    assert_eq!(feed.len(), per_tenant);
    wait_until(
        "the stream on C receives t1's notices",
        Duration::from_secs(10),
        || {
            let got: BTreeSet<i64> = live.ids().into_iter().collect();
            feed.iter().all(|id| got.contains(id))
        },
    );
    // Resumed on B after the middle one: exactly the rest.
    let mid = feed[feed.len() / 2];
    let resumed = EventStream::open(&nodes[1].addr, &t1_token, Some(mid));
    let rest: Vec<i64> = feed.iter().copied().filter(|id| *id > mid).collect();
    wait_until("the stream resumed on B", Duration::from_secs(10), || {
        resumed.ids() == rest
    });
    drop((live, resumed));

    for node in [nodes.remove(2), nodes.remove(1)] {
        let (status, log) = node.process.stop_with_status();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    rx.stop();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let bus = patchline_bus::Bus::connect(patchline_bus::BusConfig::new(
                bus,
                patchline_bus::BusPrefix::new(&prefix).unwrap(),
            ))
            .await
            .unwrap();
            bus.delete_streams().await.unwrap();
        });
}
