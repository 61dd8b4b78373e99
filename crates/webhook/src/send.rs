//! HTTP sender for one delivery attempt: no redirects, guarded DNS, bounded
//! time and response size, and a classification the worker can act on.

use std::error::Error as StdError;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use crate::ssrf::{GuardedResolver, Policy, SsrfError};

/// Response bytes read at most: enough to let the connection be reused after
/// a typical answer, small enough that a hostile receiver cannot make us
/// buffer much. The body itself is discarded (it could echo our request).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Settings of a [`Sender`]. The spec recommends a 15–30 s request timeout.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Whole attempt: connect, TLS, request, response head and body.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub user_agent: String,
    pub policy: Policy,
    /// Idle connections kept per host: as many as the worker sends to one
    /// endpoint at once, or each request past them opens (and closes) a
    /// connection of its own.
    pub idle_per_host: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            timeout_ms: 15_000,
            connect_timeout_ms: 5_000,
            user_agent: concat!("patchline-webhook/", env!("CARGO_PKG_VERSION")).to_owned(),
            policy: Policy::default(),
            idle_per_host: 32,
        }
    }
}

/// What the worker should do after an attempt.
///
/// Choice for 4xx (other than 408, 410 and 429): [`Outcome::Failed`]. The
/// Standard Webhooks spec counts any non-2xx as a failure to retry; a 4xx is
/// usually a receiver misconfiguration (wrong secret, missing route) that
/// tenants fix within the retry window, so the worker retries it on the same
/// schedule, but it is kept apart from [`Outcome::Retry`] so that endpoint
/// health and logs can say "rejected" rather than "unreachable".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Transient: 5xx, 429, 408, 3xx (redirects are not followed; the
    /// tenant should update the URL), timeouts and connection errors.
    /// `after` is the receiver's `Retry-After` on 429/503 (capped at a day),
    /// to be honoured as a lower bound on the next delay.
    Retry { after: Option<Duration> },
    /// 410: the receiver asks us to stop; disable the endpoint.
    Gone,
    /// Other 4xx, a refusal by the SSRF policy, or a request that could not
    /// be built (bad header). Counts as a failed attempt.
    Failed,
}

/// One attempt's record, safe to store and show: `error` never contains the
/// secret, the request body, the response body or the URL's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// What the subscriber may read (stored with the delivery).
    pub error: Option<String>,
    /// For the operator's log only: why the policy refused the address
    /// (it may name what an internal host resolves to).
    pub detail: Option<String>,
}

/// What a subscriber is told when the SSRF policy refuses its endpoint.
pub const REFUSED_BY_POLICY: &str = "refused by policy";

/// A pooled HTTP client for deliveries. Cheap to share (`Arc` inside
/// `reqwest::Client`); build one per process.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

/// reqwest is built with `rustls-no-provider` (ring only, no aws-lc C
/// build), so a process-wide provider must exist before a client is built.
/// If the embedding program installed one already, that one is kept.
/// Public so that other reqwest clients in the process can call it too.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err only if another thread won the race: a provider exists.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

impl Sender {
    pub fn new(config: SenderConfig) -> Result<Sender, SendError> {
        ensure_crypto_provider();
        let policy = Arc::new(config.policy);
        let client = reqwest::Client::builder()
            // The spec: do not follow redirects; a 3xx is a failed attempt.
            // Following one would also bypass the static URL check.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy, the proxy resolves the name and our guard
            // never sees the address, so environment proxies are ignored.
            .no_proxy()
            .dns_resolver(GuardedResolver::new((*policy).clone()))
            // A zero timeout would fail every attempt; 1 ms is the floor.
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)))
            .user_agent(config.user_agent)
            .referer(false)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.idle_per_host.max(1))
            .tcp_keepalive(Duration::from_secs(60))
            .build()
            .map_err(|e| SendError::Client(describe(&e)))?;
        Ok(Sender { client, policy })
    }

    /// The policy this sender enforces.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// POSTs `body` to `url` with `headers` (typically the three
    /// `webhook-*` headers; `content-type` defaults to `application/json`)
    /// and classifies the answer. Never panics and never returns an error:
    /// every failure is an [`Attempt`] the worker can record.
    pub async fn post(&self, url: &Url, headers: &[(&str, String)], body: Vec<u8>) -> Attempt {
        let start = Instant::now();
        let attempt = |outcome: Outcome,
                       status: Option<u16>,
                       error: Option<String>,
                       detail: Option<String>| Attempt {
            outcome,
            status,
            duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
            detail,
        };
        let finish = |outcome, status, error| attempt(outcome, status, error, None);
        let refused = |why: String| {
            attempt(
                Outcome::Failed,
                None,
                Some(REFUSED_BY_POLICY.to_owned()),
                Some(why),
            )
        };

        // IP-literal hosts never reach the resolver, so they are checked
        // here; stored URLs are re-checked since the policy may have changed.
        if let Err(e) = self.policy.check_parsed(url) {
            return refused(e.to_string());
        }
        let header_map = match build_headers(headers) {
            Ok(h) => h,
            Err(msg) => return finish(Outcome::Failed, None, Some(msg)),
        };

        let response = match self
            .client
            .post(url.clone())
            .headers(header_map)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                if let Some(refusal) = ssrf_refusal(&e) {
                    return refused(refusal.to_string());
                }
                return finish(Outcome::Retry { after: None }, None, Some(describe(&e)));
            }
        };

        let status = response.status();
        let code = status.as_u16();
        let after = if code == 429 || code == 503 {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        // Drain (bounded) so the connection can go back to the pool; a
        // failure here does not change what the status already told us.
        drain(response).await;

        let reason = status.canonical_reason().unwrap_or("");
        let http_error = || Some(format!("HTTP {code} {reason}").trim_end().to_owned());
        match code {
            200..=299 => finish(Outcome::Delivered, Some(code), None),
            410 => finish(Outcome::Gone, Some(code), http_error()),
            429 | 503 => finish(Outcome::Retry { after }, Some(code), http_error()),
            300..=399 => finish(
                Outcome::Retry { after: None },
                Some(code),
                Some(format!(
                    "HTTP {code}: redirect not followed; update the webhook URL"
                )),
            ),
            // 408 means the receiver timed out reading us: transient.
            408 | 500..=599 => finish(Outcome::Retry { after: None }, Some(code), http_error()),
            _ => finish(Outcome::Failed, Some(code), http_error()),
        }
    }
}

fn build_headers(headers: &[(&str, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        // The value is not echoed: it may be a signature.
        let v =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {n}"))?;
        map.append(n, v);
    }
    if !map.contains_key(CONTENT_TYPE) {
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(map)
}

async fn drain(mut response: reqwest::Response) {
    let mut read = 0usize;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read = read.saturating_add(chunk.len()),
            Ok(None) | Err(_) => break,
        }
    }
}

/// The resolver's typed refusal, if that is what failed the request.
fn ssrf_refusal(e: &reqwest::Error) -> Option<&SsrfError> {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = source {
        if let Some(refusal) = err.downcast_ref::<SsrfError>() {
            return Some(refusal);
        }
        source = err.source();
    }
    None
}

/// A one-line description of a transport error: kind, then the cause chain,
/// without the URL (its query could hold a tenant's token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut out = kind.to_owned();
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

/// Longest `Retry-After` honoured: a receiver cannot park a delivery for
/// longer than a day (and callers doing millisecond arithmetic on it cannot
/// overflow).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped
/// at [`MAX_RETRY_AFTER`]. A date in the past means "now"; anything
/// unparsable is ignored.
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "back off a lot", not garbage.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("86401", now), Some(MAX_RETRY_AFTER));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(10 * 86_400));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
        for bad in ["", "-5", "1.5", "soon", "Mon, 32 Foo 2024"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn headers_are_validated_without_echoing_values() {
        let ok = build_headers(&[("webhook-id", "msg_1".into())]).unwrap();
        assert_eq!(ok.get(CONTENT_TYPE).unwrap(), "application/json");
        let ce = build_headers(&[("Content-Type", "application/cloudevents+json".into())]).unwrap();
        assert_eq!(ce.get_all(CONTENT_TYPE).iter().count(), 1);
        assert!(build_headers(&[("bad name", "x".into())]).is_err());
        let e = build_headers(&[("webhook-signature", "v1,SECRETISH\n".into())]).unwrap_err();
        assert!(!e.contains("SECRETISH"), "{e}");
    }
}
