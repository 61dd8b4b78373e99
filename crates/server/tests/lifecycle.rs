//! The life of a notice, in process: remediation by re-inventory and by
//! removal, reopening when a vulnerable version comes back, reminders and
//! escalation on an injected clock, secret rotation with an overlap, and
//! server-sent events resumed with `Last-Event-ID`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use patchline_delivery::reminder::ReminderPolicy;
use patchline_server::{AppState, Config, app, open_state};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";
const VULNERABLE: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";
const FIXED: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1ubuntu0.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";

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
        config.webhook_policy =
            patchline_webhook::Policy::from_env_value(Some("127.0.0.0/8")).unwrap();
        Api {
            state: open_state(config).unwrap(),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let body = body.map_or_else(Body::empty, |v| Body::from(serde_json::to_vec(&v).unwrap()));
        let resp = app(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn tenant(&self, id: &str, roles: &[&str]) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                ADMIN,
                Some(json!({"id": id, "roles": roles})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    async fn publish_usn(&self, publisher: &str) {
        self.publish_ubuntu(publisher, "USN-4038-1.json").await
    }

    /// Publishes a real record of `testdata/advisories/ubuntu`.
    async fn publish_ubuntu(&self, publisher: &str, file: &str) {
        let osv = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata/advisories/ubuntu")
                .join(file),
        )
        .unwrap();
        let req = Request::builder()
            .method("POST")
            .uri("/v1/advisories")
            .header("authorization", format!("Bearer {publisher}"))
            .body(Body::from(osv))
            .unwrap();
        assert_eq!(
            app(self.state.clone()).oneshot(req).await.unwrap().status(),
            StatusCode::CREATED
        );
    }

    async fn notices(&self, token: &str) -> Vec<Value> {
        let (_, v) = self
            .call("GET", "/v1/notices?after=0&limit=1000", token, None)
            .await;
        v["notices"].as_array().unwrap().clone()
    }

    fn state_of(&self, notices: &[Value], artifact: &str) -> String {
        notices
            .iter()
            .find(|n| n["artifact"] == artifact)
            .map(|n| n["state"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn remediation_removal_and_reopening() {
    let api = Api::new();
    let publisher = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    let (s, _) = api
        .call("POST", "/v1/artifacts", &publisher, Some(json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for doc in [
        json!({"id": "web", "kind": "image", "parent": "base", "components": [VULNERABLE]}),
        json!({"id": "vm", "kind": "instance", "parent": "web"}),
        json!({"id": "vm2", "kind": "instance", "parent": "base"}),
    ] {
        assert_eq!(
            api.call("POST", "/v1/artifacts", &acme, Some(doc)).await.0,
            StatusCode::CREATED
        );
    }
    api.publish_usn(&publisher).await;
    let n = api.notices(&acme).await;
    assert_eq!(n.len(), 3);
    assert!(
        n.iter()
            .all(|x| x["state"] == "affected" || x["state"] == "notified")
    );
    // acme rebuilds web with bzip2 fixed: web and vm are remediated.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/web",
            &acme,
            Some(json!({"id": "web", "kind": "image", "parent": "base", "components": [FIXED]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let n = api.notices(&acme).await;
    assert_eq!(api.state_of(&n, "web"), "remediated");
    assert_eq!(api.state_of(&n, "vm"), "remediated");
    assert_ne!(api.state_of(&n, "vm2"), "remediated");
    // Removing the instance remediates it too.
    assert_eq!(
        api.call("DELETE", "/v1/artifacts/vm2", &acme, None).await.0,
        StatusCode::NO_CONTENT
    );
    let n = api.notices(&acme).await;
    assert_eq!(api.state_of(&n, "vm2"), "remediated");
    // A downgrade brings the vulnerable version back: the same notices reopen.
    let (s, _) = api
        .call(
            "PUT",
            "/v1/artifacts/web",
            &acme,
            Some(
                json!({"id": "web", "kind": "image", "parent": "base", "components": [VULNERABLE]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let n = api.notices(&acme).await;
    assert_eq!(n.len(), 3, "reopened, not duplicated");
    assert_eq!(api.state_of(&n, "web"), "affected");
    assert_eq!(api.state_of(&n, "vm"), "affected");
    // Progress shows the history of states.
    let (_, p) = api
        .call(
            "GET",
            "/v1/advisories/USN-4038-1/progress",
            &publisher,
            None,
        )
        .await;
    let states: Vec<&str> = p["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"remediated") && states.contains(&"affected"),
        "{p}"
    );
    assert_eq!(p["by_state"]["remediated"], 1, "vm2 stays remediated: {p}");
}

#[tokio::test]
async fn reminders_escalate_on_schedule() {
    let api = Api::new();
    let publisher = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    api.call("POST", "/v1/artifacts", &publisher, Some(json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]})))
        .await;
    api.call(
        "POST",
        "/v1/artifacts",
        &acme,
        Some(json!({"id": "vm", "kind": "instance", "parent": "base"})),
    )
    .await;
    let (_, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            &acme,
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}})),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_string();
    api.publish_usn(&publisher).await;
    let hour = 3_600_000;
    let now = patchline_engine::now_ms();
    let remind = |at: i64| {
        let mut e = api.state.engine.lock().unwrap();
        let policy = ReminderPolicy {
            interval_ms: hour,
            escalate_after: 3,
            limit: 1000,
        };
        e.schedule_reminders(at, &policy, None).unwrap()
    };
    assert_eq!(remind(now), 0, "not yet due");
    // Two open notices: acme's vm and canonical's base image.
    assert_eq!(remind(now + hour + 1), 2, "both are reminded");
    assert_eq!(remind(now + hour + 2), 0, "not again within the interval");
    assert_eq!(remind(now + 2 * hour + 10), 2);
    assert_eq!(remind(now + 3 * hour + 20), 2, "third reminder escalates");
    let (_, v) = api
        .call(
            "GET",
            &format!("/v1/subscriptions/{sub}/deliveries"),
            &acme,
            None,
        )
        .await;
    let purposes: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        ["escalation", "reminder", "reminder", "notice"],
        "{v}"
    );
    // Acknowledged notices are not reminded.
    let n = api.notices(&acme).await;
    let id = n[0]["notice_id"].as_i64().unwrap();
    assert_eq!(
        api.call("POST", &format!("/v1/notices/{id}/ack"), &acme, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(remind(now + 10 * hour), 1, "only canonical's is still open");
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_overlap() {
    let api = Api::new();
    let acme = api.tenant("acme", &[]).await;
    let (_, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            &acme,
            Some(json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}})),
        )
        .await;
    let id = sub["id"].as_str().unwrap().to_string();
    let first = sub["secret"].as_str().unwrap().to_string();
    let (s, rotated) = api
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/rotate"),
            &acme,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let second = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let e = api.state.engine.lock().unwrap();
    let s = e.service().subscriptions.get(&id).unwrap();
    let now = patchline_engine::now_ms();
    assert_eq!(
        s.signing_secrets(now),
        [second.as_str(), first.as_str()],
        "both sign during the overlap"
    );
    let overlap = api.state.config.secret_overlap_ms;
    assert_eq!(
        s.signing_secrets(now + overlap + 1000),
        [second.as_str()],
        "then only the new one"
    );
    // Both signatures are in the header, and each verifies on its own.
    let secrets: Vec<patchline_webhook::Secret> = s
        .signing_secrets(now)
        .iter()
        .map(|x| x.parse().unwrap())
        .collect();
    let refs: Vec<&patchline_webhook::Secret> = secrets.iter().collect();
    let header = patchline_webhook::sign::header_value(&refs, "msg_1", now / 1000, b"{}");
    for secret in &refs {
        patchline_webhook::sign::verify(
            &[secret],
            "msg_1",
            &(now / 1000).to_string(),
            &header,
            b"{}",
            now / 1000,
            300,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn streams_resume_after_last_event_id() {
    let api = Api::new();
    let publisher = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    api.call("POST", "/v1/artifacts", &publisher, Some(json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]})))
        .await;
    for i in 0..3 {
        api.call(
            "POST",
            "/v1/artifacts",
            &acme,
            Some(json!({"id": format!("vm{i}"), "kind": "instance", "parent": "base"})),
        )
        .await;
    }
    api.publish_usn(&publisher).await;
    let ids: Vec<i64> = api
        .notices(&acme)
        .await
        .iter()
        .map(|n| n["notice_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let req = Request::builder()
        .uri("/v1/notices/stream")
        .header("authorization", format!("Bearer {acme}"))
        .header("last-event-id", ids[0].to_string())
        .body(Body::empty())
        .unwrap();
    let resp = app(api.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        seen = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|v| v.parse::<i64>().unwrap())
            .collect();
    }
    assert_eq!(seen, ids[1..], "resumes after the last id seen");
    assert!(text.contains("event: notice"));
    // A live notice arrives on the same stream.
    api.call(
        "POST",
        "/v1/artifacts",
        &acme,
        Some(json!({"id": "vm-late", "kind": "instance", "parent": "base"})),
    )
    .await;
    while !text.contains("vm-late") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// The rating of a real record (UBUNTU-CVE-2019-12900 states CVSS v3 9.8
/// and Ubuntu's priority `medium`: the vector wins) in the API's answers:
/// `affected`, the owner's artifact view, the notices.
#[tokio::test]
async fn answers_state_the_records_severity() {
    let api = Api::new();
    let publisher = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    let (s, _) = api
        .call("POST", "/v1/artifacts", &publisher, Some(json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .call(
            "POST",
            "/v1/artifacts",
            &acme,
            Some(json!({"id": "vm", "kind": "instance", "parent": "base"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    api.publish_ubuntu(&publisher, "UBUNTU-CVE-2019-12900.json")
        .await;
    api.publish_usn(&publisher).await;
    let (s, v) = api
        .call(
            "GET",
            "/v1/advisories/UBUNTU-CVE-2019-12900/affected",
            &acme,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["severity"]["level"], "critical");
    assert_eq!(v["severity"]["source"], "cvss_v3");
    assert_eq!(v["severity"]["score"], 9.8);
    assert_eq!(v["affected"][0]["artifact"], "vm");
    let (_, v) = api
        .call("GET", "/v1/advisories/USN-4038-1/affected", &acme, None)
        .await;
    assert!(v.get("severity").is_none(), "USNs state none: {v}");
    let (_, v) = api.call("GET", "/v1/artifacts/vm", &acme, None).await;
    let mut by: Vec<&str> = v["affected_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    by.sort();
    assert_eq!(by, ["UBUNTU-CVE-2019-12900", "USN-4038-1"]);
    assert_eq!(
        v["affected_by_severity"],
        json!({"UBUNTU-CVE-2019-12900": "critical"})
    );
    // A failure's level is one of the levels, never a free word.
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts/base/failures",
            &publisher,
            Some(json!({"summary": "x", "severity": "catastrophic"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/artifacts/base/failures",
            &publisher,
            Some(json!({"summary": "x", "severity": "Moderate"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // An alias answers which records name it (advisories are public).
    let (s, v) = api
        .call("GET", "/v1/advisories/CVE-2019-12900/affected", &acme, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v["error"]["message"],
        "CVE-2019-12900 is no record id; it is an alias of UBUNTU-CVE-2019-12900: ask for one of them"
    );
    let notices = api.notices(&acme).await;
    let n = notices
        .iter()
        .find(|n| n["advisory"] == "UBUNTU-CVE-2019-12900")
        .expect("a notice of the record");
    assert_eq!(n["severity"], "critical", "{n}");
}
