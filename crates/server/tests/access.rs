//! One test per access rule, in process (`app().oneshot`): what a tenant
//! may read, write, derive from, subscribe to and acknowledge, and what the
//! webhook URL checks refuse. Every refusal is checked for its status and
//! for leaving nothing behind.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use patchline_server::{AppState, Config, app, open_state};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";

struct Api {
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("data"));
        config.admin_token_hash = Some(patchline_server::auth::hash_token(ADMIN));
        config.workers = false;
        config.body_max_bytes = 64 << 10;
        Api {
            state: open_state(config).unwrap(),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
            None => Body::empty(),
        };
        let resp = app(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn tenant(&self, id: &str, roles: &[&str]) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                Some(ADMIN),
                Some(json!({"id": id, "roles": roles})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_string()
    }
}

const BZIP2: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";

/// canonical (publisher) with a public and a private image; acme and
/// globex tenants; acme has an image derived from the public one.
async fn world() -> (Api, String, String, String) {
    let api = Api::new();
    let publisher = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    let globex = api.tenant("globex", &["tenant"]).await;
    for doc in [
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [BZIP2]}),
        json!({"id": "secret-base", "kind": "image", "components": [BZIP2]}),
    ] {
        let (s, v) = api
            .call("POST", "/v1/artifacts", Some(&publisher), Some(doc))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(json!({"id": "acme-img", "kind": "image", "parent": "base"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (api, publisher, acme, globex)
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let (api, _, acme, _) = world().await;
    assert_eq!(
        api.call("GET", "/v1/artifacts/base", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call("GET", "/v1/artifacts/base", Some("plt_nope"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call("GET", "/v1/artifacts/base", Some(&acme), None)
            .await
            .0,
        StatusCode::OK
    );
    // A second token, minted by the first; then the second one revoked
    // (revoking the first would revoke the second too: it minted it).
    let (s, v) = api
        .call("POST", "/v1/tenants/acme/tokens", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let second = v["token"].as_str().unwrap().to_string();
    let second_id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.call("POST", "/v1/tenants/globex/tokens", Some(&acme), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = api
        .call(
            "POST",
            "/v1/tenants",
            Some(&acme),
            Some(json!({"id": "evil"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the admin creates tenants");
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/v1/tokens/{second_id}"),
            Some(&acme),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let remaining = if api
        .call("GET", "/v1/artifacts/base", Some(&acme), None)
        .await
        .0
        == StatusCode::OK
    {
        1
    } else {
        0
    } + if api
        .call("GET", "/v1/artifacts/base", Some(&second), None)
        .await
        .0
        == StatusCode::OK
    {
        1
    } else {
        0
    };
    assert_eq!(remaining, 1, "exactly one of the two tokens still works");
}

#[tokio::test]
async fn foreign_private_artifacts_are_missing() {
    let (api, publisher, acme, globex) = world().await;
    let (missing_status, missing_body) = api
        .call("GET", "/v1/artifacts/no-such-thing", Some(&globex), None)
        .await;
    let (status, body) = api
        .call("GET", "/v1/artifacts/acme-img", Some(&globex), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing_status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("acme-img", "X"),
        missing_body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no-such-thing", "X"),
        "same answer as a missing id"
    );
    assert_eq!(
        api.call("GET", "/v1/artifacts/acme-img", Some(&acme), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.call("GET", "/v1/artifacts/base", Some(&globex), None)
            .await
            .0,
        StatusCode::OK,
        "public"
    );
    // The public image's private parentage is not shown to others.
    let (s, v) = api
        .call("POST", "/v1/artifacts", Some(&publisher), Some(json!({"id": "pub-child", "kind": "image", "parent": "secret-base", "visibility": "public"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = api
        .call("GET", "/v1/artifacts/pub-child", Some(&globex), None)
        .await;
    assert_eq!(v["parent"], "(private)");
    // Deleting someone else's artifact: not found, and it is still there.
    assert_eq!(
        api.call("DELETE", "/v1/artifacts/acme-img", Some(&globex), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("GET", "/v1/artifacts/acme-img", Some(&acme), None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn writes_and_derivations_are_checked() {
    let (api, _, acme, globex) = world().await;
    // Deriving from another tenant's private artifact: as if it did not exist.
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "g-vm", "kind": "instance", "parent": "acme-img"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "unknown_parent");
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "g-vm", "kind": "instance", "parent": "secret-base"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_parent"))
    );
    // From a public one: fine.
    let (s, _) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "g-vm", "kind": "instance", "parent": "base"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Creating under another tenant's name, or overwriting its artifact.
    let (s, _) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&globex),
            Some(json!({"id": "x", "kind": "image", "tenant": "acme"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-img",
            Some(&globex),
            Some(json!({"id": "acme-img", "kind": "image"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "the id is taken, and the artifact is untouched"
    );
    let (_, v) = api
        .call("GET", "/v1/artifacts/acme-img", Some(&acme), None)
        .await;
    assert_eq!(v["parent"], "base");
    // Tenants do not publish advisories, nor failures of others' artifacts.
    let osv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/advisories/ubuntu/USN-4038-1.json"
    ))
    .unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("/v1/advisories")
        .header("authorization", format!("Bearer {acme}"))
        .body(Body::from(osv))
        .unwrap();
    assert_eq!(
        app(api.state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let (s, _) = api
        .call(
            "POST",
            "/v1/artifacts/acme-img/failures",
            Some(&acme),
            Some(json!({"summary": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "failures need the publisher role");
    // Bodies beyond the bound are refused before parsing.
    let big = json!({"id": "big", "kind": "image", "name": "x".repeat(100_000)});
    assert_eq!(
        api.call("POST", "/v1/artifacts", Some(&acme), Some(big))
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Malformed bodies say what is wrong.
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(json!({"id": "y", "kind": "vm"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown kind"),
        "{v}"
    );
}

#[tokio::test]
async fn subscriptions_notices_and_acks_are_per_tenant() {
    let (api, publisher, acme, globex) = world().await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "pull"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sub = v["id"].as_str().unwrap().to_string();
    assert!(v.get("secret").is_none(), "only webhooks have secrets");
    for (m, path) in [
        ("GET", format!("/v1/subscriptions/{sub}")),
        ("DELETE", format!("/v1/subscriptions/{sub}")),
        ("GET", format!("/v1/subscriptions/{sub}/deliveries")),
        ("POST", format!("/v1/subscriptions/{sub}/replay")),
        ("POST", format!("/v1/subscriptions/{sub}/rotate")),
    ] {
        assert_eq!(
            api.call(m, &path, Some(&globex), None).await.0,
            StatusCode::NOT_FOUND,
            "{m} {path}"
        );
    }
    let (_, v) = api
        .call("GET", "/v1/subscriptions", Some(&globex), None)
        .await;
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 0);
    // A notice for acme's image.
    let osv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/advisories/ubuntu/USN-4038-1.json"
    ))
    .unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("/v1/advisories")
        .header("authorization", format!("Bearer {publisher}"))
        .body(Body::from(osv))
        .unwrap();
    assert_eq!(
        app(api.state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::CREATED
    );
    let (_, v) = api.call("GET", "/v1/notices", Some(&acme), None).await;
    let notices = v["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{v}");
    assert_eq!(notices[0]["artifact"], "acme-img");
    assert_eq!(notices[0]["path"], json!(["base", "acme-img"]));
    let id = notices[0]["notice_id"].as_i64().unwrap();
    let (_, v) = api.call("GET", "/v1/notices", Some(&globex), None).await;
    assert!(
        v["notices"].as_array().unwrap().is_empty(),
        "globex owns nothing affected"
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/notices/{id}/ack"),
            Some(&globex),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/notices/{id}/ack"),
            Some(&acme),
            Some(json!({"state": "not_affected"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a justification is required: {v}"
    );
    let (s, v) = api
        .call("POST", &format!("/v1/notices/{id}/ack"), Some(&acme), None)
        .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("acknowledged"))
    );
    // The tenant's view of the affected set is its own artifacts only.
    let (_, v) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/affected",
            Some(&globex),
            None,
        )
        .await;
    assert!(v["affected"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/affected",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(v["affected"].as_array().unwrap().len(), 1);
    // The publisher sees counts, never other tenants' ids.
    let (_, v) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/progress",
            Some(&publisher),
            None,
        )
        .await;
    assert_eq!(v["affected_now"], 3, "{v}");
    assert!(!v.to_string().contains("acme"), "{v}");
    assert_eq!(v["by_state"]["acknowledged"], 1, "{v}");
    // Watching a public artifact brings its notices; a private one is missing.
    assert_eq!(
        api.call(
            "POST",
            "/v1/watches",
            Some(&globex),
            Some(json!({"artifact": "acme-img"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(
            "POST",
            "/v1/watches",
            Some(&globex),
            Some(json!({"artifact": "base"}))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (_, v) = api.call("GET", "/v1/notices", Some(&globex), None).await;
    let watched: Vec<&str> = v["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["artifact"].as_str().unwrap())
        .collect();
    assert_eq!(watched, ["base"]);
}

#[tokio::test]
async fn webhook_urls_are_checked() {
    let (api, _, acme, _) = world().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "http://user:pass@example.com/hook",
        "not a url",
    ] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/subscriptions",
                Some(&acme),
                Some(json!({"channel": {"type": "webhook", "url": url}})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert_eq!(v["error"]["code"], "url_refused", "{url}");
    }
    let (_, v) = api
        .call("GET", "/v1/subscriptions", Some(&acme), None)
        .await;
    assert!(
        v["subscriptions"].as_array().unwrap().is_empty(),
        "nothing half-created"
    );
    let (s, v) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": "https://hooks.example.com/acme"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["secret"].as_str().unwrap().starts_with("whsec_"));
    let (s, v) = api
        .call("POST", "/v1/subscriptions", Some(&acme), Some(json!({"channel": {"type": "webhook", "url": "https://a.example"}, "filter": {"severity": "high"}})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown filter field: {v}");
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let doc: Value = serde_json::from_str(patchline_server::openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/v1/tenants",
        "/v1/tenants/{id}/tokens",
        "/v1/tokens/{id}",
        "/v1/prefixes",
        "/v1/operator/escalation",
        "/v1/artifacts",
        "/v1/artifacts/{id}",
        "/v1/artifacts/{id}/lineage",
        "/v1/artifacts/{id}/exposure",
        "/v1/artifacts/{id}/failures",
        "/v1/advisories",
        "/v1/advisories/{id}/affected",
        "/v1/advisories/{id}/progress",
        "/v1/advisories/{id}/remedy",
        "/v1/report",
        "/v1/subscriptions",
        "/v1/subscriptions/{id}/deliveries",
        "/v1/watches",
        "/v1/notices",
        "/v1/notices/stream",
        "/v1/notices/{id}/ack",
        "/v1/scan",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    // Every JSON answer has a concrete schema, and every operation
    // documents the error shape.
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("401") && responses.contains_key("422"),
                "{method} {path}"
            );
            for (status, r) in responses {
                let Some(schema) = r["content"]["application/json"]["schema"].as_object() else {
                    continue;
                };
                assert!(!schema.is_empty(), "{method} {path} {status}: empty schema");
            }
        }
    }
    let api = Api::new();
    let (s, v) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(
        (s, v["openapi"].as_str().map(|o| o.starts_with("3.1"))),
        (StatusCode::OK, Some(true))
    );
    let (s, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn scanning_is_for_the_operator() {
    let (api, _, acme, _) = world().await;
    let body = json!({"paths": ["/nonexistent/images"]});
    assert_eq!(
        api.call("POST", "/v1/scan", Some(&acme), Some(body.clone()))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Without image roots the API reads nothing of the server's disk.
    let (s, v) = api.call("POST", "/v1/scan", Some(ADMIN), Some(body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = api
        .call("POST", "/v1/scan", Some(ADMIN), Some(json!({"paths": []})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// An inline SBOM with bad components: skipped and named in the answer,
/// kept as the artifact's inventory warnings (shown to its owner);
/// `?strict=true` refuses it at the first; the `components` list stays
/// strict.
#[tokio::test]
async fn bad_sbom_components_are_skipped_unless_strict() {
    let (api, _, acme, globex) = world().await;
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [
        {"name": "libbz2", "purl": BZIP2},
        {"name": "broken", "purl": "not-a-purl"},
        {"name": "nover", "purl": "pkg:deb/ubuntu/zlib1g?distro=ubuntu-18.04"}
    ]});
    let doc = json!({"id": "acme-sbom", "kind": "image", "visibility": "public", "sbom": sbom});

    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts?strict=true",
            Some(&acme),
            Some(doc.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("components[1].purl") && text.contains("not-a-purl"),
        "{v}"
    );
    let (s, _) = api
        .call("GET", "/v1/artifacts/acme-sbom", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "strict refusal leaves nothing");

    let (s, v) = api
        .call("POST", "/v1/artifacts", Some(&acme), Some(doc.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["components"], 1, "{v}");
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{v}");
    assert!(
        warnings[0].contains("components[1].purl") && warnings[0].contains("not-a-purl"),
        "{v}"
    );
    assert!(
        warnings[1].contains("components[2].purl") && warnings[1].contains("no version"),
        "{v}"
    );
    assert_eq!(v["inventory_warnings"].as_array().unwrap().len(), 2, "{v}");

    // Kept: the owner sees them on every read; another tenant does not.
    let (s, v) = api
        .call("GET", "/v1/artifacts/acme-sbom", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["inventory_warnings"].as_array().unwrap().len(), 2, "{v}");
    let (s, v) = api
        .call("GET", "/v1/artifacts/acme-sbom", Some(&globex), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("inventory_warnings").is_none(), "{v}");

    // The same document again is a no-op; PUT with ?strict=true refuses it.
    let (s, _) = api
        .call("POST", "/v1/artifacts", Some(&acme), Some(doc.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-sbom?strict=true",
            Some(&acme),
            Some(doc),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // A clean re-inventory clears them.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-sbom",
            Some(&acme),
            Some(json!({"id": "acme-sbom", "kind": "image", "visibility": "public", "components": [BZIP2]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("inventory_warnings").is_none(), "{v}");

    // The contract's list stays strict.
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts",
            Some(&acme),
            Some(json!({"id": "acme-list", "kind": "image", "components": [BZIP2, "not-a-purl"]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("components[1]"), "{v}");
}
