//! Patch notices end to end: a publisher releases the patched successor of
//! a base; each tenant downstream with open notices that the successor
//! fixes gets exactly one patch notice per root cause, with its plan, by
//! pull and on its webhook (its own CloudEvents type); nobody else gets
//! one; a successor that fixes nothing announces nothing; the tenant
//! rebases and relaunches, and its notices are remediated.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{ADMIN, Api, FIXED, VULNERABLE, receiver, usn_4038, wait_for};
use serde_json::{Value, json};

async fn patches(api: &Api, token: &str) -> Vec<Value> {
    let (s, v) = api.call("GET", "/v1/patches", Some(token), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["patches"].as_array().unwrap().clone()
}

async fn subscribe(api: &Api, token: &str, url: &str) {
    let (s, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(token),
            Some(json!({"channel": {"type": "webhook", "url": url}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_is_announced_once_per_root_cause_with_the_plan() {
    let (url, got) = receiver().await;
    let api = Api::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    let beta = api.tenant("beta", &["tenant"]).await;
    let gamma = api.tenant("gamma", &["tenant"]).await;
    let delta = api.tenant("delta", &["tenant"]).await;
    for (token, path) in [(&acme, "/acme"), (&beta, "/beta"), (&gamma, "/gamma")] {
        subscribe(&api, token, &format!("{url}{path}")).await;
    }
    for id in ["base", "other-base"] {
        api.artifact(
            &canonical,
            json!({"id": id, "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
        )
        .await;
    }
    // acme: a private template with three instances; and one instance of
    // its own that brought the component in itself (no successor of the
    // base clears that one).
    api.artifact(
        &acme,
        json!({"id": "acme-tpl", "kind": "template", "parent": "base"}),
    )
    .await;
    for i in 0..3 {
        api.artifact(
            &acme,
            json!({"id": format!("acme-vm{i}"), "kind": "instance", "parent": "acme-tpl"}),
        )
        .await;
    }
    // beta: two instances straight from the base.
    for i in 0..2 {
        api.artifact(
            &beta,
            json!({"id": format!("beta-vm{i}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    // gamma: an instance whose notice it declares not affected.
    api.artifact(
        &gamma,
        json!({"id": "gamma-vm", "kind": "instance", "parent": "base"}),
    )
    .await;
    // delta: an instance of the other base, which nothing supersedes.
    api.artifact(
        &delta,
        json!({"id": "delta-vm", "kind": "instance", "parent": "other-base"}),
    )
    .await;
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let gamma_notice = api.notices(&gamma).await[0]["notice_id"].as_i64().unwrap();
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/notices/{gamma_notice}/ack"),
            Some(&gamma),
            Some(json!({"state": "not_affected", "justification": "vulnerable_code_not_in_execute_path"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A "successor" that still carries the record fixes nothing: nothing
    // is announced.
    api.artifact(
        &canonical,
        json!({"id": "base-v2-rc", "kind": "image", "visibility": "public",
               "supersedes": "base", "components": [VULNERABLE]}),
    )
    .await;
    assert_eq!(patches(&api, &acme).await, Vec::<Value>::new());

    // Event streams open before the successor, per artifact and grouped.
    let acme_notices = api.notices(&acme).await.len();
    let mut flat = common::open_stream(&api, &acme, "", None).await;
    let mut grouped = common::open_stream(&api, &acme, "?grouping=grouped", None).await;
    let backlog = common::read_events(&mut flat, acme_notices).await;
    assert!(backlog.iter().all(|(e, _, _)| e == "notice"));

    // The patched successor.
    api.artifact(
        &canonical,
        json!({"id": "base-v2", "kind": "image", "visibility": "public",
               "supersedes": "base", "components": [FIXED]}),
    )
    .await;
    // The streams carry the patch notice too (`event: patch`), live.
    let live = common::read_events(&mut flat, 1).await;
    assert_eq!(live[0].0, "patch", "{live:#?}");
    assert_eq!(live[0].2["successor"], "base-v2");
    assert_eq!(live[0].1, live[0].2["notice_id"].as_i64().unwrap());
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|(e, _, _): &(String, i64, Value)| e == "patch")
    {
        assert!(
            seen.len() < 50,
            "no patch event on the grouped stream: {seen:#?}"
        );
        seen.extend(common::read_events(&mut grouped, 1).await);
    }
    // Resuming after the patch event gives nothing of before it again.
    let after = live[0].1;
    let mut resumed = common::open_stream(&api, &acme, "", Some(after - 1)).await;
    let again = common::read_events(&mut resumed, 1).await;
    assert_eq!((again[0].0.as_str(), again[0].1), ("patch", after));
    drop((flat, grouped, resumed));
    let mine = patches(&api, &acme).await;
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let p = &mine[0];
    assert_eq!(p["tenant"], "acme");
    assert_eq!(p["advisory"], "USN-4038-1");
    assert_eq!(p["successor"], "base-v2");
    assert_eq!(p["supersedes"], "base");
    assert_eq!(p["introduced_by"], "base");
    assert_eq!(
        p["clears"],
        json!(["acme-tpl", "acme-vm0", "acme-vm1", "acme-vm2"])
    );
    assert_eq!(p["clears_total"], 4);
    assert_eq!(
        p["plan"],
        json!([{"artifact": "acme-tpl", "action": "rebase", "onto": "base-v2",
                "clears": ["acme-tpl", "acme-vm0", "acme-vm1", "acme-vm2"], "clears_total": 4}])
    );
    assert_eq!(p["steps_total"], 1);
    assert_eq!(p["breaks"], json!([]));
    // The notice ids share one sequence: a patch notice's id is no
    // notice's.
    let ids: Vec<i64> = api
        .notices(&acme)
        .await
        .iter()
        .map(|n| n["notice_id"].as_i64().unwrap())
        .collect();
    assert!(!ids.contains(&p["notice_id"].as_i64().unwrap()));

    let theirs = patches(&api, &beta).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        theirs[0]["plan"],
        json!([{"artifact": "base", "action": "relaunch", "onto": "base-v2",
                "clears": ["beta-vm0", "beta-vm1"], "clears_total": 2}])
    );
    // Not affected, not downstream, or the successor's own publisher:
    // nothing. Admins read no tenant's patch notices by this route.
    assert_eq!(patches(&api, &gamma).await, Vec::<Value>::new());
    assert_eq!(patches(&api, &delta).await, Vec::<Value>::new());
    assert_eq!(patches(&api, &canonical).await, Vec::<Value>::new());
    let (s, _) = api.call("GET", "/v1/patches", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api
        .call("GET", "/v1/patches?after=-1", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // On the webhooks: one patch message each, with its own type; gamma's
    // receiver gets none.
    let acme_got = wait_for(&got, "/acme", "dev.patchline.patch", 1).await;
    assert_eq!(acme_got.len(), 1);
    assert_eq!(acme_got[0]["data"]["purpose"], "patch");
    assert_eq!(acme_got[0]["data"]["patches"], json!([p]));
    let beta_got = wait_for(&got, "/beta", "dev.patchline.patch", 1).await;
    assert_eq!(beta_got[0]["data"]["patches"][0]["plan"], theirs[0]["plan"]);
    // Let the worker drain before looking for what must not come.
    wait_for(&got, "/gamma", "dev.patchline.notice", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .all(|(p, b)| p != "/gamma" || b["type"] != "dev.patchline.patch")
    );

    // acme follows the plan: rebases its template onto the successor; the
    // template and its instances are remediated.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-tpl",
            Some(&acme),
            Some(json!({"id": "acme-tpl", "kind": "template", "parent": "base-v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let states: Vec<(String, String)> = api
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
    assert!(states.iter().all(|(_, s)| s == "remediated"), "{states:?}");
    // Each names the step that did it: the template's rebase onto the
    // successor.
    for n in api.notices(&acme).await {
        assert_eq!(
            n["remediated_by"],
            json!({"cause": "successor", "action": "rebase", "artifact": "acme-tpl", "onto": "base-v2"}),
            "{n}"
        );
    }
    // A newer successor down the chain (v3 supersedes v2, which
    // supersedes the base) is announced to those still on the old base
    // (beta), naming the newer one; acme, remediated, gets nothing more.
    api.artifact(
        &canonical,
        json!({"id": "base-v3", "kind": "image", "visibility": "public",
               "supersedes": "base-v2", "components": [FIXED]}),
    )
    .await;
    let theirs = patches(&api, &beta).await;
    assert_eq!(theirs.len(), 2, "{theirs:#?}");
    assert_eq!(
        (&theirs[1]["successor"], &theirs[1]["supersedes"]),
        (&json!("base-v3"), &json!("base"))
    );
    assert_eq!(theirs[1]["plan"][0]["onto"], "base-v3");
    assert_eq!(patches(&api, &acme).await.len(), 1);
    wait_for(&got, "/beta", "dev.patchline.patch", 2).await;

    // beta relaunches one instance from the newest successor and deletes
    // the other; gamma's stays (declared not affected).
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/beta-vm0",
            Some(&beta),
            Some(json!({"id": "beta-vm0", "kind": "instance", "parent": "base-v3"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .call("DELETE", "/v1/artifacts/beta-vm1", Some(&beta), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let by: Vec<Value> = api
        .notices(&beta)
        .await
        .iter()
        .map(|n| n["remediated_by"].clone())
        .collect();
    assert_eq!(
        by,
        [
            json!({"cause": "successor", "action": "relaunch", "artifact": "beta-vm0", "onto": "base-v3"}),
            json!({"cause": "removal", "action": "remove", "artifact": "beta-vm1"}),
        ]
    );
    // The publisher's progress: how much each remedy cleared, and what is
    // still open: the two bases, the successor that still carries it and
    // delta's instance (gamma's is declared not affected).
    let (s, v) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/progress",
            Some(&canonical),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["remediated_by"],
        json!({"successor": 5, "removal": 1}),
        "{v}"
    );
    assert_eq!(v["still_open"], 4, "{v}");
    let over_time: i64 = v["remediation_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_i64().unwrap())
        .sum();
    assert_eq!(over_time, 6, "{v}");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
}

async fn fail(api: &Api, token: &str, on: &str, id: &str) {
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/artifacts/{on}/failures"),
            Some(token),
            Some(json!({"id": id, "summary": "broken"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// Found from outside: a successor announced again each time its
/// `supersedes` was taken away and declared again; one webhook message per
/// patch notice; `breaks` naming a failure of a private artifact the
/// reader may not know of, and unbounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_once_batched_and_breaks_only_what_the_reader_may_know() {
    let (url, got) = receiver().await;
    let api = Api::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let beta = api.tenant("beta", &["tenant"]).await;
    subscribe(&api, &beta, &format!("{url}/beta")).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &beta,
        json!({"id": "beta-vm", "kind": "instance", "parent": "base"}),
    )
    .await;
    // Three records on the base: an advisory and two failures.
    api.publish(&canonical, &usn_4038()).await;
    fail(&api, &canonical, "base", "FAIL-A").await;
    fail(&api, &canonical, "base", "FAIL-B").await;
    // The successor is built on a private image of the publisher's that
    // has a failure of its own.
    api.artifact(
        &canonical,
        json!({"id": "secret-build", "kind": "image", "components": [FIXED]}),
    )
    .await;
    fail(&api, &canonical, "secret-build", "FAIL-SECRET").await;
    let v2 = json!({"id": "base-v2", "kind": "image", "visibility": "public",
                    "parent": "secret-build", "supersedes": "base"});
    api.artifact(&canonical, v2.clone()).await;
    let mine = patches(&api, &beta).await;
    let records: Vec<&str> = mine
        .iter()
        .map(|p| p["advisory"].as_str().unwrap())
        .collect();
    assert_eq!(records, ["USN-4038-1", "FAIL-A", "FAIL-B"], "{mine:#?}");
    for p in &mine {
        // FAIL-SECRET is about an artifact beta may not see: not named,
        // not counted.
        assert_eq!((&p["breaks"], &p["breaks_total"]), (&json!([]), &json!(0)));
    }
    // One message carries the three.
    wait_for(&got, "/beta", "dev.patchline.patch", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, b)| b["type"] == "dev.patchline.patch")
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0]["data"]["patches"].as_array().unwrap().len(), 3);
    // `supersedes` taken away and declared again: nothing new.
    let mut without = v2.clone();
    without.as_object_mut().unwrap().remove("supersedes");
    for doc in [without, v2] {
        let (s, v) = api
            .call("PUT", "/v1/artifacts/base-v2", Some(&canonical), Some(doc))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(patches(&api, &beta).await.len(), 3);
    // A staged release: a private successor announces nothing to beta,
    // which may not see it; made public, it is announced.
    let v3 = json!({"id": "base-v3", "kind": "image", "supersedes": "base",
                    "components": [FIXED]});
    api.artifact(&canonical, v3.clone()).await;
    assert_eq!(patches(&api, &beta).await.len(), 3);
    let mut public = v3;
    public["visibility"] = json!("public");
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/base-v3",
            Some(&canonical),
            Some(public),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mine = patches(&api, &beta).await;
    assert_eq!(mine.len(), 6, "{mine:#?}");
    assert!(mine[3..].iter().all(|p| p["successor"] == "base-v3"));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
}

/// A successor of a successor reaches tenants on every older version with
/// one patch notice per (record, root cause): the artifacts cleared under
/// each version together, named by the newest version they are under.
/// Found from outside: one notice per version down the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_a_chain_one_patch_notice_per_root_cause() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    for doc in [
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
        json!({"id": "tpl", "kind": "template", "visibility": "public", "parent": "base"}),
        // A successor that still carries the component.
        json!({"id": "tpl-v2", "kind": "template", "visibility": "public", "parent": "base",
               "supersedes": "tpl"}),
    ] {
        api.artifact(&canonical, doc).await;
    }
    api.artifact(
        &acme,
        json!({"id": "acme-rep", "kind": "replica", "parent": "tpl-v2"}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "acme-old", "kind": "instance", "parent": "tpl"}),
    )
    .await;
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(patches(&api, &acme).await.is_empty());
    // v3 on a fixed base supersedes v2, which superseded tpl.
    api.artifact(
        &canonical,
        json!({"id": "base-v2", "kind": "image", "visibility": "public", "components": [FIXED]}),
    )
    .await;
    api.artifact(
        &canonical,
        json!({"id": "tpl-v3", "kind": "template", "visibility": "public", "parent": "base-v2",
               "supersedes": "tpl-v2"}),
    )
    .await;
    let got = patches(&api, &acme).await;
    assert_eq!(got.len(), 1, "one root cause (base), one notice: {got:#?}");
    let p = &got[0];
    assert_eq!(
        (
            p["successor"].as_str(),
            p["supersedes"].as_str(),
            p["introduced_by"].as_str()
        ),
        (Some("tpl-v3"), Some("tpl-v2"), Some("base")),
        "{p}"
    );
    assert_eq!(p["clears"], json!(["acme-rep", "acme-old"]), "{p}");
    assert_eq!(p["clears_total"], 2);
    let plan: Vec<(&str, &str, &str)> = p["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap(),
                s["artifact"].as_str().unwrap(),
                s["onto"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        plan,
        vec![
            ("relaunch", "tpl", "tpl-v3"),
            ("rebase", "acme-rep", "tpl-v3")
        ],
        "{p}"
    );
}
