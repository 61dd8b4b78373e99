//! The delivery worker in process, against a local receiver: what a
//! subscriber's webhook carries, and what the operator's escalation channel
//! carries (found from outside: escalations about private artifacts
//! reached the operator with no notice in them).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use common::{Api, VULNERABLE, usn_4038};
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<(String, HeaderMap, Value)>>>;

/// A receiver on 127.0.0.1 recording every POST (path, headers, body).
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    async fn record(
        State(got): State<Received>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        got.lock()
            .unwrap()
            .push((uri.path().to_string(), headers, v));
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

async fn wait_for(got: &Received, path: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let bodies: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect();
        if bodies.len() >= n {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path}: fewer than {n} messages arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_and_the_operator_receive_what_they_may_read() {
    let (url, got) = receiver().await;
    let operator_url = format!("{url}/operator");
    let api = Api::with(move |c| c.operator_webhook = Some(operator_url));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(patchline_server::worker::run(api.state.clone(), stop_rx));
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &[]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "acme-private-vm", "kind": "instance", "parent": "base"}),
    )
    .await;
    let (_, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(json!({"channel": {"type": "webhook", "url": format!("{url}/acme")}})),
        )
        .await;
    assert!(sub["secret"].as_str().unwrap().starts_with("whsec_"));
    api.publish(&canonical, &usn_4038()).await;
    let acme_got = wait_for(&got, "/acme", 1).await;
    let event = &acme_got[0];
    assert_eq!(event["type"], "dev.patchline.notice");
    assert!(
        event["source"].as_str().unwrap().starts_with("/patchline/"),
        "{event}"
    );
    let notices = event["data"]["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["artifact"], "acme-private-vm");
    assert!(notices[0].get("summary").is_none(), "text once per message");
    assert_eq!(
        event["data"]["records"]["USN-4038-1"]["summary"],
        "bzip2 vulnerabilities"
    );
    // Escalation at once: the operator reads every open notice, acme's
    // private vm included.
    {
        let mut e = api.state.engine.lock().unwrap();
        let due = e
            .schedule_reminders(
                patchline_engine::now_ms(),
                1,
                1,
                Some(patchline_server::OPERATOR_SUBSCRIPTION),
                1000,
            )
            .unwrap();
        assert_eq!(due, 2);
    }
    api.state.wake.notify_one();
    let operator_got = wait_for(&got, "/operator", 1).await;
    let artifacts: Vec<String> = operator_got
        .iter()
        .flat_map(|e| e["data"]["notices"].as_array().cloned().unwrap_or_default())
        .map(|n| n["artifact"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        artifacts.contains(&"acme-private-vm".to_string()),
        "{operator_got:?}"
    );
    assert!(artifacts.contains(&"base".to_string()), "{operator_got:?}");
    assert_eq!(operator_got[0]["type"], "dev.patchline.notice.escalation");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), worker).await;
}
