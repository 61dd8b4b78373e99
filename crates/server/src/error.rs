//! The one place where errors become HTTP status codes and JSON bodies.
//! Internal failures are logged with their detail and answered with a
//! generic message: clients never see SQL, paths or secrets.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::{AdvisoryError, CatalogError};
use patchline_engine::EngineError;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `rate_limited`, `timeout`, `busy`,
    /// `internal`, ...
    pub code: String,
    /// For a person; never holds SQL, paths or secrets.
    pub message: String,
}

/// The error answers any operation may give (the documented shape).
#[derive(Debug, IntoResponses)]
pub enum Errors {
    /// Malformed request: body, query or path parameter.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No valid bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown id, or one the caller may not see.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The method is not one of this path's.
    #[response(status = 405)]
    MethodNotAllowed(ErrorBody),
    /// The request body did not arrive in time.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// The id is taken, or the resource changed.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The request body is too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Well-formed but refused (invalid content, or an answer past its cap).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Slow down (budgets, stream caps).
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// Something failed on the server's side.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The server is at a cap.
    #[response(status = 503)]
    Busy(ErrorBody),
}

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

    pub fn rate_limited(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// An answer that would be larger than the documented cap.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_large", message)
    }

    /// 503: the store cannot be reached now; the detail is logged, the
    /// client is told to try again.
    pub fn unavailable(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "store unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the store is unavailable at the moment; nothing was changed by this request, try again",
        )
    }

    /// 503: the store went away while it was committing this request's
    /// change, which may be saved; the detail is logged, the client is
    /// told to read back before it tries again.
    pub fn commit_unknown(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "store unavailable during a commit");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the store became unavailable while it was saving this request's change, which may or may not have been saved: read it back before you try again",
        )
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
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
            e @ EngineError::Alias { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            EngineError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
            }
            EngineError::Forbidden(m) => ApiError::forbidden(m),
            EngineError::Busy(m) => ApiError::internal(m),
            EngineError::Store(e) => e.into(),
        }
    }
}

/// The error code of a status, for answers the framework made.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "busy",
        500..=599 => "internal",
        _ => "invalid",
    }
}

/// Middleware: every error answer has the documented shape
/// `{"error": {"code", "message"}}`, including the framework's own
/// rejections (bad query or path parameters, 405, 413), which answer
/// plain text or nothing by themselves.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.to_string()
    };
    let fresh = ApiError::new(status, code_of(status), message).into_response();
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let _ = fresh_parts;
    Response::from_parts(parts, fresh_body)
}

/// The answer of an unknown route.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

impl From<patchline_store::StoreError> for ApiError {
    fn from(e: patchline_store::StoreError) -> ApiError {
        match e {
            patchline_store::StoreError::Unavailable(_)
            | patchline_store::StoreError::Conflict(_)
            | patchline_store::StoreError::Lagged { .. } => ApiError::unavailable(e),
            patchline_store::StoreError::CommitUnknown(_) => ApiError::commit_unknown(e),
            e => ApiError::internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
