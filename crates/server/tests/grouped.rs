//! Grouped notices end to end: one entry per root cause (record, top-most
//! `introduced_by`, remedy step) on a grouped webhook, by pull and on the
//! event stream with `grouping=grouped`; per-artifact entries for
//! `"grouping": "artifact"`; an artifact that joins later updates its
//! group (same `notice_id`, new `webhook-id`); acknowledging a group
//! acknowledges its open notices; the group's notices page; tenancy.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{ADMIN, Api, FIXED, Received, VULNERABLE, receiver, usn_4038};
use patchline_core::Clock;
use serde_json::{Value, json};

/// The notice messages that reached `path`, once at least `n` did.
async fn wait_for(got: &Received, path: &str, n: usize) -> Vec<Value> {
    common::wait_for(got, path, "dev.patchline.notice", n).await
}

fn entries(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .flat_map(|m| m["data"]["notices"].as_array().unwrap().clone())
        .collect()
}

/// Grouped entries by their step: (action, artifact) -> entry.
fn by_step(entries: &[Value]) -> BTreeMap<(String, String), Value> {
    entries
        .iter()
        .map(|e| {
            assert_eq!(e["grouping"], "grouped", "{e}");
            (
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["artifact"].as_str().unwrap().to_string(),
                ),
                e.clone(),
            )
        })
        .collect()
}

fn member_ids(entry: &Value) -> Vec<String> {
    let mut ids: Vec<String> = entry["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifact"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn subscribe(api: &Api, token: &str, url: &str, grouping: Option<&str>) {
    let mut body = json!({"channel": {"type": "webhook", "url": url}});
    if let Some(g) = grouping {
        body["grouping"] = json!(g);
    }
    let (s, v) = api
        .call("POST", "/v1/subscriptions", Some(token), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notice_per_root_cause_and_its_artifacts_underneath() {
    let (url, got) = receiver().await;
    let api = Api::new();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    let beta = api.tenant("beta", &["tenant"]).await;
    subscribe(&api, &acme, &format!("{url}/acme-g"), None).await;
    subscribe(&api, &acme, &format!("{url}/acme-a"), Some("artifact")).await;
    subscribe(&api, &beta, &format!("{url}/beta"), Some("grouped")).await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": format!("{url}/x")}, "grouping": "per_artifact"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "an unknown grouping is refused: {v}"
    );
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    // acme: a template with 30 instances (one rebase), two instances
    // straight from the base (one relaunch), an image of its own that
    // brought the component in itself (one rebuild).
    api.artifact(
        &acme,
        json!({"id": "acme-tpl", "kind": "template", "parent": "base"}),
    )
    .await;
    for i in 0..30 {
        api.artifact(
            &acme,
            json!({"id": format!("acme-vm{i:02}"), "kind": "instance", "parent": "acme-tpl"}),
        )
        .await;
    }
    for i in 0..2 {
        api.artifact(
            &acme,
            json!({"id": format!("acme-direct{i}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    api.artifact(
        &acme,
        json!({"id": "acme-own", "kind": "image", "components": [VULNERABLE]}),
    )
    .await;
    for i in 0..2 {
        api.artifact(
            &beta,
            json!({"id": format!("beta-vm{i}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    // A grouped stream, open before the publication.
    let mut stream = common::open_stream(&api, &acme, "?grouping=grouped", None).await;
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // The grouped webhook: one message, one entry per root cause.
    let grouped = wait_for(&got, "/acme-g", 1).await;
    let steps = by_step(&entries(&grouped));
    assert_eq!(
        steps.keys().cloned().collect::<Vec<_>>(),
        vec![
            ("rebase".to_string(), "acme-tpl".to_string()),
            ("rebuild".to_string(), "acme-own".to_string()),
            ("relaunch".to_string(), "base".to_string()),
        ],
        "{grouped:#?}"
    );
    let rebase = &steps[&("rebase".to_string(), "acme-tpl".to_string())];
    assert_eq!(rebase["advisory"], "USN-4038-1");
    assert_eq!(rebase["kind"], "template");
    assert_eq!(rebase["introduced_by"], "base");
    assert_eq!(rebase["path"], json!(["base", "acme-tpl"]));
    assert_eq!(rebase["tenant"], "acme");
    assert_eq!(rebase["components"][0]["purl"], VULNERABLE);
    assert_eq!(rebase["artifacts"].as_array().unwrap().len(), 31);
    assert_eq!(rebase["artifacts_open"], 31);
    let mut expected: Vec<String> = (0..30).map(|i| format!("acme-vm{i:02}")).collect();
    expected.push("acme-tpl".into());
    expected.sort();
    assert_eq!(member_ids(rebase), expected);
    let relaunch = &steps[&("relaunch".to_string(), "base".to_string())];
    assert_eq!(member_ids(relaunch), vec!["acme-direct0", "acme-direct1"]);
    assert_eq!(relaunch["path"], json!(["base"]));
    let rebuild = &steps[&("rebuild".to_string(), "acme-own".to_string())];
    assert_eq!(member_ids(rebuild), vec!["acme-own"]);
    assert_eq!(rebuild["introduced_by"], "acme-own");
    // No successor yet: the rebase and the relaunch wait for the base's.
    assert_eq!(
        (rebase["waits_for"].as_str(), rebase.get("onto")),
        (Some("base"), None)
    );
    assert_eq!(relaunch["waits_for"], "base");
    assert!(rebuild.get("waits_for").is_none() && rebuild.get("onto").is_none());
    let group_ids: Vec<i64> = steps
        .values()
        .map(|e| e["notice_id"].as_i64().unwrap())
        .collect();
    let rebase_id = rebase["notice_id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wait_for(&got, "/acme-g", 1).await.len(),
        1,
        "34 notices of three root causes are one message"
    );
    // The per-artifact webhook: exactly today's notices, one per artifact.
    let flat = entries(&wait_for(&got, "/acme-a", 1).await);
    assert_eq!(flat.len(), 34, "{flat:#?}");
    assert!(flat.iter().all(|e| e.get("grouping").is_none()));
    for e in &flat {
        assert!(!group_ids.contains(&e["notice_id"].as_i64().unwrap()));
    }
    // beta: its own group only, nothing of acme's.
    let beta_msgs = wait_for(&got, "/beta", 1).await;
    let beta_steps = by_step(&entries(&beta_msgs));
    assert_eq!(beta_steps.len(), 1);
    let beta_group = &beta_steps[&("relaunch".to_string(), "base".to_string())];
    assert_eq!(member_ids(beta_group), vec!["beta-vm0", "beta-vm1"]);
    assert!(!group_ids.contains(&beta_group["notice_id"].as_i64().unwrap()));
    assert!(!serde_json::to_string(&beta_msgs).unwrap().contains("acme"));

    // The grouped stream: one event per root cause; resuming from the
    // first event's id gives the rest again, none missing.
    let events = common::read_events(&mut stream, 3).await;
    assert!(events.iter().all(|(e, _, _)| e == "group"), "{events:#?}");
    let streamed: Vec<i64> = events
        .iter()
        .map(|(_, _, d)| d["notice_id"].as_i64().unwrap())
        .collect();
    let mut sorted = streamed.clone();
    sorted.sort();
    let mut want = group_ids.clone();
    want.sort();
    assert_eq!(sorted, want);
    assert!(events.windows(2).all(|w| w[0].1 < w[1].1), "ids increase");
    drop(stream);
    let mut resumed =
        common::open_stream(&api, &acme, "?grouping=grouped", Some(events[0].1)).await;
    let again = common::read_events(&mut resumed, 2).await;
    let again_ids: Vec<i64> = again
        .iter()
        .map(|(_, _, d)| d["notice_id"].as_i64().unwrap())
        .collect();
    assert_eq!(again_ids, streamed[1..].to_vec());
    drop(resumed);

    // Pull, grouped and per artifact.
    let page = api.grouped_notices(&acme).await;
    assert_eq!(by_step(&page).len(), 3);
    assert_eq!(
        api.notices(&acme).await.len(),
        34,
        "artifact is the pull default"
    );
    let (s, v) = api
        .call("GET", "/v1/notices?grouping=nope", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // An instance that joins later updates its group: same notice_id, a
    // new message (webhook-id).
    api.artifact(
        &acme,
        json!({"id": "acme-vm30", "kind": "instance", "parent": "acme-tpl"}),
    )
    .await;
    let grouped = wait_for(&got, "/acme-g", 2).await;
    assert_ne!(grouped[0]["id"], grouped[1]["id"]);
    let late = entries(&grouped[1..]);
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(late[0]["notice_id"], rebase_id);
    assert_eq!(member_ids(&late[0]), vec!["acme-vm30"]);
    assert_eq!(late[0]["artifacts_open"], 32);

    // The group's notices, page by page; another tenant's group reads as
    // missing; an admin reads it.
    let (s, first) = api
        .call(
            "GET",
            &format!("/v1/notices/{rebase_id}/artifacts?limit=20"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["notices"].as_array().unwrap().len(), 20);
    let (_, second) = api
        .call(
            "GET",
            &format!(
                "/v1/notices/{rebase_id}/artifacts?limit=20&after={}",
                first["next"]
            ),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(second["notices"].as_array().unwrap().len(), 12);
    for (token, status) in [
        (&beta, StatusCode::NOT_FOUND),
        (&ADMIN.to_string(), StatusCode::OK),
    ] {
        let (s, v) = api
            .call(
                "GET",
                &format!("/v1/notices/{rebase_id}/artifacts"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, status, "{v}");
    }
    let (s, _) = api
        .call("GET", "/v1/notices/999999/artifacts", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Acknowledging the group acknowledges its open notices; beta may not.
    let ack = format!("/v1/notices/{rebase_id}/ack");
    let (s, v) = api.call("POST", &ack, Some(&beta), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api
        .call(
            "POST",
            &ack,
            Some(&acme),
            Some(json!({"state": "not_affected"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a justification is needed: {v}"
    );
    let (s, v) = api.call("POST", &ack, Some(&acme), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["notice_id"].as_i64(), v["changed"].as_u64()),
        (Some(rebase_id), Some(32))
    );
    assert_eq!(v["grouping"], "grouped");
    assert!(
        v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "acknowledged"),
        "{v}"
    );
    let states: BTreeMap<String, String> = api
        .notices(&acme)
        .await
        .iter()
        .map(|n| {
            (
                n["artifact"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (artifact, state) in &states {
        let in_group = artifact == "acme-tpl" || artifact.starts_with("acme-vm");
        assert_eq!(state == "acknowledged", in_group, "{artifact} is {state}");
    }
    let (s, v) = api.call("POST", &ack, Some(&acme), None).await;
    assert_eq!((s, v["changed"].as_u64()), (StatusCode::OK, Some(0)), "{v}");

    // The tenant rebases its template onto a fixed base: the group's
    // notices are remediated and none is open.
    api.artifact(
        &canonical,
        json!({"id": "base-v2", "kind": "image", "visibility": "public",
               "supersedes": "base", "components": [FIXED]}),
    )
    .await;
    // The plan inside the notices: each group now names the successor its
    // step moves onto; a tenant whose first notice comes after the
    // successor exists has it from the start.
    let page = api.grouped_notices(&acme).await;
    let groups = by_step(&page);
    for step in [("rebase", "acme-tpl"), ("relaunch", "base")] {
        let g = &groups[&(step.0.to_string(), step.1.to_string())];
        assert_eq!(
            (g["onto"].as_str(), g.get("waits_for")),
            (Some("base-v2"), None),
            "{g}"
        );
    }
    let gamma = api.tenant("gamma", &["tenant"]).await;
    api.artifact(
        &gamma,
        json!({"id": "gamma-vm", "kind": "instance", "parent": "base"}),
    )
    .await;
    let (_, page) = api
        .call("GET", "/v1/notices?grouping=grouped", Some(&gamma), None)
        .await;
    let g = &page["notices"][0];
    assert_eq!(
        (g["action"].as_str(), g["onto"].as_str()),
        (Some("relaunch"), Some("base-v2")),
        "{page}"
    );
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-tpl",
            Some(&acme),
            Some(json!({"id": "acme-tpl", "kind": "template", "parent": "base-v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call("POST", &ack, Some(&acme), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("closed"),
        "{v}"
    );
    let page = api.grouped_notices(&acme).await;
    let groups = by_step(&page);
    assert_eq!(
        groups[&("rebase".to_string(), "acme-tpl".to_string())]["artifacts_open"],
        0
    );
}

/// The digest messages that reached `path` (any number, after a pause).
async fn digests_at(got: &Received, path: &str) -> Vec<Value> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, b)| p == path && b["type"] == "dev.patchline.digest")
        .map(|(_, b)| b.clone())
        .collect()
}

async fn wait_digests(got: &Received, path: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let d = digests_at(got, path).await;
        if d.len() >= n {
            return d;
        }
    }
    panic!("{path}: fewer than {n} digests");
}

fn schedule_digests(api: &Api, now: i64) -> usize {
    let mut e = api.state.engine.lock().unwrap();
    let n = e.schedule_digests(now).unwrap();
    e.end_write();
    drop(e);
    api.state.wake.notify_one();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_subscription_gets_one_message_on_its_schedule() {
    let (url, got) = receiver().await;
    // 06:00 UTC on a Saturday in November: 07:00 in Paris.
    let start = patchline_core::timestamp::parse_rfc3339("2026-11-28T06:00:00Z")
        .unwrap()
        .as_unix_ms();
    let clock = Arc::new(patchline_core::ManualClock::new(start));
    let c2 = clock.clone();
    let api = Api::with(move |c| c.clock = c2);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    // Bad schedules are refused, saying what is wrong.
    for (body, needle) in [
        (json!({"grouping": "digest"}), "needs a \"digest\" schedule"),
        (
            json!({"grouping": "digest", "digest": {"every": "day", "at": "08:00", "time_zone": "Mars/Olympus"}}),
            "digest.time_zone",
        ),
        (
            json!({"grouping": "digest", "digest": {"every": "day", "at": "8h", "time_zone": "UTC"}}),
            "digest.at",
        ),
        (
            json!({"digest": {"every": "day", "at": "08:00", "time_zone": "UTC"}}),
            "is for \"grouping\": \"digest\"",
        ),
        (
            json!({"grouping": "digest", "digest": {"every": "week", "weekday": "funday", "at": "08:00", "time_zone": "UTC"}}),
            "digest.weekday",
        ),
        (
            json!({"grouping": "digest", "digest": {"every": "month", "at": "08:00", "time_zone": "UTC"}}),
            "digest.every",
        ),
    ] {
        let mut body = body;
        body["channel"] = json!({"type": "webhook", "url": format!("{url}/bad")});
        let (s, v) = api
            .call("POST", "/v1/subscriptions", Some(&acme), Some(body))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    let (s, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(
                json!({"channel": {"type": "webhook", "url": format!("{url}/digest")},
                        "grouping": "digest",
                        "digest": {"every": "day", "at": "08:00", "time_zone": "Europe/Paris"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let (_, view) = api
        .call(
            "GET",
            &format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(view["grouping"], "digest");
    assert_eq!(view["next_digest_at"], "2026-11-28T07:00:00Z", "{view}");
    subscribe(&api, &acme, &format!("{url}/now"), None).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "tpl", "kind": "template", "parent": "base"}),
    )
    .await;
    for i in 0..3 {
        api.artifact(
            &acme,
            json!({"id": format!("vm{i}"), "kind": "instance", "parent": "tpl"}),
        )
        .await;
    }
    api.publish(&canonical, &usn_4038()).await;
    let (s, v) = api
        .call("GET", "/v1/notices?grouping=digest", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a page is not a digest: {v}");
    // The grouped subscription hears at once; the digest waits.
    wait_for(&got, "/now", 1).await;
    assert_eq!(
        schedule_digests(&api, start + 1_800_000),
        0,
        "06:30: not due"
    );
    assert!(digests_at(&got, "/digest").await.is_empty());
    assert!(
        got.lock().unwrap().iter().all(|(p, _)| p != "/digest"),
        "nothing at all reaches a digest subscription between digests"
    );
    // 07:00 UTC (08:00 in Paris): one digest, the group new, open.
    clock.set(start + 3_600_000);
    assert_eq!(schedule_digests(&api, clock.now_ms()), 1);
    let digests = wait_digests(&got, "/digest", 1).await;
    let data = &digests[0]["data"];
    assert_eq!(data["purpose"], "digest");
    let notices = data["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{data}");
    assert_eq!(
        (
            notices[0]["action"].as_str(),
            notices[0]["artifact"].as_str()
        ),
        (Some("rebase"), Some("tpl"))
    );
    assert_eq!(member_ids(&notices[0]), vec!["tpl", "vm0", "vm1", "vm2"]);
    let still = data["still_open"].as_array().unwrap();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0]["artifacts_open"], 4);
    assert_eq!(still[0]["notice_id"], notices[0]["notice_id"]);
    assert!(data["records"]["USN-4038-1"]["summary"].is_string());
    // Not due again the same day.
    assert_eq!(schedule_digests(&api, clock.now_ms() + 60_000), 0);
    // A digest subscription made now, for instances only, at 09:00 in
    // Paris: it starts with the open notices its filter passes.
    let (s, sub2) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(
                json!({"channel": {"type": "webhook", "url": format!("{url}/digest2")},
                        "grouping": "digest", "filter": {"kinds": ["instance"]},
                        "digest": {"every": "day", "at": "09:00", "time_zone": "Europe/Paris"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub2}");

    // During the day one notice is acknowledged: the next digest lists it
    // as changed, and the group is still open (acknowledged is open).
    let vm0 = api
        .notices(&acme)
        .await
        .into_iter()
        .find(|n| n["artifact"] == "vm0")
        .unwrap();
    clock.set(start + 5 * 3_600_000);
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/notices/{}/ack", vm0["notice_id"]),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    clock.set(start + 25 * 3_600_000);
    assert_eq!(schedule_digests(&api, clock.now_ms()), 2, "both are due");
    let second = wait_digests(&got, "/digest2", 1).await;
    let data = &second[0]["data"];
    let notices = data["notices"].as_array().unwrap();
    assert_eq!(member_ids(&notices[0]), vec!["vm0", "vm1", "vm2"], "{data}");
    assert_eq!(notices[0]["artifacts_open"], 3, "its own notices' count");
    assert_eq!(data["still_open"][0]["artifacts_open"], 3);
    let digests = wait_digests(&got, "/digest", 2).await;
    let data = &digests[1]["data"];
    let notices = data["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{data}");
    assert_eq!(member_ids(&notices[0]), vec!["vm0"]);
    assert_eq!(notices[0]["artifacts"][0]["state"], "acknowledged");
    assert_eq!(data["still_open"][0]["artifacts_open"], 4);

    // The tenant rebases onto a fixed base: the next digest has the four
    // remediations and nothing open; the one after has nothing to say and
    // is not sent.
    api.artifact(
        &canonical,
        json!({"id": "base-v2", "kind": "image", "visibility": "public", "supersedes": "base", "components": [FIXED]}),
    )
    .await;
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/tpl",
            Some(&acme),
            Some(json!({"id": "tpl", "kind": "template", "parent": "base-v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    clock.set(start + 49 * 3_600_000);
    assert_eq!(schedule_digests(&api, clock.now_ms()), 2);
    let digests = wait_digests(&got, "/digest", 3).await;
    let data = &digests[2]["data"];
    let notices = data["notices"].as_array().unwrap();
    assert_eq!(member_ids(&notices[0]).len(), 4, "{data}");
    assert!(
        notices[0]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "remediated")
    );
    assert_eq!(data["still_open"], json!([]));
    clock.set(start + 73 * 3_600_000);
    assert_eq!(
        schedule_digests(&api, clock.now_ms()),
        0,
        "nothing new, nothing open"
    );
    let (_, view) = api
        .call(
            "GET",
            &format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(view["next_digest_at"], "2026-12-02T07:00:00Z", "{view}");
}

/// Found from outside: a note with an acknowledgement is bounded (a group
/// copies it onto every notice); a tenant's subscriptions are capped;
/// stream parameters and `Last-Event-ID` are checked like a page's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_acks_subscriptions_and_streams_are_bounded() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "tpl", "kind": "template", "parent": "base"}),
    )
    .await;
    for i in 0..3 {
        api.artifact(
            &acme,
            json!({"id": format!("vm{i}"), "kind": "instance", "parent": "tpl"}),
        )
        .await;
    }
    api.publish(&canonical, &usn_4038()).await;
    let (_, page) = api
        .call("GET", "/v1/notices?grouping=grouped", Some(&acme), None)
        .await;
    let group = page["notices"][0]["notice_id"].as_i64().unwrap();
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/notices/{group}/ack"),
            Some(&acme),
            Some(json!({"state": "acknowledged", "justification": "x".repeat(200_000)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, members) = api
        .call(
            "GET",
            &format!("/v1/notices/{group}/artifacts"),
            Some(&acme),
            None,
        )
        .await;
    for n in members["notices"].as_array().unwrap() {
        // An acknowledgement's note is its detail.
        let note = n["detail"].as_str().unwrap();
        assert!(
            note.len() <= 1024 && note.ends_with("…[truncated]"),
            "{}",
            note.len()
        );
    }
    // Subscriptions: 100 a tenant.
    for i in 0..100 {
        let (s, v) = api
            .call(
                "POST",
                "/v1/subscriptions",
                Some(&acme),
                Some(json!({"channel": {"type": "webhook", "url": format!("http://127.0.0.1:9/{i}")}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}: {v}");
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/more"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100")
    );
    // Streams: parameters and Last-Event-ID as a page checks them.
    for query in ["?after=-1", "?limit=0", "?grouping=digest"] {
        let (s, _, _) = api
            .raw(
                "GET",
                &format!("/v1/notices/stream{query}"),
                Some(&acme),
                Body::empty(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
    }
    let req = axum::http::Request::builder()
        .uri("/v1/notices/stream")
        .header("authorization", format!("Bearer {acme}"))
        .header("last-event-id", "abc")
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(patchline_server::app(api.state.clone()), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // An instance relaunched from another vulnerable base: its open notice
    // leaves the template's group for the new root cause, path and all.
    api.artifact(
        &canonical,
        json!({"id": "base-b", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/vm0",
            Some(&acme),
            Some(json!({"id": "vm0", "kind": "instance", "parent": "base-b"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, page) = api
        .call("GET", "/v1/notices?grouping=grouped", Some(&acme), None)
        .await;
    let steps = by_step(page["notices"].as_array().unwrap());
    assert_eq!(
        member_ids(&steps[&("rebase".to_string(), "tpl".to_string())]),
        vec!["tpl", "vm1", "vm2"]
    );
    let moved = &steps[&("relaunch".to_string(), "base-b".to_string())];
    assert_eq!(member_ids(moved), vec!["vm0"]);
    assert_eq!(moved["introduced_by"], "base-b");
    let vm0 = api
        .notices(&acme)
        .await
        .into_iter()
        .find(|n| n["artifact"] == "vm0")
        .unwrap();
    assert_eq!(vm0["path"], json!(["base-b", "vm0"]));
    assert_eq!(vm0["state"], "acknowledged", "a move is no state change");
}

/// The plan a grouped notice names (`onto`, or `waits_for`) follows the
/// catalog after the group was made, as `remedy` answers it: a step
/// re-parented onto a successor that still carries the record waits for
/// that successor now; a clean successor announced is named; hidden,
/// brought back, made unclean by a new version of the record, or removed,
/// it is not, and the step waits again. Found from outside: the plan
/// stayed as the group was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_plan_follows_the_catalog() {
    /// A group's (notice_id, onto, waits_for).
    type GroupPlan = (i64, Option<String>, Option<String>);
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    let public = |id: &str, kind: &str, extra: Value| {
        let mut doc = json!({"id": id, "kind": kind, "visibility": "public"});
        doc.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        doc
    };
    api.artifact(
        &canonical,
        public("base", "image", json!({"components": [VULNERABLE]})),
    )
    .await;
    api.artifact(
        &canonical,
        public("pub-tpl", "template", json!({"parent": "base"})),
    )
    .await;
    // A successor that still carries the component (same base).
    api.artifact(
        &canonical,
        public(
            "pub-tpl-v2",
            "template",
            json!({"parent": "base", "supersedes": "pub-tpl"}),
        ),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "acme-rep", "kind": "replica", "parent": "pub-tpl"}),
    )
    .await;
    for i in 0..2 {
        api.artifact(
            &acme,
            json!({"id": format!("acme-vm{i}"), "kind": "instance", "parent": "acme-rep"}),
        )
        .await;
    }
    api.artifact(
        &acme,
        json!({"id": "acme-direct", "kind": "instance", "parent": "pub-tpl"}),
    )
    .await;
    let mut record = usn_4038();
    record["modified"] = json!("2026-01-01T00:00:00Z");
    let (s, v) = api.publish(&canonical, &record).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Each group's (notice_id, onto, waits_for) by step, and what the
    // tenant's remedy plan says of the same steps.
    let plans = || async {
        let page = api.grouped_notices(&acme).await;
        let groups: BTreeMap<(String, String), GroupPlan> = by_step(&page)
            .into_iter()
            .map(|(k, g)| {
                let name = |f: &str| g.get(f).and_then(Value::as_str).map(str::to_string);
                (
                    k,
                    (
                        g["notice_id"].as_i64().unwrap(),
                        name("onto"),
                        name("waits_for"),
                    ),
                )
            })
            .collect();
        let (s, remedy) = api
            .call("GET", "/v1/advisories/USN-4038-1/remedy", Some(&acme), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{remedy}");
        for step in remedy["steps"].as_array().unwrap() {
            let key = (
                step["action"].as_str().unwrap().to_string(),
                step["artifact"].as_str().unwrap().to_string(),
            );
            let name = |f: &str| step.get(f).and_then(Value::as_str).map(str::to_string);
            let (_, onto, waits_for) = &groups[&key];
            assert_eq!(
                (onto, waits_for),
                (&name("onto"), &name("waits_for")),
                "{key:?}: the group's plan is remedy's ({remedy})"
            );
        }
        groups
    };
    let key = |a: &str, s: &str| (a.to_string(), s.to_string());
    let some = |s: &str| Some(s.to_string());
    let before = plans().await;
    assert_eq!(before[&key("rebase", "acme-rep")].2, some("pub-tpl"));
    assert_eq!(before[&key("relaunch", "pub-tpl")].2, some("pub-tpl"));

    // Rebased onto the successor that still carries it: the same group
    // (same root cause), now waiting for that successor.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-rep",
            Some(&acme),
            Some(json!({"id": "acme-rep", "kind": "replica", "parent": "pub-tpl-v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let now = plans().await;
    assert_eq!(
        now[&key("rebase", "acme-rep")],
        (
            before[&key("rebase", "acme-rep")].0,
            None,
            some("pub-tpl-v2")
        )
    );

    // A clean successor of the successor: both steps move onto it.
    api.artifact(
        &canonical,
        public(
            "base-v2",
            "image",
            json!({"supersedes": "base", "components": [FIXED]}),
        ),
    )
    .await;
    let v3 = public(
        "pub-tpl-v3",
        "template",
        json!({"parent": "base-v2", "supersedes": "pub-tpl-v2"}),
    );
    api.artifact(&canonical, v3.clone()).await;
    let now = plans().await;
    assert_eq!(now[&key("rebase", "acme-rep")].1, some("pub-tpl-v3"));
    assert_eq!(now[&key("relaunch", "pub-tpl")].1, some("pub-tpl-v3"));

    // Hidden from the tenant, then shown again.
    let mut hidden = v3.clone();
    hidden["visibility"] = json!("private");
    for (doc, onto) in [(&hidden, None), (&v3, some("pub-tpl-v3"))] {
        let (s, v) = api
            .call(
                "PUT",
                "/v1/artifacts/pub-tpl-v3",
                Some(&canonical),
                Some(doc.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let now = plans().await;
        assert_eq!(now[&key("rebase", "acme-rep")].1, onto);
        if onto.is_none() {
            assert_eq!(now[&key("rebase", "acme-rep")].2, some("pub-tpl-v2"));
            assert_eq!(now[&key("relaunch", "pub-tpl")].2, some("pub-tpl"));
        }
    }

    // A new version of the record that also affects the fixed package:
    // the successor is no remedy any more.
    let mut wider = record.clone();
    wider["modified"] = json!("2026-01-02T00:00:00Z");
    let mut widened = 0;
    for affected in wider["affected"].as_array_mut().unwrap() {
        for range in affected["ranges"].as_array_mut().unwrap() {
            for event in range["events"].as_array_mut().unwrap() {
                if event["fixed"] == "1.0.6-8.1ubuntu0.1" {
                    event["fixed"] = json!("1.0.6-8.1ubuntu0.2");
                    widened += 1;
                }
            }
        }
    }
    assert!(widened > 0, "the 18.04 range is in the record");
    let (s, v) = api.publish(&canonical, &wider).await;
    assert!(s.is_success(), "{s} {v}");
    let now = plans().await;
    assert_eq!(
        (
            &now[&key("rebase", "acme-rep")].1,
            &now[&key("relaunch", "pub-tpl")].1
        ),
        (&None, &None),
        "{now:?}"
    );

    // Back to the first ranges, then the successor removed.
    record["modified"] = json!("2026-01-03T00:00:00Z");
    let (s, v) = api.publish(&canonical, &record).await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(
        plans().await[&key("relaunch", "pub-tpl")].1,
        some("pub-tpl-v3")
    );
    let (s, v) = api
        .call("DELETE", "/v1/artifacts/pub-tpl-v3", Some(&canonical), None)
        .await;
    assert!(s.is_success(), "{s} {v}");
    let now = plans().await;
    assert_eq!(
        now[&key("rebase", "acme-rep")],
        (
            before[&key("rebase", "acme-rep")].0,
            None,
            some("pub-tpl-v2")
        )
    );
    assert_eq!(now[&key("relaunch", "pub-tpl")].2, some("pub-tpl"));
}

/// A real record of Ubuntu's OSV feed (testdata/advisories/ubuntu).
fn ubuntu_record(id: &str) -> Value {
    let path = format!(
        "{}/../../testdata/advisories/ubuntu/{id}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// USN-4038-1 names UBUNTU-CVE-2019-12900 among its upstream ids (both
/// real records, both fixing libbz2 on bionic): they agree, so a grouped
/// reader gets one entry per root cause saying both records, each
/// artifact once with its notice of each; per-artifact readers keep one
/// notice per record; acknowledging the group acknowledges both. In
/// either order of publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_alias_one_vulnerability_make_one_grouped_notice() {
    for (first, second) in [
        ("USN-4038-1", "UBUNTU-CVE-2019-12900"),
        ("UBUNTU-CVE-2019-12900", "USN-4038-1"),
    ] {
        let (url, got) = receiver().await;
        let api = Api::new();
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let _worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
        let canonical = api.tenant("canonical", &["publisher"]).await;
        let acme = api.tenant("acme", &["tenant"]).await;
        subscribe(&api, &acme, &format!("{url}/acme-g"), None).await;
        subscribe(&api, &acme, &format!("{url}/acme-a"), Some("artifact")).await;
        api.artifact(
            &canonical,
            json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
        )
        .await;
        api.artifact(
            &acme,
            json!({"id": "tpl", "kind": "template", "parent": "base"}),
        )
        .await;
        for i in 0..3 {
            api.artifact(
                &acme,
                json!({"id": format!("vm{i}"), "kind": "instance", "parent": "tpl"}),
            )
            .await;
        }
        api.artifact(
            &acme,
            json!({"id": "own", "kind": "image", "components": [VULNERABLE]}),
        )
        .await;

        let (s, v) = api.publish(&canonical, &ubuntu_record(first)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let before = by_step(&entries(&wait_for(&got, "/acme-g", 1).await));
        assert_eq!(before.len(), 2, "{before:#?}");
        for e in before.values() {
            assert!(e.get("records").is_none(), "one record: {e}");
        }
        let (s, v) = api.publish(&canonical, &ubuntu_record(second)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");

        // The grouped webhook: the second record's notices come under the
        // first one's groups (same notice_id), saying both records.
        let messages = wait_for(&got, "/acme-g", 2).await;
        let after = by_step(&entries(&messages[1..]));
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        for (step, e) in &after {
            let was = &before[step];
            assert_eq!(e["notice_id"], was["notice_id"], "{step:?}");
            assert_eq!(e["advisory"], first, "the root's record: {e}");
            assert_eq!(e["records"], json!([first, second]), "{e}");
            assert_eq!(member_ids(e), member_ids(was), "each artifact once: {e}");
            assert_eq!(e["artifacts_open"], json!(member_ids(was).len()), "{e}");
            for m in e["artifacts"].as_array().unwrap() {
                let records = m["records"].as_array().unwrap();
                assert_eq!(records.len(), 1, "{m}");
                assert_eq!(records[0]["advisory"], second);
                assert_eq!(records[0]["notice_id"], m["notice_id"]);
            }
        }
        // Per artifact: one notice per record and artifact, as always.
        let per_artifact =
            entries(&common::wait_for(&got, "/acme-a", "dev.patchline.notice", 2).await);
        let mut pairs: Vec<(String, String)> = per_artifact
            .iter()
            .map(|n| {
                assert!(n.get("records").is_none(), "{n}");
                (
                    n["advisory"].as_str().unwrap().to_string(),
                    n["artifact"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), 10, "5 artifacts x 2 records: {pairs:?}");

        // Pulled grouped: one entry per root cause, every artifact once
        // with its notice of each record (in notice order: the first
        // record's first).
        let page = api.grouped_notices(&acme).await;
        let pulled = by_step(&page);
        assert_eq!(pulled.len(), 2, "{page:#?}");
        let rebase = &pulled[&("rebase".to_string(), "tpl".to_string())];
        assert_eq!(rebase["records"], json!([first, second]));
        assert_eq!(member_ids(rebase), ["tpl", "vm0", "vm1", "vm2"]);
        for m in rebase["artifacts"].as_array().unwrap() {
            let advisories: Vec<&str> = m["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["advisory"].as_str().unwrap())
                .collect();
            assert_eq!(advisories, [first, second], "{m}");
        }
        // The group's notices page lists both records' notices.
        let id = rebase["notice_id"].as_i64().unwrap();
        let (_, members) = api
            .call(
                "GET",
                &format!("/v1/notices/{id}/artifacts?limit=100"),
                Some(&acme),
                None,
            )
            .await;
        assert_eq!(members["notices"].as_array().unwrap().len(), 8, "{members}");
        // Acknowledging the group acknowledges both records' notices.
        let (s, v) = api
            .call("POST", &format!("/v1/notices/{id}/ack"), Some(&acme), None)
            .await;
        assert_eq!((s, v["changed"].as_u64()), (StatusCode::OK, Some(8)), "{v}");
        assert_eq!(v["artifacts"].as_array().unwrap().len(), 4, "{v}");
        assert!(
            v.get("artifacts_omitted").is_none(),
            "artifacts, not notices: {v}"
        );
        let open: Vec<Value> = api
            .notices(&acme)
            .await
            .into_iter()
            .filter(|n| n["artifact"] == "vm0")
            .collect();
        assert_eq!(open.len(), 2, "{open:#?}");
        for n in open {
            assert_eq!(n["state"], "acknowledged", "{n}");
        }

        // An instance made now: one message, its group whole (the new
        // member with its notice of each record).
        api.artifact(
            &acme,
            json!({"id": "vm9", "kind": "instance", "parent": "tpl"}),
        )
        .await;
        let messages = wait_for(&got, "/acme-g", 3).await;
        let last = entries(&messages[2..]);
        assert_eq!(last.len(), 1, "{last:#?}");
        assert_eq!(last[0]["notice_id"], json!(id));
        assert_eq!(last[0]["records"], json!([first, second]));
        let vm9 = &last[0]["artifacts"][0];
        assert_eq!(vm9["artifact"], "vm9");
        assert_eq!(vm9["records"].as_array().unwrap().len(), 2, "{vm9}");

        // A record of the same publisher that agrees through the second
        // one (it names the second's id) joins the same groups; another
        // publisher's record that names the first does not.
        let mut third = ubuntu_record(second);
        third["id"] = json!("TEST-AGREE-3");
        third["aliases"] = json!([second]);
        third["upstream"] = json!([]);
        third["related"] = json!([]);
        let (s, v) = api.publish(&canonical, &third).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let other = api.tenant("other-publisher", &["publisher"]).await;
        let mut evil = ubuntu_record(first);
        evil["id"] = json!("OTHER-1");
        evil["aliases"] = json!([]);
        evil["upstream"] = json!([first]);
        evil["related"] = json!([]);
        let (s, v) = api.publish(&other, &evil).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let page = api.grouped_notices(&acme).await;
        let at_tpl: Vec<&Value> = page
            .iter()
            .filter(|e| e["action"] == "rebase" && e["artifact"] == "tpl")
            .collect();
        assert_eq!(at_tpl.len(), 2, "{at_tpl:#?}");
        assert_eq!(at_tpl[0]["records"], json!([first, second, "TEST-AGREE-3"]));
        assert_eq!(at_tpl[1]["advisory"], "OTHER-1");
        assert!(at_tpl[1].get("records").is_none(), "{}", at_tpl[1]);
    }
}
