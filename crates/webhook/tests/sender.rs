//! The sender against local mock receivers (wiremock on 127.0.0.1).

use std::time::Duration;

use patchline_webhook::send::REFUSED_BY_POLICY;
use patchline_webhook::ssrf::SsrfError;
use patchline_webhook::{GuardedResolver, Outcome, Policy, Secret, Sender, SenderConfig, sign};
use url::Url;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn sender_with(allow: Option<&str>, timeout_ms: u64) -> Sender {
    Sender::new(SenderConfig {
        timeout_ms,
        connect_timeout_ms: 1_000,
        user_agent: "patchline-test/1".into(),
        policy: Policy::from_env_value(allow).expect("allow-list"),
        idle_per_host: 8,
    })
    .expect("sender")
}

/// Loopback is forbidden by default; the mocks live there.
fn loopback_sender() -> Sender {
    sender_with(Some("127.0.0.0/8,::1/128"), 5_000)
}

fn url(server: &MockServer, p: &str) -> Url {
    Url::parse(&format!("{}{p}", server.uri())).expect("url")
}

fn signed_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let secret = Secret::generate();
    let ts = 1_700_000_000;
    vec![
        ("webhook-id", "msg_test".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            sign::signature(&secret, "msg_test", ts, body),
        ),
    ]
}

#[tokio::test]
async fn delivered_on_2xx_with_headers_and_body() {
    let server = MockServer::start().await;
    let body = br#"{"specversion":"1.0"}"#.to_vec();
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("webhook-id", "msg_test"))
        .and(header_exists("webhook-signature"))
        .and(header("content-type", "application/json"))
        .and(header("user-agent", "patchline-test/1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let a = loopback_sender()
        .post(&url(&server, "/hook"), &signed_headers(&body), body.clone())
        .await;
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(a.status, Some(204));
    assert_eq!(a.error, None);
    let got = server.received_requests().await.expect("recording");
    assert_eq!(got[0].body, body);
}

#[tokio::test]
async fn large_response_body_is_not_a_problem() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 1024 * 1024]))
        .mount(&server)
        .await;
    let a = loopback_sender()
        .post(&url(&server, "/"), &[], b"{}".to_vec())
        .await;
    assert_eq!(a.outcome, Outcome::Delivered);
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/old"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/new"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/new"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let a = loopback_sender()
        .post(&url(&server, "/old"), &[], b"{}".to_vec())
        .await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });
    assert_eq!(a.status, Some(302));
    assert!(
        a.error.as_deref().unwrap_or("").contains("redirect"),
        "{a:?}"
    );
}

#[tokio::test]
async fn gone_disables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&server)
        .await;
    let a = loopback_sender()
        .post(&url(&server, "/"), &[], b"{}".to_vec())
        .await;
    assert_eq!(a.outcome, Outcome::Gone);
    assert_eq!(a.status, Some(410));
}

#[tokio::test]
async fn too_many_requests_carries_retry_after_seconds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .mount(&server)
        .await;
    let a = loopback_sender()
        .post(&url(&server, "/"), &[], b"{}".to_vec())
        .await;
    assert_eq!(
        a.outcome,
        Outcome::Retry {
            after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(a.status, Some(429));
}

#[tokio::test]
async fn unavailable_with_http_date_and_without() {
    let server = MockServer::start().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    Mock::given(path("/dated"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", when.as_str()))
        .mount(&server)
        .await;
    Mock::given(path("/plain"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    Mock::given(path("/500"))
        .respond_with(ResponseTemplate::new(500).insert_header("retry-after", "5"))
        .mount(&server)
        .await;
    let s = loopback_sender();

    let a = s.post(&url(&server, "/dated"), &[], b"{}".to_vec()).await;
    assert_eq!(a.status, Some(503));
    let Outcome::Retry { after: Some(after) } = a.outcome else {
        panic!("{a:?}")
    };
    assert!(
        after > Duration::from_secs(590) && after <= Duration::from_secs(600),
        "{after:?}"
    );

    let a = s.post(&url(&server, "/plain"), &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });

    // Retry-After is only honoured on 429 and 503.
    let a = s.post(&url(&server, "/500"), &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });
    assert_eq!(a.error.as_deref(), Some("HTTP 500 Internal Server Error"));
}

#[tokio::test]
async fn other_4xx_fail_and_408_retries() {
    let server = MockServer::start().await;
    Mock::given(path("/401"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(path("/404"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(path("/408"))
        .respond_with(ResponseTemplate::new(408))
        .mount(&server)
        .await;
    let s = loopback_sender();
    for p in ["/401", "/404"] {
        let a = s.post(&url(&server, p), &[], b"{}".to_vec()).await;
        assert_eq!(a.outcome, Outcome::Failed, "{p}");
    }
    let a = s.post(&url(&server, "/408"), &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });
}

#[tokio::test]
async fn slow_receiver_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let s = sender_with(Some("127.0.0.0/8"), 300);
    let a = s
        .post(&url(&server, "/"), &[], b"{\"secret-body\":1}".to_vec())
        .await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });
    assert_eq!(a.status, None);
    assert!(a.duration_ms >= 250 && a.duration_ms < 2_500, "{a:?}");
    let err = a.error.unwrap_or_default();
    assert!(err.contains("timed out"), "{err}");
    assert!(!err.contains("secret-body"), "{err}");
}

#[tokio::test]
async fn connection_refused_retries() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let u = Url::parse(&format!("http://127.0.0.1:{port}/hook?token=abc")).unwrap();
    let a = loopback_sender().post(&u, &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Retry { after: None });
    let err = a.error.unwrap_or_default();
    assert!(err.starts_with("connection failed"), "{err}");
    assert!(!err.contains("token=abc"), "{err}");
}

#[tokio::test]
async fn ip_literal_loopback_refused_without_allow_list() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let strict = sender_with(None, 2_000);
    let port = server.address().port();
    for u in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://2130706433:{port}/"),
    ] {
        let a = strict
            .post(&Url::parse(&u).unwrap(), &[], b"{}".to_vec())
            .await;
        assert_eq!(a.outcome, Outcome::Failed, "{u}");
        assert_eq!(a.status, None);
        assert_eq!(a.error.as_deref(), Some(REFUSED_BY_POLICY), "{a:?}");
        assert!(
            a.detail.as_deref().unwrap_or("").contains("127.0.0.1"),
            "{a:?}"
        );
    }
    // Accepted once 127.0.0.0/8 is allow-listed (Mock's expect(0) is checked
    // on drop, so use a second server for the positive case).
    let ok_server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&ok_server)
        .await;
    let open = sender_with(Some("127.0.0.0/8"), 2_000);
    let u = Url::parse(&format!("http://127.0.0.1:{}/", ok_server.address().port())).unwrap();
    assert_eq!(
        open.post(&u, &[], b"{}".to_vec()).await.outcome,
        Outcome::Delivered
    );
}

#[tokio::test]
async fn localhost_name_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let strict = sender_with(None, 2_000);
    let u = Url::parse(&format!("http://localhost:{}/", server.address().port())).unwrap();
    let a = strict.post(&u, &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.error.as_deref(), Some(REFUSED_BY_POLICY), "{a:?}");
}

#[tokio::test]
async fn resolver_drops_loopback_even_when_the_static_check_passes() {
    // Only ::1 is allowed, so `localhost` passes the static check, but the
    // mock listens on 127.0.0.1, which the resolver must drop: whether the
    // attempt then fails on ::1 or finds no address left, the mock is never hit.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let s = sender_with(Some("::1/128"), 2_000);
    let u = Url::parse(&format!("http://localhost:{}/", server.address().port())).unwrap();
    let a = s.post(&u, &[], b"{}".to_vec()).await;
    assert_eq!(a.status, None);
    let err = a.error.clone().unwrap_or_default();
    match a.outcome {
        // localhost had only 127.0.0.1: nothing left after filtering. The
        // subscriber is not told what the name resolves to (hardening
        // item 10); the operator's log is.
        Outcome::Failed => {
            assert_eq!(err, REFUSED_BY_POLICY, "{a:?}");
            assert!(
                a.detail.as_deref().unwrap_or("").contains("127.0.0.1"),
                "{a:?}"
            );
        }
        // localhost also had ::1: kept, but nothing listens there.
        Outcome::Retry { .. } => assert!(err.starts_with("connection failed"), "{a:?}"),
        _ => panic!("{a:?}"),
    }
}

#[tokio::test]
async fn guarded_resolver_refusal_is_typed_inside_reqwest_errors() {
    patchline_webhook::send::ensure_crypto_provider();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(GuardedResolver::new(Policy::default()))
        .build()
        .unwrap();
    let err = client
        .post(format!("http://localhost:{}/", server.address().port()))
        .send()
        .await
        .unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = None;
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<SsrfError>() {
            found = Some(refusal.clone());
        }
        source = e.source();
    }
    assert!(
        matches!(found, Some(SsrfError::AllForbidden { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn localhost_allowed_when_loopback_is_listed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let u = Url::parse(&format!("http://localhost:{}/", server.address().port())).unwrap();
    let a = loopback_sender().post(&u, &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
}

#[tokio::test]
async fn bad_header_fails_without_sending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let headers = [("webhook-signature", "v1,abc\r\nx-injected: 1".to_owned())];
    let a = loopback_sender()
        .post(&url(&server, "/"), &headers, b"{}".to_vec())
        .await;
    assert_eq!(a.outcome, Outcome::Failed);
    assert!(!a.error.unwrap_or_default().contains("abc"));
}

/// Hardening item 10: a host name that resolves to a forbidden address
/// (here the machine's own name, which /etc/hosts maps to loopback) is
/// refused without telling the subscriber what it resolves to.
#[tokio::test]
async fn item10_resolution_of_internal_names_is_not_disclosed() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let resolves_to_loopback = !host.is_empty()
        && std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 80))
            .map(|mut a| a.any(|a| a.ip().is_loopback()))
            .unwrap_or(false);
    let name = if resolves_to_loopback {
        host
    } else {
        "localhost.".to_owned()
    };
    let strict = sender_with(None, 2_000);
    let u = Url::parse(&format!("http://{name}:9/")).unwrap();
    let a = strict.post(&u, &[], b"{}".to_vec()).await;
    assert_eq!(a.outcome, Outcome::Failed, "{a:?}");
    assert_eq!(a.error.as_deref(), Some(REFUSED_BY_POLICY), "{a:?}");
    assert!(!a.error.unwrap_or_default().contains("127."));
}
