//! Operations: liveness and readiness, Prometheus metrics, the OpenAPI document, and the
//! operator's scans of disk images under the configured roots.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use patchline_core::{Actor, Mode, TenantId};
use patchline_engine::BatchItem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{parse_json, require_admin, with_engine, with_reader};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    status: String,
    artifacts: u64,
    records: u64,
}

/// Liveness, with the catalog's size (no token).
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = Health), Errors))]
pub async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    // From the view (as of the last commit), never the engine: liveness
    // must not wait behind a write that waits on the store.
    let (artifacts, records) = {
        let names = st.view.names();
        (names.artifacts_len() as u64, names.records_len() as u64)
    };
    Ok(Json(Health {
        status: "ok".into(),
        artifacts,
        records,
    }))
}

/// The state of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Ok,
    /// The check failed (the server's log says why).
    Unavailable,
    /// No answer within the readiness budget.
    Timeout,
    /// The server is shutting down.
    Stopping,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// A cheap read on the store answers.
    store: CheckState,
    /// The catalog is loaded and its lock can be taken.
    catalog: CheckState,
    /// The server is not shutting down.
    accepting: CheckState,
    /// A node of a deployment of several (`--bus`): the bus is connected
    /// and the catalog has applied every change committed so far (`ok`
    /// for a node alone on its store).
    deployment: CheckState,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the service can take traffic now.
    ready: bool,
    checks: ReadinessChecks,
    /// The names of the checks that failed (empty when ready).
    not_ready: Vec<String>,
}

/// How long each readiness check may take.
const READY_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `check` on the value behind `lock` once the lock can be taken
/// within the readiness budget (polled, so a stuck holder ties up no
/// thread past the budget).
async fn probe<T: Send + ?Sized + 'static>(
    lock: Arc<std::sync::Mutex<T>>,
    what: &'static str,
    check: impl FnOnce(&mut T) -> Result<(), String> + Send + 'static,
) -> CheckState {
    let task = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + READY_BUDGET;
        loop {
            match lock.try_lock() {
                Ok(mut guard) => {
                    return match check(&mut guard) {
                        Ok(()) => CheckState::Ok,
                        Err(e) => {
                            tracing::warn!(check = what, error = %e, "not ready");
                            CheckState::Unavailable
                        }
                    };
                }
                Err(std::sync::TryLockError::Poisoned(_)) => {
                    tracing::warn!(check = what, "not ready: lock poisoned");
                    return CheckState::Unavailable;
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return CheckState::Timeout;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    });
    task.await.unwrap_or(CheckState::Unavailable)
}

/// Readiness (no token): 200 when the store answers a cheap read, the
/// catalog is loaded and the server is not stopping; 503 naming what is not
/// ready otherwise. Liveness is `/healthz`.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, body = Readiness, description = "Ready"),
        Errors,
        // After `Errors`: replaces its generic 503.
        (status = 503, body = Readiness, description = "Not ready: `not_ready` names the failed checks"),
    ))]
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let store = probe(st.reader.clone(), "store", |r| {
        r.notice(0).map(|_| ()).map_err(|e| e.to_string())
    });
    let catalog = probe(st.engine.clone(), "catalog", |e| {
        // Not ready while a failed commit left the memory ahead of the
        // store and it cannot be reloaded yet.
        e.ensure_fresh().map_err(|e| e.to_string())?;
        // A node alone on its PostgreSQL database whose hold was lost (a
        // connection cut) refuses writes until it takes it again.
        e.check_hold().map_err(|e| e.to_string())?;
        let _ = e.catalog().len();
        Ok(())
    });
    let shared = st.config.bus.is_some();
    let caught_up = async {
        if !shared {
            return CheckState::Ok;
        }
        // Applies what other nodes committed: answered from the newest
        // state, or not ready.
        probe(st.engine.clone(), "deployment", |e| {
            e.catch_up().map(|_| ()).map_err(|e| e.to_string())
        })
        .await
    };
    let (store, catalog, caught_up) = tokio::join!(store, catalog, caught_up);
    let deployment = if caught_up != CheckState::Ok
        || (shared && !st.bus_connected.load(std::sync::atomic::Ordering::Relaxed))
    {
        if caught_up == CheckState::Ok {
            tracing::warn!(check = "deployment", "not ready: the bus is not connected");
            CheckState::Unavailable
        } else {
            caught_up
        }
    } else {
        CheckState::Ok
    };
    let accepting = if *st.stopping.borrow() {
        CheckState::Stopping
    } else {
        CheckState::Ok
    };
    let not_ready: Vec<String> = [
        ("store", store),
        ("catalog", catalog),
        ("accepting", accepting),
        ("deployment", deployment),
    ]
    .into_iter()
    .filter(|(_, s)| *s != CheckState::Ok)
    .map(|(name, _)| name.to_string())
    .collect();
    let ready = not_ready.is_empty();
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            checks: ReadinessChecks {
                store,
                catalog,
                accepting,
                deployment,
            },
            not_ready,
        }),
    )
        .into_response()
}

/// Prometheus metrics (no token).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String,
        description = "Prometheus text exposition"), Errors))]
pub async fn metrics(State(st): State<Arc<AppState>>) -> ApiResult<Response> {
    let (artifacts, records) =
        with_engine(&st, |e| Ok((e.catalog().len() as u64, e.db().len() as u64))).await?;
    let deliveries = with_reader(&st, move |r| Ok(r.delivery_counts()?)).await?;
    let text = st.metrics.render(artifacts, records, &deliveries);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response())
}

/// This document (no token).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, content_type = "application/json", body = Object,
        description = "The OpenAPI 3.1 document"), Errors))]
pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi_json(),
    )
        .into_response()
}

/// `POST /v1/scan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// 1 to 64 files or folders under `PATCHLINE_SCAN_ROOTS`.
    #[schema(min_items = 1, max_items = 64, inline, value_type = Vec<super::schema::FilePath>)]
    paths: Vec<String>,
    /// The owner of the images (default `operator`).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: Option<String>,
    #[serde(default)]
    visibility: Option<patchline_core::Visibility>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanOutcome {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScannedImage {
    artifact: String,
    outcome: ScanOutcome,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanError {
    path: String,
    error: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanReport {
    images: Vec<ScannedImage>,
    errors: Vec<ScanError>,
    bytes_read: u64,
    bytes_on_disk: u64,
}

/// The named paths, each resolved (symbolic links followed) and required
/// to lie under one of the configured image roots: the API never reads
/// anything else of the server's filesystem.
fn confined_paths(
    roots: &[std::path::PathBuf],
    paths: &[String],
) -> ApiResult<Vec<std::path::PathBuf>> {
    if roots.is_empty() {
        return Err(ApiError::forbidden(
            "scanning through the API is off: the operator sets PATCHLINE_SCAN_ROOTS to the folders it may read",
        ));
    }
    let roots: Vec<std::path::PathBuf> = roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    paths
        .iter()
        .map(|p| {
            let path = std::path::PathBuf::from(p);
            // `within` resolves links; an empty root list bounds nothing,
            // so none readable means nothing is.
            if roots.is_empty() || !patchline_scan::chain::within(&path, &roots) {
                return Err(ApiError::forbidden(format!(
                    "{p}: not under an image root (PATCHLINE_SCAN_ROOTS) or not found"
                )));
            }
            Ok(path)
        })
        .collect()
}

/// Most paths one scan request names.
const SCAN_PATHS_MAX: usize = 64;

/// Scans disk images on the server, under the configured roots only
/// (admin); each image is registered on its own, failures are listed.
#[utoipa::path(post, path = "/v1/scan", tag = "operations",
    request_body = ScanRequest,
    responses((status = 200, body = ScanReport), Errors))]
pub async fn scan(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: axum::extract::Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Json<ScanReport>> {
    require_admin(&p)?;
    let req: ScanRequest = parse_json(&body)?;
    if req.paths.is_empty() || req.paths.len() > SCAN_PATHS_MAX {
        return Err(ApiError::bad_request(format!(
            "name 1 to {SCAN_PATHS_MAX} paths"
        )));
    }
    let tenant = TenantId::new(req.tenant.unwrap_or_else(|| "operator".into()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let options = patchline_scan::scanner::ScanOptions {
        tenant,
        visibility: req.visibility.unwrap_or_default(),
        roots: st.config.scan_roots.clone(),
    };
    let paths = confined_paths(&st.config.scan_roots, &req.paths)?;
    let outcome =
        tokio::task::spawn_blocking(move || patchline_scan::scanner::scan(&paths, &options))
            .await
            .map_err(ApiError::internal)?;
    let (bytes_read, bytes_on_disk) = (outcome.bytes_read(), outcome.bytes_on_disk());
    with_engine(&st, move |e| {
        let mut images = Vec::new();
        let mut errors: Vec<ScanError> = outcome
            .errors
            .iter()
            .map(|(path, error)| ScanError {
                path: path.display().to_string(),
                error: error.clone(),
            })
            .collect();
        for image in outcome.images {
            let artifact = image.spec.id.to_string();
            let item = BatchItem {
                location: image.path.display().to_string(),
                spec: image.spec,
            };
            match e.apply_batch([Ok(item)], Mode::Upsert, &Actor::Admin, &mut |_| {}) {
                Ok(r) => images.push(ScannedImage {
                    artifact,
                    outcome: if r.created > 0 {
                        ScanOutcome::Created
                    } else if r.updated > 0 {
                        ScanOutcome::Updated
                    } else {
                        ScanOutcome::Unchanged
                    },
                    warnings: image.warnings,
                }),
                Err(err) => errors.push(ScanError {
                    path: image.path.display().to_string(),
                    error: err.to_string(),
                }),
            }
        }
        Ok(Json(ScanReport {
            images,
            errors,
            bytes_read,
            bytes_on_disk,
        }))
    })
    .await
}
