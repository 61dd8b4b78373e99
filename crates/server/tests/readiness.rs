//! `GET /readyz` beside `/healthz`: ready when the store answers a cheap
//! read, the catalog is loaded and the server is not stopping; otherwise
//! 503 with a body naming what is not ready. In process, through the
//! shared harness.

mod common;

use std::sync::mpsc;

use axum::http::StatusCode;
use common::Api;
use patchline_core::notice::DeliveryState;
use patchline_core::{AdvIdx, TenantIdx};
use patchline_store::{DeliveryInfo, NoticeReader, StoreError, StoredNotice};
use serde_json::{Value, json};

async fn readyz(api: &Api) -> (StatusCode, Value) {
    api.call("GET", "/readyz", None, None).await
}

#[tokio::test]
async fn a_fresh_service_is_ready_and_alive() {
    let api = Api::new();
    let (s, v) = readyz(&api).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({
            "ready": true,
            "checks": {"store": "ok", "catalog": "ok", "accepting": "ok", "deployment": "ok"},
            "not_ready": []
        })
    );
    let (s, _) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    // No token needed, and a token changes nothing.
    let (s, _) = api.call("GET", "/readyz", Some(common::ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api.call("POST", "/readyz", Some(common::ADMIN), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
}

#[tokio::test]
async fn a_store_that_does_not_answer_in_time_is_not_ready() {
    let api = Api::new();
    let reader = api.state.reader.clone();
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = reader.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    let started = std::time::Instant::now();
    let (s, v) = readyz(&api).await;
    let took = started.elapsed();
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["store"], "timeout");
    assert_eq!(v["checks"]["catalog"], "ok");
    assert_eq!(v["not_ready"], json!(["store"]));
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // Released: ready again, and alive throughout.
    assert_eq!(readyz(&api).await.0, StatusCode::OK);
    assert_eq!(
        api.call("GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
}

/// A store whose every read fails, as a broken disk or database would.
struct FailingReader;

fn broken<T>() -> Result<T, StoreError> {
    Err(StoreError::Database(
        "disk I/O error at /secret/path/patchline.db".into(),
    ))
}

impl NoticeReader for FailingReader {
    fn notices_after(
        &mut self,
        _: TenantIdx,
        _: i64,
        _: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        broken()
    }
    fn notice(&mut self, _: i64) -> Result<Option<StoredNotice>, StoreError> {
        broken()
    }
    fn notices(&mut self, _: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        broken()
    }
    fn root_open_counts(&mut self, _: &[i64]) -> Result<Vec<(i64, u64)>, StoreError> {
        broken()
    }
    fn root_notices_after(
        &mut self,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        broken()
    }
    fn patches_after(
        &mut self,
        _: Option<TenantIdx>,
        _: i64,
        _: usize,
    ) -> Result<Vec<patchline_store::PatchRow>, StoreError> {
        broken()
    }
    fn remediation_counts(&mut self, _: AdvIdx) -> Result<Vec<(String, i64)>, StoreError> {
        broken()
    }
    fn remediation_history(
        &mut self,
        _: AdvIdx,
        _: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        broken()
    }
    fn progress_counts(&mut self, _: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError> {
        broken()
    }
    fn progress_history(
        &mut self,
        _: AdvIdx,
        _: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        broken()
    }
    fn deliveries(
        &mut self,
        _: &str,
        _: Option<DeliveryState>,
        _: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        broken()
    }
    fn delivery_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        broken()
    }
    fn mark_notified(&mut self, _: &[i64], _: i64) -> Result<(), StoreError> {
        broken()
    }
}

#[tokio::test]
async fn a_failing_store_is_not_ready_and_its_error_stays_on_the_server() {
    let api = Api::new();
    *api.state.reader.lock().unwrap() = Box::new(FailingReader);
    let (s, v) = readyz(&api).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["checks"]["store"], "unavailable");
    assert_eq!(v["not_ready"], json!(["store"]));
    assert!(!v.to_string().contains("/secret/path"), "{v}");
}

#[tokio::test]
async fn a_poisoned_catalog_is_not_ready() {
    let api = Api::new();
    let engine = api.state.engine.clone();
    // A thread that panics while holding the engine poisons its lock.
    let _ = std::thread::spawn(move || {
        let _guard = engine.lock().unwrap();
        panic!("poisoning the engine lock on purpose");
    })
    .join();
    let (s, v) = readyz(&api).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["checks"]["catalog"], "unavailable");
    assert_eq!(v["checks"]["store"], "ok");
    assert_eq!(v["not_ready"], json!(["catalog"]));
}

#[tokio::test]
async fn a_stopping_server_is_not_ready() {
    let api = Api::new();
    // As `serve` does at SIGTERM (`send_replace`: this test holds no
    // receiver).
    api.state.stopping.send_replace(true);
    let (s, v) = readyz(&api).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["checks"]["accepting"], "stopping");
    assert_eq!(v["not_ready"], json!(["accepting"]));
}

#[tokio::test]
async fn the_document_declares_both_answers() {
    let doc: Value = serde_json::from_str(patchline_server::openapi_json()).unwrap();
    let op = &doc["paths"]["/readyz"]["get"];
    assert_eq!(op["security"], json!([{}]), "no token: {op}");
    let responses = op["responses"].as_object().unwrap();
    for status in ["200", "503"] {
        assert_eq!(
            responses[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Readiness",
            "{status}: {op}"
        );
    }
    // The shared error answers are documented as for every operation.
    assert!(responses.contains_key("401") && responses.contains_key("422"));
    let schema = &doc["components"]["schemas"]["Readiness"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["ready", "checks", "not_ready"]);
}
