//! Operations: health, Prometheus metrics, the OpenAPI document, and the
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
    let (artifacts, records) =
        with_engine(&st, |e| Ok((e.catalog().len() as u64, e.db().len() as u64))).await?;
    Ok(Json(Health {
        status: "ok".into(),
        artifacts,
        records,
    }))
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
