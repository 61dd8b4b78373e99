//! The one place where errors become HTTP status codes and JSON bodies.
//! Internal failures are logged with their detail and answered with a
//! generic message: clients never see SQL, paths or secrets.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::{AdvisoryError, CatalogError};
use patchline_engine::EngineError;
use serde_json::json;

/// An API error: a status, a stable code and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown {what} {id}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Rejected { location, error } => {
                let status = match &error {
                    CatalogError::UnknownArtifact(_) => StatusCode::NOT_FOUND,
                    CatalogError::Conflict { .. } | CatalogError::HasChildren { .. } => {
                        StatusCode::CONFLICT
                    }
                    // An unknown (or invisible) parent is the caller's input
                    // error, not a missing resource of the request path.
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let code = match &error {
                    CatalogError::Conflict { .. } => "conflict",
                    CatalogError::Cycle { .. } => "cycle",
                    CatalogError::UnknownParent { .. } => "unknown_parent",
                    CatalogError::RelationMismatch { .. } => "relation",
                    CatalogError::UnknownArtifact(_) => "not_found",
                    CatalogError::HasChildren { .. } => "has_children",
                    _ => "invalid",
                };
                let message = match location {
                    Some(l) if !l.is_empty() => format!("{l}: {error}"),
                    _ => error.to_string(),
                };
                ApiError::new(status, code, message)
            }
            EngineError::Advisory { error, .. } => match error {
                AdvisoryError::IdTaken { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
                }
                _ => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    error.to_string(),
                ),
            },
            EngineError::NotFound { what, id } => ApiError::not_found(what, &id),
            EngineError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
            }
            EngineError::Forbidden(m) => ApiError::forbidden(m),
            EngineError::Busy(m) => ApiError::internal(m),
            EngineError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<patchline_store::StoreError> for ApiError {
    fn from(e: patchline_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
