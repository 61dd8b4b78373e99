//! Regression tests for the holes found when the service was attacked from
//! outside (one test per numbered item of the hardening issue, named after
//! it). Each failed on the code before its fix.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{ADMIN, Api, VULNERABLE, usn_4038};
use http_body_util::BodyExt;
use patchline_server::app;
use serde_json::{Value, json};
use tower::ServiceExt;

fn with_modified(mut osv: Value, modified: &str) -> Value {
    osv["modified"] = modified.into();
    osv
}

fn renamed(mut osv: Value, id: &str) -> Value {
    osv["id"] = id.into();
    osv
}

// ----- 1. records have owners -----

#[tokio::test]
async fn item01_records_belong_to_their_publisher() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let mallory = api.tenant("mallory", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "acme-vm", "kind": "instance", "parent": "base"}),
    )
    .await;
    let usn = usn_4038();
    let (s, v) = api.publish(&canonical, &usn).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Another publisher can neither update, nor withdraw, nor even
    // republish the same record.
    let newer = with_modified(usn.clone(), "2025-08-01T00:00:00Z");
    let mut withdrawn = newer.clone();
    withdrawn["withdrawn"] = "2025-08-01T00:00:00Z".into();
    for (what, body) in [
        ("update", &newer),
        ("withdrawal", &withdrawn),
        ("identical", &usn),
    ] {
        let (s, v) = api.publish(&mallory, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{what}");
    }
    let notices = api.notices(&acme).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(
        notices[0]["state"], "affected",
        "not remediated by the withdrawal"
    );

    // The owner and the admin may.
    let (s, v) = api.publish(&canonical, &newer).await;
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("updated")),
        "{v}"
    );
    let (s, v) = api
        .publish(ADMIN, &with_modified(usn.clone(), "2025-09-01T00:00:00Z"))
        .await;
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("updated")),
        "{v}"
    );

    // Squatting with a far-future `modified` is refused.
    let (s, v) = api
        .publish(
            &mallory,
            &with_modified(renamed(usn.clone(), "SQUAT-1"), "9999-12-31T23:59:59Z"),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let soon = patchline_core::timestamp::format_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 60,
    );
    let (s, v) = api
        .publish(
            &mallory,
            &with_modified(renamed(usn.clone(), "SKEW-1"), &soon),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a minute of clock skew is fine: {v}"
    );

    // An id prefix reserved for canonical cannot be pre-squatted.
    let (s, v) = api
        .call(
            "POST",
            "/v1/prefixes",
            Some(&mallory),
            Some(json!({"prefix": "USN-", "tenant": "mallory"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins reserve prefixes: {v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/prefixes",
            Some(ADMIN),
            Some(json!({"prefix": "USN-", "tenant": "canonical"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .publish(&mallory, &renamed(usn.clone(), "USN-9999-1"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api
        .publish(&canonical, &renamed(usn.clone(), "USN-9999-1"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api.call("GET", "/v1/prefixes", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["prefixes"][0]["prefix"], "USN-", "{v}");
}

/// Found from outside: routes without parameters ignored any given
/// (`exposure?tenant=acme` answered as if it had been read): every route
/// refuses a parameter it does not take, with the JSON error.
#[tokio::test]
async fn unknown_query_parameters_are_refused_everywhere() {
    let api = Api::new();
    let acme = api.tenant("acme", &["tenant"]).await;
    api.artifact(
        &acme,
        json!({"id": "img", "kind": "image", "components": []}),
    )
    .await;
    for (path, token) in [
        ("/v1/artifacts/img?tenant=beta", acme.as_str()),
        ("/v1/artifacts/img/exposure?foo=1", acme.as_str()),
        ("/v1/report?tenant=beta", acme.as_str()),
        ("/v1/subscriptions?state=dead", acme.as_str()),
        ("/v1/subscriptions/sub_x?x=1", acme.as_str()),
        ("/v1/tenants/acme/tokens?all=1", acme.as_str()),
        ("/v1/prefixes?x=1", ADMIN),
        ("/v1/operator/escalation?x=1", ADMIN),
        ("/v1/notices/stream?from=3", acme.as_str()),
        ("/v1/patches?grouping=artifact", acme.as_str()),
    ] {
        let (s, v) = api.call("GET", path, Some(token), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{path}: {v}");
    }
    // Write routes too, and nothing is written: `?dry_run=` or `?force=`
    // never passes for an option that was honoured.
    let vm = json!({"id": "vm", "kind": "instance", "parent": "img"});
    for (method, path, token, body) in [
        (
            "POST",
            "/v1/artifacts?dry_run=true",
            acme.as_str(),
            Some(vm.clone()),
        ),
        (
            "PUT",
            "/v1/artifacts/vm?dry_run=1",
            acme.as_str(),
            Some(vm.clone()),
        ),
        ("DELETE", "/v1/artifacts/img?force=1", acme.as_str(), None),
        (
            "POST",
            "/v1/artifacts/img/failures?x=1",
            ADMIN,
            Some(json!({"id": "FAIL-Q", "summary": "x"})),
        ),
        ("POST", "/v1/advisories?dry_run=1", ADMIN, Some(usn_4038())),
        (
            "POST",
            "/v1/subscriptions?x=1",
            acme.as_str(),
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/x"}})),
        ),
        (
            "POST",
            "/v1/tenants?x=1",
            ADMIN,
            Some(json!({"id": "other"})),
        ),
        (
            "POST",
            "/v1/tenants/acme/tokens?x=1",
            acme.as_str(),
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/watches?x=1",
            acme.as_str(),
            Some(json!({"artifact": "img"})),
        ),
        ("POST", "/v1/notices/1/ack?x=1", acme.as_str(), None),
    ] {
        let (s, v) = api.call(method, path, Some(token), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{method} {path}: {v}");
    }
    let (s, _) = api.call("GET", "/v1/artifacts/vm", Some(&acme), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was created");
    let (s, _) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/affected",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was published");
    // Without them, the same routes answer.
    let (s, v) = api
        .call("GET", "/v1/artifacts/img/exposure", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call("POST", "/v1/artifacts?strict=true", Some(&acme), Some(vm))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn item01_failures_belong_to_their_publisher() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let mallory = api.tenant("mallory", &["publisher"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": []}),
    )
    .await;
    api.artifact(
        &mallory,
        json!({"id": "m-img", "kind": "image", "components": []}),
    )
    .await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts/base/failures",
            Some(&canonical),
            Some(json!({"id": "FAIL-1", "summary": "broken sshd"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Another publisher cannot take the id for its own artifact either.
    let (s, v) = api
        .call("POST", "/v1/artifacts/m-img/failures", Some(&mallory), Some(json!({"id": "FAIL-1", "summary": "x", "withdrawn": true, "modified": "2030-01-01T00:00:00Z"})))
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::UNPROCESSABLE_ENTITY,
        "{s} {v}"
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts/m-img/failures",
            Some(&mallory),
            Some(json!({"summary": "x", "modified": "9999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "far future: {v}");
}

// ----- 3. bounded outputs -----

#[tokio::test]
async fn item03_long_text_is_truncated_and_rendered_once() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    for i in 0..30 {
        api.artifact(
            &acme,
            json!({"id": format!("vm-{i}"), "kind": "instance", "parent": "base"}),
        )
        .await;
    }
    let mut usn = usn_4038();
    usn["summary"] = "S".repeat(2 << 20).into();
    usn["details"] = "D".repeat(2 << 20).into();
    let (s, v) = api.publish(&canonical, &usn).await;
    assert_eq!(s, StatusCode::CREATED, "long text is kept, truncated: {v}");
    let (s, _, body) = api
        .raw(
            "GET",
            "/v1/notices?after=0&limit=1000",
            Some(&acme),
            Body::empty(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.len() < 256 << 10,
        "a page of 30 notices is {} bytes",
        body.len()
    );
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["notices"].as_array().unwrap().len(), 30);
    let summary = page["records"]["USN-4038-1"]["summary"].as_str().unwrap();
    assert!(
        summary.len() <= 1100 && summary.ends_with("[truncated]"),
        "{}",
        summary.len()
    );
}

#[tokio::test]
async fn item03_huge_affected_answers_point_to_paging() {
    let api = Api::new();
    let acme = api.tenant("acme", &["publisher"]).await;
    // A 1,023-deep chain of 250-byte ids: every path is long.
    let id = |i: usize| format!("{i:04}{}", "a".repeat(246));
    api.artifact(
        &acme,
        json!({"id": id(0), "kind": "image", "components": [VULNERABLE]}),
    )
    .await;
    for i in 1..1023 {
        let (s, v) = api
            .call(
                "POST",
                "/v1/artifacts",
                Some(&acme),
                Some(json!({"id": id(i), "kind": "image", "parent": id(i - 1)})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}: {v}");
    }
    let (s, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}, "grouping": "artifact"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let (s, v) = api.publish(&acme, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, body) = api
        .raw(
            "GET",
            "/v1/advisories/USN-4038-1/affected",
            Some(&acme),
            Body::empty(),
        )
        .await;
    assert!(body.len() <= 64 << 20, "answer of {} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("limit="));
    // Paging works and walks the whole answer.
    let mut after = String::new();
    let mut seen = 0;
    loop {
        let (s, v) = api
            .call(
                "GET",
                &format!("/v1/advisories/USN-4038-1/affected?limit=100&after={after}"),
                Some(&acme),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rows = v["affected"].as_array().unwrap();
        seen += rows.len();
        match v["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 1023);
    // A page of notices stays bounded too, and every notice is reachable
    // page by page.
    let (s, _, body) = api
        .raw(
            "GET",
            "/v1/notices?after=0&limit=1000",
            Some(&acme),
            Body::empty(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.len() <= 16 << 20,
        "notices page of {} bytes",
        body.len()
    );
    let mut sizes = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let (_, page) = api
            .call(
                "GET",
                &format!("/v1/notices?after={after}&limit=1000"),
                Some(&acme),
                None,
            )
            .await;
        let notices = page["notices"].as_array().unwrap();
        if notices.is_empty() {
            break;
        }
        for n in notices {
            sizes.insert(n["notice_id"].as_i64().unwrap(), n.to_string().len());
        }
        after = page["next"].as_i64().unwrap();
    }
    assert_eq!(sizes.len(), 1023);
    // Webhook messages are batched by size as well as by count.
    let (_, v) = api
        .call(
            "GET",
            &format!(
                "/v1/subscriptions/{}/deliveries?limit=1000",
                sub["id"].as_str().unwrap()
            ),
            Some(&acme),
            None,
        )
        .await;
    let deliveries = v["deliveries"].as_array().unwrap();
    let mut carried = 0;
    for d in deliveries {
        let ids = d["notices"].as_array().unwrap();
        carried += ids.len();
        let bytes: usize = ids.iter().map(|i| sizes[&i.as_i64().unwrap()]).sum();
        assert!(
            ids.len() <= 100 && (ids.len() == 1 || bytes <= 5 << 20),
            "{} notices, {bytes} bytes",
            ids.len()
        );
    }
    assert_eq!(carried, 1023);
}

// ----- 4. watches do not leak -----

#[tokio::test]
async fn item04_watchers_lose_sight_of_private_artifacts() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let globex = api.tenant("globex", &[]).await;
    api.artifact(&canonical, json!({"id": "pub-img", "kind": "image", "visibility": "public", "components": [VULNERABLE]}))
        .await;
    let (s, _) = api
        .call(
            "POST",
            "/v1/watches",
            Some(&globex),
            Some(json!({"artifact": "pub-img"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED);
    let own = api.notices(&canonical).await;
    let id = own[0]["notice_id"].as_i64().unwrap();
    let (s, v) = api
        .call("POST", &format!("/v1/notices/{id}/ack"), Some(&canonical), Some(json!({"state": "not_affected", "justification": "vulnerable_code_not_in_execute_path"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The watcher sees the notice, without the owner's state, justification
    // or name.
    let watched = api.notices(&globex).await;
    assert_eq!(watched.len(), 1);
    let text = watched[0].to_string();
    assert!(
        !text.contains("vulnerable_code_not_in_execute_path"),
        "{text}"
    );
    assert!(!text.contains("not_affected"), "{text}");
    assert!(!text.contains("canonical"), "{text}");
    // A watcher reads but does not acknowledge (403, not "unknown").
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/notices/{}/ack", watched[0]["notice_id"]),
            Some(&globex),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Made private: gone for the watcher, in pages and in new notices.
    let (s, v) = api
        .call("PUT", "/v1/artifacts/pub-img", Some(&canonical), Some(json!({"id": "pub-img", "kind": "image", "visibility": "private", "components": [VULNERABLE]})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(api.notices(&globex).await, Vec::<Value>::new());
    let (s, _) = api
        .publish(
            &canonical,
            &with_modified(renamed(usn_4038(), "USN-0000-2"), "2025-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Not even the page cursor moves over the owner's new notice.
    let (_, page) = api
        .call("GET", "/v1/notices?after=0", Some(&globex), None)
        .await;
    assert_eq!(
        page["next"], 0,
        "the cursor reveals a hidden notice: {page}"
    );
    assert_eq!(api.notices(&globex).await, Vec::<Value>::new());
    assert_eq!(api.notices(&canonical).await.len(), 2);
}

// ----- 5. tokens -----

#[tokio::test]
async fn item05_tokens_are_listed_and_revocation_cascades() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    let (s, v) = api
        .call("POST", "/v1/tenants/acme/tokens", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (child_id, child) = (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    );
    let (s, v) = api
        .call("POST", "/v1/tenants/acme/tokens", Some(&child), None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let grandchild = v["token"].as_str().unwrap().to_string();
    for who in [&acme, &child, &ADMIN.to_string()] {
        let (s, v) = api
            .call("GET", "/v1/tenants/acme/tokens", Some(who), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["tokens"].as_array().unwrap().len(), 3, "{v}");
        assert!(
            !v.to_string().contains("plt_"),
            "tokens are never shown again"
        );
    }
    let other = api.tenant("globex", &[]).await;
    let (s, _) = api
        .call("GET", "/v1/tenants/acme/tokens", Some(&other), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Revoking the child revokes what it minted.
    let (s, _) = api
        .call(
            "DELETE",
            &format!("/v1/tokens/{child_id}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for t in [&child, &grandchild] {
        let (s, _) = api.call("GET", "/v1/subscriptions", Some(t), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = api
        .call("GET", "/v1/subscriptions", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn item05_revocation_closes_streams() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    let (_, v) = api
        .call("POST", "/v1/tenants/acme/tokens", Some(&acme), None)
        .await;
    let (tid, token) = (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    );
    let req = Request::builder()
        .uri("/v1/notices/stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app(api.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (s, _) = api
        .call("DELETE", &format!("/v1/tokens/{tid}"), Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match body.frame().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream is still open after its token was revoked"
    );
}

// ----- 6. progress and existence -----

#[tokio::test]
async fn item06_progress_is_the_owners() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["publisher"]).await;
    let globex = api.tenant("globex", &["publisher"]).await;
    api.artifact(
        &acme,
        json!({"id": "acme-priv", "kind": "image", "components": []}),
    )
    .await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts/acme-priv/failures",
            Some(&acme),
            Some(json!({"id": "FAIL-PRIV", "summary": "secret trouble"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED);
    let missing = api
        .call("GET", "/v1/advisories/NOPE-1/progress", Some(&globex), None)
        .await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    for path in [
        "/v1/advisories/FAIL-PRIV/progress",
        "/v1/advisories/FAIL-PRIV/affected",
        "/v1/advisories/USN-4038-1/progress",
    ] {
        let (s, v) = api.call("GET", path, Some(&globex), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        let id = path.split('/').nth(3).unwrap();
        assert_eq!(
            v["error"]["message"].as_str().unwrap().replace(id, "X"),
            missing.1["error"]["message"]
                .as_str()
                .unwrap()
                .replace("NOPE-1", "X"),
            "{path}: the same answer as a missing id"
        );
    }
    for (who, path) in [
        (&acme, "/v1/advisories/FAIL-PRIV/progress"),
        (&acme, "/v1/advisories/FAIL-PRIV/affected"),
        (&canonical, "/v1/advisories/USN-4038-1/progress"),
        (&ADMIN.to_string(), "/v1/advisories/FAIL-PRIV/progress"),
        (&ADMIN.to_string(), "/v1/advisories/USN-4038-1/progress"),
        (&globex, "/v1/advisories/USN-4038-1/affected"),
    ] {
        let (s, v) = api.call("GET", path, Some(who), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
}

// ----- 8. the escalation secret -----

#[tokio::test]
async fn item08_the_operator_reads_the_escalation_secret() {
    let api = Api::with(|c| c.operator_webhook = Some("http://127.0.0.1:9/escalations".into()));
    let (s, v) = api
        .call("GET", "/v1/operator/escalation", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["secret"].as_str().unwrap().starts_with("whsec_"), "{v}");
    assert_eq!(v["url"], "http://127.0.0.1:9/escalations");
    let acme = api.tenant("acme", &[]).await;
    let (s, _) = api
        .call("GET", "/v1/operator/escalation", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Rotation answers the new one.
    let (s, r) = api
        .call(
            "POST",
            &format!(
                "/v1/subscriptions/{}/rotate",
                v["subscription"].as_str().unwrap()
            ),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, after) = api
        .call("GET", "/v1/operator/escalation", Some(ADMIN), None)
        .await;
    assert_eq!(after["secret"], r["secret"]);
}

// ----- 9. taken ids -----

#[tokio::test]
async fn item09_taken_ids_answer_alike_and_probing_is_slowed() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let globex = api.tenant("globex", &[]).await;
    api.artifact(
        &canonical,
        json!({"id": "pub-x", "kind": "image", "visibility": "public", "components": []}),
    )
    .await;
    api.artifact(
        &canonical,
        json!({"id": "priv-x", "kind": "image", "components": []}),
    )
    .await;
    let (s1, v1) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "pub-x", "kind": "image"})),
        )
        .await;
    let (s2, v2) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "priv-x", "kind": "image"})),
        )
        .await;
    assert_eq!(s1, s2);
    assert_eq!(
        v1.to_string().replace("pub-x", "X"),
        v2.to_string().replace("priv-x", "X")
    );
    let mut limited = false;
    for i in 0..40 {
        let (s, v) = api
            .call(
                "POST",
                "/v1/artifacts",
                Some(&globex),
                Some(json!({"id": "priv-x", "kind": "image", "name": i.to_string()})),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(v["error"]["code"], "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(s, StatusCode::CONFLICT);
    }
    assert!(
        limited,
        "40 conflicting creations in a row were all answered"
    );
    // Other tenants are not slowed by globex's probing.
    let (s, _) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&canonical),
            Some(json!({"id": "c-new", "kind": "image"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

// ----- 11. ids -----

#[tokio::test]
async fn item11_ids_cannot_spoof_the_marker() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    for id in [
        "(private)",
        "a\u{202e}b",
        "a\u{200b}b",
        "\u{ff08}private\u{ff09}",
        "x(private)",
    ] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/artifacts",
                Some(&acme),
                Some(json!({"id": id, "kind": "image"})),
            )
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{id:?}: {s} {v}"
        );
    }
    let (s, _) = api
        .call(
            "POST",
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"id": "(private)"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ----- 12. one error shape -----

#[tokio::test]
async fn item12_every_error_has_the_documented_shape() {
    let api = Api::with(|c| c.body_max_bytes = 1024);
    let acme = api.tenant("acme", &[]).await;
    let cases: Vec<(&str, &str, Body, StatusCode)> = vec![
        (
            "GET",
            "/v1/notices?limit=abc",
            Body::empty(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/notices/abc/ack",
            Body::empty(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/no/such/route",
            Body::empty(),
            StatusCode::NOT_FOUND,
        ),
        (
            "PATCH",
            "/v1/artifacts",
            Body::empty(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/v1/artifacts",
            Body::from(vec![b'x'; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (method, path, body, status) in cases {
        let (s, headers, bytes) = api.raw(method, path, Some(&acme), body).await;
        assert_eq!(s, status, "{method} {path}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{method} {path}: {v}"
        );
    }
}

// ----- 15. streams are counted while they are open -----

#[tokio::test]
async fn item15_closed_streams_are_not_counted() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    for _ in 0..5 {
        let req = Request::builder()
            .uri("/v1/notices/stream")
            .header("authorization", format!("Bearer {acme}"))
            .body(Body::empty())
            .unwrap();
        let resp = app(api.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        drop(resp);
    }
    let mut open = u64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        open = api
            .state
            .metrics
            .sse_streams
            .load(std::sync::atomic::Ordering::Relaxed);
        if open == 0 {
            break;
        }
    }
    assert_eq!(open, 0, "closed streams still counted");
}

// ----- 20. webhook ids are unique across installations -----

#[tokio::test]
async fn item20_webhook_ids_differ_between_installations() {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let api = Api::new();
        let canonical = api.tenant("canonical", &["publisher"]).await;
        let acme = api.tenant("acme", &[]).await;
        api.artifact(&canonical, json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}))
            .await;
        api.artifact(
            &acme,
            json!({"id": "vm", "kind": "instance", "parent": "base"}),
        )
        .await;
        let (s, sub) = api
            .call(
                "POST",
                "/v1/subscriptions",
                Some(&acme),
                Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{sub}");
        api.publish(&canonical, &usn_4038()).await;
        let (_, v) = api
            .call(
                "GET",
                &format!(
                    "/v1/subscriptions/{}/deliveries",
                    sub["id"].as_str().unwrap()
                ),
                Some(&acme),
                None,
            )
            .await;
        ids.push(v["deliveries"][0]["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1], "two installations both sent {}", ids[0]);
    assert!(ids[0].starts_with("msg_"));
}

// ----- 2. connections are bounded and timed out -----

mod net {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Whether the server closes `s` within `within` (a read answers EOF
    /// or an error).
    pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// One HTTP/1.1 request on a new connection; the status code.
    pub fn get(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split(' ').nth(1)?.parse().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item02_connections_are_capped_and_timed_out() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let api = Api::with(|c| {
        c.conns_max = Some(8);
        c.header_read_timeout_ms = 400;
        c.body_read_timeout_ms = 400;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(patchline_server::serve_until(
        api.state.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let checks = tokio::task::spawn_blocking(move || {
        // Eight idle connections take every slot; the ninth is closed at once.
        let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut ninth = TcpStream::connect(addr).unwrap();
        assert!(
            net::closed_within(&mut ninth, Duration::from_millis(500)),
            "a connection past the cap was kept"
        );
        // Idle ones are closed by the header-read time-out...
        for s in &mut idle {
            assert!(
                net::closed_within(s, Duration::from_secs(3)),
                "an idle connection was kept past the header time-out"
            );
        }
        // ... and the service answers again.
        assert_eq!(net::get(addr, "/healthz"), Some(200));
        // A body that never arrives whole: 408, within the body time-out.
        let mut slow = TcpStream::connect(addr).unwrap();
        write!(
            slow,
            "POST /v1/artifacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 100\r\n\r\n{{\"id\""
        )
        .unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = [0u8; 64];
        let n = slow.read(&mut answer).unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    });
    let result = checks.await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    result.unwrap();
    let refused = api
        .state
        .metrics
        .connections_refused_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 1, "the refusal was not counted");
}

#[tokio::test]
async fn item02_streams_are_capped_per_tenant() {
    let api = Api::with(|c| c.streams_per_tenant_max = 2);
    let acme = api.tenant("acme", &[]).await;
    let globex = api.tenant("globex", &[]).await;
    let open = |token: String| {
        let state = api.state.clone();
        async move {
            let req = Request::builder()
                .uri("/v1/notices/stream")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            app(state).oneshot(req).await.unwrap()
        }
    };
    let a1 = open(acme.clone()).await;
    let a2 = open(acme.clone()).await;
    assert_eq!((a1.status(), a2.status()), (StatusCode::OK, StatusCode::OK));
    let a3 = open(acme.clone()).await;
    assert_eq!(a3.status(), StatusCode::TOO_MANY_REQUESTS);
    let g1 = open(globex.clone()).await;
    assert_eq!(
        g1.status(),
        StatusCode::OK,
        "other tenants are not affected"
    );
    drop(a1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        open(acme).await.status(),
        StatusCode::OK,
        "a closed stream frees its slot"
    );
}

// ----- 7. secrets at rest -----

/// Whether `needle` appears in any file of the data directory.
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[tokio::test]
async fn item07_webhook_secrets_are_sealed_and_keys_rotate() {
    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let keys = |current: &str, previous: &[&'static str]| {
        patchline_store::SecretKeys::new(current, previous.iter().copied()).unwrap()
    };
    // Without a key the secret is in the (0600) file: the check below sees it.
    let plain = Api::new();
    let acme = plain.tenant("acme", &[]).await;
    let (_, v) = plain
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/h"}})),
        )
        .await;
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(on_disk(&plain.dir.path().join("data"), &secret));

    // With a key it never reaches the disk in clear.
    let api = Api::with(|c| c.secret_keys = keys(K1, &[]));
    let acme = api.tenant("acme", &[]).await;
    let (_, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/h"}})),
        )
        .await;
    let (id, secret) = (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    );
    let data = api.dir.path().join("data");
    assert!(!on_disk(&data, &secret), "the secret is stored in clear");
    let Api { state, dir } = api;
    drop(state);
    let reopen = |k: patchline_store::SecretKeys| {
        let mut config = patchline_server::Config::new(data.clone());
        config.workers = false;
        config.secret_keys = k;
        patchline_server::open_state(config)
    };
    let stored = |st: &std::sync::Arc<patchline_server::AppState>| {
        st.engine.lock().unwrap().service().subscriptions[&id].secrets[0]
            .secret
            .clone()
    };
    // Rotation: the new key with the old one as previous opens and reseals.
    let st = reopen(keys(K2, &[K1])).unwrap();
    assert_eq!(stored(&st), secret);
    drop(st);
    // From then on the new key alone is enough, and the old one is not.
    let st = reopen(keys(K2, &[])).unwrap();
    assert_eq!(stored(&st), secret);
    drop(st);
    let err = reopen(keys(K1, &[])).unwrap_err().to_string();
    assert!(err.contains("PATCHLINE_SECRET_KEY"), "{err}");
    let err = reopen(patchline_store::SecretKeys::none())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sealed"), "{err}");
    assert!(!on_disk(&data, &secret));
    drop(dir);
}

// ----- 21. the API scans image roots only -----

#[tokio::test]
async fn item21_the_api_scans_only_image_roots() {
    let images = tempfile::tempdir().unwrap();
    let mut disk = vec![0u8; 1 << 20];
    disk[510] = 0x55;
    disk[511] = 0xaa;
    std::fs::write(images.path().join("base.img"), &disk).unwrap();
    std::os::unix::fs::symlink("/etc", images.path().join("escape")).unwrap();
    let roots = vec![images.path().to_path_buf()];
    let api = Api::with(move |c| c.scan_roots = roots);
    let inside = images.path().join("base.img").display().to_string();
    let through_link = images.path().join("escape/hostname").display().to_string();
    for path in [
        "/etc/shadow",
        "/etc/passwd",
        through_link.as_str(),
        "/nonexistent",
    ] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/scan",
                Some(ADMIN),
                Some(json!({"paths": [path]})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(!v.to_string().contains("root:"), "{v}");
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/scan",
            Some(ADMIN),
            Some(json!({"paths": [inside]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["images"][0]["artifact"], "base.img", "{v}");
}

/// What a scan finds under a root is bounded too: links and backing files
/// that lead out of the roots are not opened (found from outside: a
/// symbolic link or a qcow2 backing file inside the root read a disk
/// elsewhere).
#[tokio::test]
async fn item21_links_and_backing_files_do_not_leave_the_roots() {
    if !patchline_testkit::require_tools("item21_links_and_backing_files", &["qemu-img"]) {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    let mut disk = vec![0u8; 1 << 20];
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let secret = outside.path().join("secret.img");
    std::fs::write(&secret, &disk).unwrap();
    let root = images.path();
    std::fs::write(root.join("own.img"), &disk).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("link.img")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("dirlink")).unwrap();
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-b"])
        .arg(&secret)
        .args(["-F", "raw"])
        .arg(root.join("top.qcow2"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let roots = vec![root.to_path_buf()];
    let api = Api::with(move |c| c.scan_roots = roots);
    let (s, v) = api
        .call(
            "POST",
            "/v1/scan",
            Some(ADMIN),
            Some(json!({"paths": [root.display().to_string()]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let registered: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["artifact"].as_str().unwrap())
        .collect();
    assert_eq!(registered, ["own.img"], "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("top.qcow2") && errors.contains("outside"),
        "{v}"
    );
}

// ----- 2. (found from outside) bodies are not buffered for strangers -----

/// A body that sends one chunk and then nothing, forever.
fn endless_body() -> Body {
    let chunks = futures_util::stream::unfold(0u8, |n| async move {
        if n == 0 {
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 1024])),
                1,
            ))
        } else {
            std::future::pending::<()>().await;
            None
        }
    });
    Body::from_stream(chunks)
}

#[tokio::test]
async fn item02_bodies_wait_for_a_token_and_share_a_budget() {
    let api = Api::with(|c| {
        c.body_inflight_max_bytes = 1 << 20;
        c.body_read_timeout_ms = 300;
    });
    let acme = api.tenant("acme", &[]).await;
    // No token: refused before anything of the body is read (401 on a
    // route, 404 elsewhere: the body reader runs on matched routes only).
    for (uri, status) in [
        ("/v1/artifacts", StatusCode::UNAUTHORIZED),
        ("/v1/nowhere", StatusCode::NOT_FOUND),
    ] {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-length", (15 << 20).to_string())
            .body(endless_body())
            .unwrap();
        let resp =
            tokio::time::timeout(Duration::from_secs(2), app(api.state.clone()).oneshot(req))
                .await
                .expect("the server waited for the body of a request without a token")
                .unwrap();
        assert_eq!(resp.status(), status, "{uri}");
    }
    // With a token, one slow body holds the whole (1 MiB) budget: the next
    // waits, then is told to come back; the slow one times out.
    let slow = {
        let state = api.state.clone();
        let token = acme.clone();
        tokio::spawn(async move {
            let req = Request::builder()
                .method("POST")
                .uri("/v1/artifacts")
                .header("authorization", format!("Bearer {token}"))
                .header("content-length", (1 << 20).to_string())
                .body(endless_body())
                .unwrap();
            app(state).oneshot(req).await.unwrap().status()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!slow.is_finished(), "the slow body was not waited for");
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(json!({"id": "x", "kind": "image"})),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(slow.await.unwrap(), StatusCode::REQUEST_TIMEOUT);
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(json!({"id": "x", "kind": "image"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "the budget is back: {v}");
}

// ----- 6. (found from outside) tenants are not an existence oracle -----

#[tokio::test]
async fn item06_listing_by_tenant_does_not_tell_who_exists() {
    let api = Api::new();
    let vend = api.tenant("vend", &[]).await;
    let globex = api.tenant("globex", &[]).await;
    api.artifact(&vend, json!({"id": "vend-secret", "kind": "image"}))
        .await;
    let (s1, v1) = api
        .call("GET", "/v1/artifacts?tenant=vend", Some(&globex), None)
        .await;
    let (s2, v2) = api
        .call("GET", "/v1/artifacts?tenant=nosuch", Some(&globex), None)
        .await;
    assert_eq!(
        (s1, &v1),
        (s2, &v2),
        "a tenant with private artifacts only answers like none"
    );
    assert_eq!(s1, StatusCode::OK);
    let (s, _) = api
        .call("GET", "/v1/artifacts?tenant=nosuch", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the admin may know");
}

/// Found by the API conformance run in CI: after its own token was revoked
/// (a DELETE /v1/tokens/{id} of the stateful phase), `TRACE /healthz`
/// answered 401, not 405, because the body reader checked the token for
/// every method but GET, HEAD, DELETE and OPTIONS. Only POST, PUT and PATCH
/// bodies are read (and need the token first).
#[tokio::test]
async fn an_undeclared_method_answers_405_whatever_the_token() {
    let api = Api::new();
    for token in [None, Some("not-a-token"), Some(ADMIN)] {
        for path in ["/healthz", "/readyz", "/metrics", "/v1/notices"] {
            // PUT and PATCH carry bodies: they answered 401 without a
            // valid token until the body reader ran on matched routes only
            // (found from outside).
            for method in ["TRACE", "PUT", "PATCH"] {
                let (s, _, _) = api.raw(method, path, token, "x").await;
                assert_eq!(
                    s,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} with {token:?}"
                );
            }
        }
    }
    // A body still needs a valid token before it is read.
    let (s, _, _) = api
        .raw("POST", "/v1/artifacts", Some("not-a-token"), "{}")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Found by the API conformance run in CI: a malformed `after` answered 200
/// with an empty list when the `tenant` named is unknown (the early answer
/// for unknown tenants came before the cursor was checked).
#[tokio::test]
async fn a_malformed_cursor_is_refused_before_any_early_answer() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    for path in [
        "/v1/artifacts?tenant=nobody&after=%1F%C2%A2",
        "/v1/artifacts?after=%1F",
        "/v1/advisories?after=%1F",
    ] {
        let (s, v) = api.call("GET", path, Some(&acme), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
    }
    let (s, v) = api
        .call("GET", "/v1/artifacts?tenant=nobody", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Text holding NUL is refused with a clear 422 on every backend (found
/// from outside: PostgreSQL cannot store it and answered 500 where SQLite
/// stored it), and nothing is created.
#[tokio::test]
async fn text_with_nul_is_refused_the_same_on_every_backend() {
    let api = Api::new();
    let canonical = api.tenant("canonical", &["publisher"]).await;
    for body in [
        json!({"id": "nul-name", "kind": "image", "name": "a\u{0}b"}),
        json!({"id": "nul-purl", "kind": "image", "components": ["pkg:deb/debian/a\u{0}b@1"]}),
        json!({"id": "nul-label", "kind": "image", "labels": {"k": "v\u{0}"}}),
    ] {
        let id = body["id"].as_str().unwrap().to_string();
        let (s, v) = api
            .call("POST", "/v1/artifacts", Some(&canonical), Some(body))
            .await;
        assert_eq!(s.as_u16(), 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("NUL"),
            "{v}"
        );
        let (s, _) = api
            .call(
                "GET",
                &format!("/v1/artifacts/{id}"),
                Some(&canonical),
                None,
            )
            .await;
        assert_eq!(s.as_u16(), 404);
    }
    // Whatever the declared type: `curl -d` sends a form type, and the
    // body was read as JSON all the same (found from outside: a 500 on
    // PostgreSQL).
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/artifacts")
            .header("authorization", format!("Bearer {canonical}"))
            .header("content-type", content_type)
            .body(Body::from(
                r#"{"id": "nul-form", "kind": "image", "name": "a\u0000b"}"#,
            ))
            .unwrap();
        let resp = app(api.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{content_type}");
    }
    let (s, _) = api
        .call("GET", "/v1/artifacts/nul-form", Some(&canonical), None)
        .await;
    assert_eq!(s.as_u16(), 404);
    // An escaped backslash followed by "u0000" is text, not NUL.
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&canonical),
            Some(json!({"id": "backslash", "kind": "image", "name": "a\\u0000b"})),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{v}");
}

/// Found by the API conformance run: a JSON array where the API takes an
/// object was read as the object's fields in order (`[]` acknowledged a
/// notice with 200; `["x", []]` would make a tenant). Every JSON body must
/// be an object: anything else is 400 and changes nothing.
#[tokio::test]
async fn bodies_that_are_not_objects_are_refused() {
    let api = Api::new();
    api.tenant("acme", &[]).await;
    for (method, path, body) in [
        ("POST", "/v1/tenants", r#"["mallory", ["tenant"]]"#),
        ("POST", "/v1/notices/1/ack", "[]"),
        ("POST", "/v1/subscriptions", r#"[{"type": "pull"}]"#),
        ("POST", "/v1/watches", r#"["base"]"#),
        ("POST", "/v1/tenants", r#""mallory""#),
        // Nested objects too (found by the same run: `"filter": [null]`
        // made a subscription with an empty filter).
        (
            "POST",
            "/v1/subscriptions",
            r#"{"tenant": "acme", "channel": {"type": "sse"}, "filter": [null]}"#,
        ),
        (
            "POST",
            "/v1/subscriptions",
            r#"{"tenant": "acme", "channel": ["sse"]}"#,
        ),
        (
            "POST",
            "/v1/subscriptions",
            r#"{"tenant": "acme", "channel": {"type": "pull"}, "grouping": "digest",
                "digest": ["day", "09:00", "UTC"]}"#,
        ),
    ] {
        let (s, v) = api.call_raw_json(method, path, Some(ADMIN), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path} {body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("object"),
            "{v}"
        );
    }
    let (s, _) = api
        .call("GET", "/v1/tenants/mallory/tokens", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no tenant was made");
    let (_, v) = api
        .call("GET", "/v1/subscriptions", Some(ADMIN), None)
        .await;
    assert_eq!(v["subscriptions"], serde_json::json!([]), "{v}");
}
