//! Remedy plans, successors and exposure through the API, role by role
//! (SECURITY.md's table): a tenant reads its own plan, never another's;
//! publishers and admins also read the ranking, which names only what they
//! may see; `if_successor_of` and exposure need a visible artifact.

mod common;

use axum::http::StatusCode;
use common::{ADMIN, Api, FIXED, VULNERABLE, usn_4038};
use serde_json::{Value, json};

async fn cloud() -> (Api, String, String, String) {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    let beta = api.tenant("beta", &["tenant"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
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
    for i in 0..2 {
        api.artifact(
            &beta,
            json!({"id": format!("beta-vm{i}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (api, canonical, acme, beta)
}

async fn remedy(api: &Api, token: &str, query: &str) -> (StatusCode, Value) {
    api.call(
        "GET",
        &format!("/v1/advisories/USN-4038-1/remedy{query}"),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn each_reads_its_own_plan() {
    let (api, canonical, acme, beta) = cloud().await;
    // Before a successor exists, the steps wait for the base's.
    let (s, v) = remedy(&api, &acme, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"advisory": "USN-4038-1", "tenant": "acme", "steps": [
            {"artifact": "acme-tpl", "action": "rebase", "waits_for": "base",
             "clears": ["acme-tpl", "acme-vm0", "acme-vm1", "acme-vm2"]}]})
    );
    // The publisher releases the patched successor.
    api.artifact(
        &canonical,
        json!({"id": "base-v2", "kind": "image", "visibility": "public",
               "supersedes": "base", "components": [FIXED]}),
    )
    .await;
    let (_, v) = remedy(&api, &beta, "").await;
    assert_eq!(
        v["steps"],
        json!([{"artifact": "base", "action": "relaunch", "onto": "base-v2",
                "clears": ["beta-vm0", "beta-vm1"]}])
    );
    assert!(v.get("ranking").is_none());
    // Another tenant's plan is refused; so is an unknown tenant for admins.
    let (s, _) = remedy(&api, &beta, "?tenant=acme").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = remedy(&api, ADMIN, "?tenant=nosuch").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = remedy(&api, ADMIN, "?tenant=acme").await;
    assert_eq!(
        (s, v["steps"][0]["onto"].clone()),
        (StatusCode::OK, json!("base-v2"))
    );
    // The publisher: its own step — a rebuild already done, as base-v2 —
    // and the ranking, which names only what it may see (acme's private
    // template is counted, not named).
    let (_, v) = remedy(&api, &canonical, "").await;
    assert_eq!(
        v["steps"],
        json!([{"artifact": "base", "action": "rebuild", "superseded_by": "base-v2",
                "clears": ["base"]}])
    );
    assert_eq!(
        v["ranking"],
        json!([{"artifact": "base", "clears": 6, "tenants": 2,
                "by_kind": {"image": 0, "template": 1, "replica": 0, "instance": 5}}])
    );
    // The operator: every tenant's steps, each with its tenant.
    let (_, v) = remedy(&api, ADMIN, "").await;
    let tenants: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["canonical", "beta", "acme"]);
    assert_eq!(v["ranking"][1]["artifact"], "acme-tpl");
    // Another publisher's ranking lists only what its own successors would
    // clear (here: nothing).
    let other = api.tenant("other-pub", &["publisher"]).await;
    let (_, v) = remedy(&api, &other, "").await;
    assert_eq!(v["ranking"], json!([]));
}

#[tokio::test]
async fn what_if_and_exposure_need_a_visible_artifact() {
    let (api, canonical, acme, beta) = cloud().await;
    let (s, v) = remedy(&api, &acme, "?if_successor_of=acme-tpl").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["if_successor_of"]["clears"], 3);
    // acme's template is private: beta gets the answer of a missing id.
    let (s, v) = remedy(&api, &beta, "?if_successor_of=acme-tpl").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // What lies below another's artifact is not beta's to count.
    let (s, _) = remedy(&api, &beta, "?if_successor_of=base").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call("GET", "/v1/artifacts/base/exposure", Some(&beta), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The base's owner reads both.
    let (s, v) = remedy(&api, &canonical, "?if_successor_of=base").await;
    assert_eq!(
        (s, v["if_successor_of"]["clears"].clone()),
        (StatusCode::OK, json!(6))
    );
    let (s, v) = api
        .call("GET", "/v1/artifacts/base/exposure", Some(&canonical), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"artifact": "base", "exposed": 6, "tenants": 2,
               "by_kind": {"image": 0, "template": 1, "replica": 0, "instance": 5}})
    );
    let (s, _) = api
        .call("GET", "/v1/artifacts/acme-tpl/exposure", Some(&beta), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = remedy(&api, &beta, "?nosuch=1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn only_the_owner_declares_a_successor() {
    let (api, canonical, acme, _beta) = cloud().await;
    // acme may not declare a successor of canonical's base...
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(
                json!({"id": "fake-v2", "kind": "image", "supersedes": "base",
                        "components": [FIXED]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only its owner"),
        "{v}"
    );
    // ...nor of an artifact it may not see (answered like a missing one).
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&canonical),
            Some(json!({"id": "tpl-v2", "kind": "template", "parent": "base",
                        "supersedes": "acme-tpl"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown artifact"),
        "{v}"
    );
    // Nothing was created.
    let (s, _) = api
        .call("GET", "/v1/artifacts/fake-v2", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The owner may; the view shows it.
    api.artifact(
        &acme,
        json!({"id": "acme-tpl-v2", "kind": "template", "parent": "base", "supersedes": "acme-tpl"}),
    )
    .await;
    let (_, v) = api
        .call("GET", "/v1/artifacts/acme-tpl-v2", Some(&acme), None)
        .await;
    assert_eq!(v["supersedes"], "acme-tpl");
}

#[tokio::test]
async fn a_plan_past_the_answer_cap_points_to_one_tenant() {
    let api = Api::with(|c| c.affected_bytes_max = 300);
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    for i in 0..40 {
        api.artifact(
            &acme,
            json!({"id": format!("acme-vm-{i:03}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = remedy(&api, ADMIN, "").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "too_large");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("?tenant="),
        "{v}"
    );
}
