//! The patchline service: the HTTP API of CONTRACT.md §5, server-sent
//! event streams, and the host of the delivery worker
//! (`patchline_delivery::worker`) and the reminder loop. The only crate
//! that knows HTTP.

pub mod auth;
pub mod conn;
pub mod error;
pub mod follow;
pub mod metrics;
pub mod routes;
pub mod sse;
pub mod state;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use patchline_core::notice::Channel;
use patchline_delivery::routing::{Filter, RATE_PER_S_DEFAULT, SecretEntry, Subscription};
use patchline_engine::EngineError;
use patchline_store::service::{SqliteQueue, SqliteReader};
use tokio::sync::{Notify, watch};

pub use crate::state::{AppState, BusSettings, Config, Engine, StoreBackend};

/// The OpenAPI 3.1 document served at `/openapi.json`, generated from the
/// typed requests and answers of [`routes`] (made once).
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        routes::router()
            .1
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// Whether the route template `path` (as `MatchedPath` gives it) declares
/// `method`: from the same document the router is built from.
fn declares(path: &str, method: &axum::http::Method) -> bool {
    use std::collections::HashMap;
    static METHODS: std::sync::OnceLock<HashMap<String, Vec<String>>> = std::sync::OnceLock::new();
    let map = METHODS.get_or_init(|| {
        let doc = routes::router().1;
        let json = serde_json::to_value(&doc.paths).unwrap_or_default();
        json.as_object()
            .into_iter()
            .flatten()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(m, _)| m.to_ascii_uppercase())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    });
    map.get(path)
        .is_some_and(|m| m.iter().any(|m| m == method.as_str()))
}

pub use patchline_delivery::OPERATOR_SUBSCRIPTION;

/// The router over a state (in-process tests call it directly).
pub fn app(state: Arc<AppState>) -> Router {
    let body_max = state.config.body_max_bytes;
    let (router, _) = routes::router();
    router
        // Only on matched routes: an undeclared method answers 405 before
        // any token check (PUT on a GET route answered 401, found from
        // outside).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_body,
        ))
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    st.metrics
        .http_requests_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    next.run(req).await
}

/// Reads a request's body whole before any handler runs: at most
/// `body_max_bytes` (else 413) within `body_read_timeout_ms` (else 408),
/// so a client trickling a body cannot hold a handler. Nothing is buffered
/// before the caller's token is checked (401 first), bodies of methods other
/// than POST, PUT and PATCH are not read, and all bodies being read at once share a
/// budget of `body_inflight_max_bytes` (503 when no room frees up within a
/// third of the body time-out).
async fn read_body(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    // Only the methods that carry a body here are read (and so need the
    // token first); any other (GET, DELETE, TRACE, ...), and a method the
    // matched route does not declare, goes to routing without one, so an
    // undeclared method answers 405 whatever the token.
    let declared = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|p| declares(p.as_str(), &parts.method));
    if !declared || !matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        return next
            .run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::empty(),
            ))
            .await;
    }
    if let Err(e) = auth::authenticate_fresh(&st, &parts.headers).await {
        return e.into_response();
    }
    const MIB: usize = 1 << 20;
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(st.config.body_max_bytes);
    let too_large = || {
        error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is larger than {} bytes",
                st.config.body_max_bytes
            ),
        )
        .into_response()
    };
    if declared > st.config.body_max_bytes {
        return too_large();
    }
    let timeout = Duration::from_millis(st.config.body_read_timeout_ms);
    // Bodies without a declared length count as the largest allowed; none
    // counts for more than the whole budget.
    let total = st.config.body_inflight_max_bytes.div_ceil(MIB).max(1);
    let permits = declared.div_ceil(MIB).clamp(1, total) as u32;
    // Waiting for room takes at most a third of the body time-out.
    let budget = match tokio::time::timeout(
        timeout / 3,
        st.body_budget.clone().acquire_many_owned(permits),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            return error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many request bodies are being received; retry",
            )
            .into_response();
        }
    };
    let limited = http_body_util::Limited::new(body, st.config.body_max_bytes);
    let bytes = match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => {
            return error::ApiError::bad_request("the request body could not be read")
                .into_response();
        }
        Err(_) => {
            return error::ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} s",
                    st.config.body_read_timeout_ms / 1000
                ),
            )
            .into_response();
        }
    };
    // Whatever the declared type (the handlers read JSON bodies whatever
    // `content-type` says: found from outside, `curl -d` sends a form type
    // and its NUL reached PostgreSQL as a 500).
    if let Some(at) = json_nul_at(&bytes).or_else(|| bytes.iter().position(|&b| b == 0)) {
        // No text may hold NUL: PostgreSQL cannot store it, and no name,
        // purl or advisory text needs it. Refused the same on every
        // backend.
        return error::ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the request body holds a NUL character (\\u0000) at byte {at}: text may not contain NUL"),
        )
        .into_response();
    }
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        ))
        .await;
    drop(budget);
    response
}

/// Where a JSON text holds the escape of a NUL character (`\u0000`, not
/// an escaped backslash followed by `u0000`), if anywhere. A raw NUL byte
/// is not valid JSON and is refused by the parser anyway.
fn json_nul_at(body: &[u8]) -> Option<usize> {
    let needle = b"\\u0000";
    let mut from = 0;
    while let Some(i) = body[from..].windows(needle.len()).position(|w| w == needle) {
        let at = from + i;
        let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(at);
        }
        from = at + needle.len();
    }
    None
}

/// Opens the data directory, turns notices on and records those missing
/// (imports made while the service was down), and builds the state.
pub fn open_state(config: Config) -> Result<Arc<AppState>, EngineError> {
    let (mut engine, reader, queues, node_lock) = open_backend(&config)?;
    engine.set_clock(config.clock.clone());
    engine.enable_notices();
    let created = engine.reconcile_all()?;
    if created > 0 {
        tracing::info!(
            notices = created,
            "recorded the notices missing at start-up"
        );
    }
    let _ = engine.take_created();
    if let Some(url) = &config.operator_webhook {
        ensure_operator(&mut engine, url)?;
    }
    engine.end_write();
    let _ = engine.take_created();
    let _ = engine.take_remote_deliveries();
    let _ = engine.take_remote_service();
    let applied = engine.applied_seq();
    let stream_slots = match (&config.store, &config.bus) {
        (StoreBackend::Postgres { url }, Some(_)) => {
            Some(Arc::new(patchline_store::postgres::StreamSlots::open(url)?))
        }
        _ => None,
    };
    let config_body_budget_mib = config.body_inflight_max_bytes.div_ceil(1 << 20);
    Ok(Arc::new(AppState {
        _node_lock: node_lock,
        config,
        view: engine.view(),
        credentials: engine.credentials(),
        engine: Arc::new(Mutex::new(engine)),
        reader: Arc::new(Mutex::new(reader)),
        queues,
        hub: sse::Hub::default(),
        wake: Arc::new(Notify::new()),
        metrics: Arc::default(),
        revocations: watch::channel(0).0,
        stopping: watch::channel(false).0,
        conflicts: Mutex::default(),
        applied: watch::channel(applied).0,
        bus_connected: Default::default(),
        follow_kick: Notify::new(),
        catch_ups: watch::channel(0).0,
        stream_slots,
        body_budget: Arc::new(tokio::sync::Semaphore::new((config_body_budget_mib).max(1))),
        exports: tokio::sync::Semaphore::new(1),
    }))
}

type Backend = (
    Engine,
    Box<dyn patchline_store::NoticeReader>,
    state::QueueFactory,
    Option<patchline_store::postgres::NodeLock>,
);

/// The engine, the readers' connection and the queue factory of the
/// configured store.
fn open_backend(config: &Config) -> Result<Backend, EngineError> {
    match &config.store {
        StoreBackend::Embedded => {
            let engine =
                patchline_engine::Engine::open_with(&config.data_dir, config.secret_keys.clone())?
                    .into_dyn();
            let reader = Box::new(SqliteReader::open(&config.data_dir)?);
            let dir = config.data_dir.clone();
            let queues: state::QueueFactory = Arc::new(move || {
                Ok(Box::new(SqliteQueue::open(&dir)?) as Box<dyn patchline_store::DeliveryQueue>)
            });
            Ok((engine, reader, queues, None))
        }
        StoreBackend::Postgres { url } => {
            use patchline_store::postgres::{NodeLock, PgQueue, PgReader, PgStore};
            // Without a bus a node holds the database alone: a second one
            // is refused here. With one, the nodes of the deployment
            // share it, one writer at a time through the change log.
            let lost = |why: &str| {
                tracing::error!("{why}");
                // Fail-stop: a supervisor restarts it, and it then loads
                // the catalog afresh or is refused while the other runs.
                std::process::exit(75);
            };
            let store = match &config.bus {
                // A node of a deployment: its hold is shared with the
                // other nodes (a node without a bus is refused beside
                // them), the database bound to its prefix; the change log
                // keeps the nodes' writes in one order.
                Some(bus) => {
                    let lock = NodeLock::acquire_shared(url, lost)?;
                    let mut store =
                        PgStore::open(url, config.secret_keys.clone())?.end_when_frozen()?;
                    store.join_deployment(&bus.prefix)?;
                    (store, lock)
                }
                // Alone: an exclusive hold, and every commit checks it.
                None => {
                    let lock = NodeLock::acquire(url, lost)?;
                    (
                        PgStore::open(url, config.secret_keys.clone())?.fenced(&lock),
                        lock,
                    )
                }
            };
            let (store, lock) = store;
            let engine = patchline_engine::Engine::with_store(store)?.into_dyn();
            let reader = Box::new(PgReader::open(url)?);
            let url = url.clone();
            let queues: state::QueueFactory = Arc::new(move || {
                Ok(Box::new(PgQueue::open(&url)?) as Box<dyn patchline_store::DeliveryQueue>)
            });
            Ok((engine, reader, queues, Some(lock)))
        }
    }
}

/// The operator's escalation channel: a subscription of the `_operator`
/// tenant to the configured URL.
fn ensure_operator(engine: &mut Engine, url: &str) -> Result<(), EngineError> {
    // Under the write lock, after applying what other nodes committed:
    // nodes of a deployment started together set it up once (found from
    // outside: all but one exited, "tenant _operator already exists").
    engine.begin_write()?;
    let existing = engine
        .service()
        .subscriptions
        .get(OPERATOR_SUBSCRIPTION)
        .cloned();
    let channel = Channel::Webhook {
        url: url.to_string(),
    };
    if existing
        .as_ref()
        .is_some_and(|s| s.channel == channel && s.state.is_active())
    {
        return Ok(());
    }
    let tenant = patchline_core::TenantId::new("_operator")
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let t = engine.catalog().tenant_idx("_operator");
    let t = match t {
        Some(t) => t,
        None => {
            let (id, token) = auth::new_token();
            engine.create_tenant(&tenant, &[], &id, &auth::hash_token(&token))?;
            engine
                .catalog()
                .tenant_idx("_operator")
                .ok_or_else(|| EngineError::Invalid("operator tenant".into()))?
        }
    };
    let secrets = match existing {
        Some(s) => s.secrets,
        None => {
            // Never printed nor logged: the operator reads it with
            // `GET /v1/operator/escalation`.
            let secret = patchline_webhook::Secret::generate().to_string();
            tracing::info!(
                "escalation webhook set up; read its secret with GET /v1/operator/escalation"
            );
            vec![SecretEntry {
                secret,
                not_after_ms: None,
            }]
        }
    };
    engine.put_subscription(Subscription {
        id: OPERATOR_SUBSCRIPTION.into(),
        tenant: t,
        channel,
        filter: Filter::default(),
        secrets,
        state: patchline_core::notice::SubscriptionState::Active,
        rate_per_s: RATE_PER_S_DEFAULT,
        created_at_ms: engine.clock().now_ms(),
        // The operator reads each escalated notice on its own.
        grouping: patchline_core::notice::Grouping::Artifact,
        digest: None,
    })
}

/// Serves until SIGINT or SIGTERM, then stops accepting, lets requests and
/// in-flight deliveries finish, and returns. Nothing acknowledged is lost:
/// what was not finished is retried at the next start.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(state, listener, shutdown_signal()).await
}

/// [`serve`] until `shutdown` completes (tests stop the server this way).
pub async fn serve_until(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let fd_limit = conn::raise_fd_limit();
    let conns_max = conn::conns_max(&state, fd_limit);
    tracing::info!(conns_max, fd_limit, "accepting connections");
    let stop_rx = state.stopping.subscribe();
    let mut tasks = Vec::new();
    if state.config.workers {
        tasks.push(tokio::spawn(worker::run(state.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(worker::reminders(
            state.clone(),
            stop_rx.clone(),
        )));
    }
    if state.config.bus.is_some() {
        tasks.push(tokio::spawn(follow::run(state.clone(), stop_rx.clone())));
    }
    let acceptor = tokio::spawn(conn::accept_loop(
        state.clone(),
        listener,
        app(state.clone()),
        conns_max,
        stop_rx,
    ));
    shutdown.await;
    tracing::info!("stopping: no new connections; finishing requests and deliveries in flight");
    let _ = state.stopping.send(true);
    let _ = acceptor.await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::json_nul_at;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert_eq!(json_nul_at(br#"{"name":"a\u0000b"}"#), Some(10));
        assert_eq!(json_nul_at(br#"{"name":"a\\u0000b"}"#), None);
        assert_eq!(json_nul_at(br#"{"name":"a\\\u0000b"}"#), Some(12));
        assert_eq!(json_nul_at(br#"{"name":"a\u0001b"}"#), None);
        assert_eq!(json_nul_at(br#"{"a":"\\u0000","b":"\u0000"}"#), Some(20));
        assert_eq!(json_nul_at(b""), None);
    }
}
