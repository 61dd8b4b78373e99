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
    // A page of notices stays bounded too.
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
