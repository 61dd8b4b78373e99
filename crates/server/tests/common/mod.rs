//! In-process test harness shared by the server's integration tests: a
//! service on a temporary data directory, called through `app().oneshot`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use patchline_server::{AppState, Config, app, open_state};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN: &str = "admin-secret-token";
pub const VULNERABLE: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";
pub const FIXED: &str =
    "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1ubuntu0.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04";

pub struct Api {
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
}

impl Api {
    pub fn new() -> Api {
        Api::with(|_| {})
    }

    /// A service whose configuration `f` may adjust (workers are off).
    pub fn with(f: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("data"));
        config.admin_token_hash = Some(patchline_server::auth::hash_token(ADMIN));
        config.workers = false;
        config.webhook_policy =
            patchline_webhook::Policy::from_env_value(Some("127.0.0.0/8")).unwrap();
        f(&mut config);
        Api {
            state: open_state(config).unwrap(),
            dir,
        }
    }

    /// Any request; answers the status, the headers and the raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app(self.state.clone())
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |v| Body::from(serde_json::to_vec(&v).unwrap()));
        let (status, _, bytes) = self.raw(method, path, token, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A request with a raw JSON text as its body.
    pub async fn call_raw_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self
            .raw(method, path, token, Body::from(body.to_string()))
            .await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn tenant(&self, id: &str, roles: &[&str]) -> String {
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

    pub async fn artifact(&self, token: &str, doc: Value) -> Value {
        let (s, v) = self
            .call("POST", "/v1/artifacts", Some(token), Some(doc))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn publish(&self, token: &str, osv: &Value) -> (StatusCode, Value) {
        self.call("POST", "/v1/advisories", Some(token), Some(osv.clone()))
            .await
    }

    pub async fn notices(&self, token: &str) -> Vec<Value> {
        let (s, v) = self
            .call("GET", "/v1/notices?after=0&limit=1000", Some(token), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["notices"].as_array().unwrap().clone()
    }

    /// The tenant's notices pulled grouped by root cause (one page).
    pub async fn grouped_notices(&self, token: &str) -> Vec<Value> {
        let (s, v) = self
            .call(
                "GET",
                "/v1/notices?grouping=grouped&limit=1000",
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["notices"].as_array().unwrap().clone()
    }
}

/// A real advisory from the test data, as JSON.
pub fn usn_4038() -> Value {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/advisories/ubuntu/USN-4038-1.json"
    ))
    .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Reads server-sent events from `body` until `n` have arrived: (event,
/// id, data).
pub async fn read_events(body: &mut Body, n: usize) -> Vec<(String, i64, Value)> {
    let mut text = String::new();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            let Some(Ok(frame)) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), 0, Value::Null);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    }
                }
                if !event.is_empty() {
                    out.push((event, id, data));
                }
            }
        }
    })
    .await
    .expect("the events arrived");
    out
}

pub async fn open_stream(api: &Api, token: &str, query: &str, last: Option<i64>) -> Body {
    let mut req = Request::builder()
        .uri(format!("/v1/notices/stream{query}"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(last) = last {
        req = req.header("last-event-id", last.to_string());
    }
    let resp = app(api.state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body()
}

// ----- a webhook receiver -----

pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver on 127.0.0.1 recording every POST (path, body).
pub async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    async fn record(
        axum::extract::State(got): axum::extract::State<Received>,
        uri: axum::http::Uri,
        body: Bytes,
    ) -> &'static str {
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        got.lock().unwrap().push((uri.path().to_string(), v));
        "ok"
    }
    let app = axum::Router::new()
        .fallback(axum::routing::post(record))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The messages of one type that reached `path`, once at least `n` did.
pub async fn wait_for(got: &Received, path: &str, ty: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let bodies: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, b)| p == path && b["type"] == ty)
            .map(|(_, b)| b.clone())
            .collect();
        if bodies.len() >= n {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path}: fewer than {n} {ty} messages arrived");
}
