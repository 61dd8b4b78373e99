//! The HTTP API, split by resource. Request and answer types live next to
//! their handlers, at the edge, and generate the OpenAPI document served at
//! `/openapi.json` (utoipa): the router and the document come from the same
//! list, so they cannot drift. The work is the engine's, on a blocking
//! thread, under the engine lock.

// utoipa's path macro spells the query parameter types with their module
// path, which the workspace's `unused_qualifications` lint flags.
#[allow(unused_qualifications)]
pub mod advisories;
#[allow(unused_qualifications)]
pub mod artifacts;
#[allow(unused_qualifications)]
pub mod notices;
pub mod ops;
pub mod schema;
#[allow(unused_qualifications)]
pub mod subscriptions;
pub mod tenants;
#[allow(unused_qualifications)]
pub mod vex;

use std::sync::Arc;

use crate::state::Engine;
use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::TenantIdx;
use patchline_core::timestamp::format_unix;
use patchline_delivery::{NoticeDoc, Reader};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::sse::LiveNotice;
use crate::state::AppState;

/// The document's frame: title, the bearer scheme, tags. Operations come
/// from the router below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "patchline",
        description = "Lineage-aware failure and patch notices for cloud images. Every call but /healthz, /readyz, /metrics and /openapi.json takes `Authorization: Bearer TOKEN`; every error answers `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants, tokens, reserved id prefixes (admin)"),
        (name = "artifacts", description = "The lineage catalog"),
        (name = "advisories", description = "Advisories and failures, their impact and progress"),
        (name = "subscriptions", description = "Webhook, stream and pull channels; watches"),
        (name = "notices", description = "A tenant's notices: pages, stream, acknowledgements"),
        (name = "operations", description = "Liveness, readiness, metrics, the document, scans")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route, with the document that describes them.
pub fn router() -> (axum::Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::scan))
        .routes(routes!(tenants::create_tenant))
        .routes(routes!(tenants::create_token, tenants::list_tokens))
        .routes(routes!(tenants::revoke_token))
        .routes(routes!(tenants::reserve_prefix, tenants::list_prefixes))
        .routes(routes!(tenants::release_prefix))
        .routes(routes!(tenants::operator_escalation))
        .routes(routes!(
            artifacts::create_artifact,
            artifacts::list_artifacts
        ))
        .routes(routes!(
            artifacts::get_artifact,
            artifacts::upsert_artifact,
            artifacts::delete_artifact
        ))
        .routes(routes!(artifacts::lineage))
        .routes(routes!(artifacts::exposure))
        .routes(routes!(artifacts::publish_failure))
        .routes(routes!(
            advisories::publish_advisory,
            advisories::list_records
        ))
        .routes(routes!(advisories::affected))
        .routes(routes!(advisories::progress))
        .routes(routes!(advisories::remedy))
        .routes(routes!(advisories::report))
        .routes(routes!(
            subscriptions::create_subscription,
            subscriptions::list_subscriptions
        ))
        .routes(routes!(
            subscriptions::get_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::enable_subscription))
        .routes(routes!(subscriptions::list_deliveries))
        .routes(routes!(subscriptions::replay))
        .routes(routes!(subscriptions::watch))
        .routes(routes!(notices::list_notices))
        .routes(routes!(notices::list_patches))
        .routes(routes!(notices::stream))
        .routes(routes!(notices::ack))
        .routes(routes!(vex::import_vex, vex::export_vex))
        .routes(routes!(vex::list_statements))
        .routes(routes!(vex::withdraw))
        .routes(routes!(notices::group_notices))
        .split_for_parts()
}

/// Runs `f` with the engine on a blocking thread, then hands the notices it
/// created to the workers and the streams.
pub async fn with_engine<T, F>(state: &Arc<AppState>, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Engine) -> ApiResult<T> + Send + 'static,
{
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut engine = st
            .engine
            .lock()
            .map_err(|_| ApiError::internal("engine lock poisoned"))?;
        // Never answer from a memory a failed commit left ahead of the
        // store.
        engine.ensure_fresh()?;
        let out = f(&mut engine);
        // A write refused before its commit leaves the deployment's write
        // lock held: released here whatever happened.
        engine.end_write();
        st.applied.send_if_modified(|seq| {
            let now = engine.applied_seq();
            std::mem::replace(seq, now) != now
        });
        let created = engine.take_created();
        let remote = engine.take_remote_deliveries();
        let service = engine.take_remote_service();
        // Under the engine's lock: live notices go out in id order.
        crate::follow::hand_over(&st, &created, remote, service);
        out
    })
    .await
    .map_err(ApiError::internal)?
}

/// Runs `f` with the notice reader on a blocking thread.
pub async fn with_reader<T, F>(state: &Arc<AppState>, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn patchline_store::NoticeReader) -> ApiResult<T> + Send + 'static,
{
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut r = reader
            .lock()
            .map_err(|_| ApiError::internal("reader lock poisoned"))?;
        f(r.as_mut())
    })
    .await
    .map_err(ApiError::internal)?
}

/// Renders new notices for the tenants that have a stream open.
pub fn push_live(st: &AppState, created: &[(TenantIdx, i64)]) {
    let listening: Vec<&(TenantIdx, i64)> = created
        .iter()
        .filter(|(t, _)| st.hub.listening(*t))
        .collect();
    if listening.is_empty() {
        return;
    }
    // Read in chunks, the readers' connection released between them: a
    // fan-out of many thousands of live notices does not hold up pages of
    // notices meanwhile (a 64k fan-out with a stream open held them 1.4 s,
    // found from outside).
    for chunk in listening.chunks(LIVE_READ_CHUNK) {
        let mut ids: Vec<i64> = chunk.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = {
            let Ok(mut reader) = st.reader.lock() else {
                return;
            };
            match reader.notices(&ids) {
                Ok(rows) => rows,
                Err(_) => continue,
            }
        };
        let by_id: std::collections::HashMap<i64, &patchline_store::service::StoredNotice> =
            rows.iter().map(|n| (n.id, n)).collect();
        let names = st.view.names();
        for &&(t, id) in chunk {
            let Some(n) = by_id.get(&id) else {
                // Not a notice: a patch notice (one id sequence), which
                // the tenant's streams read from the store.
                st.hub.publish(
                    t,
                    LiveNotice {
                        id,
                        json: "".into(),
                        own: false,
                        from_store: true,
                    },
                );
                continue;
            };
            if let Some(doc) = NoticeDoc::render(n, &names, Reader::Tenant(t))
                && let Ok(json) = serde_json::to_string(&doc)
            {
                st.hub.publish(
                    t,
                    LiveNotice {
                        id,
                        json: json.into(),
                        own: n.tenant == t,
                        from_store: false,
                    },
                );
            }
        }
    }
}

/// Live notices read from the store at a time.
const LIVE_READ_CHUNK: usize = 500;

/// 201 when something was created, else 200, with a JSON body.
pub fn created_or_ok<T: Serialize>(created: bool, body: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    // Every JSON body of the API is an object; serde would also read a
    // struct from an array of its fields in order (`[]` acknowledged a
    // notice, `["x", []]` made a tenant).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub fn require_admin(p: &Principal) -> ApiResult<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the admin token"))
    }
}

pub fn require_publisher(p: &Principal) -> ApiResult<()> {
    if p.is_publisher() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the publisher role"))
    }
}

/// A query parameter within its documented bounds (else 400: out-of-range
/// input is refused, never silently clamped).
pub fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    min: T,
    max: T,
    default: T,
) -> ApiResult<T> {
    match value {
        None => Ok(default),
        Some(v) if v >= min && v <= max => Ok(v),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name} is {v}; it must be {min} to {max}"
        ))),
    }
}

/// A page cursor that names an id (`after`): empty or an id, else 400.
pub fn id_cursor(after: &Option<String>) -> ApiResult<Option<&str>> {
    match after.as_deref() {
        None | Some("") => Ok(None),
        Some(a)
            if a.len() <= patchline_core::model::ID_LEN_MAX
                && a.chars().all(patchline_core::model::is_id_char) =>
        {
            Ok(Some(a))
        }
        Some(_) => Err(ApiError::bad_request("after is not an id")),
    }
}

/// A nested object of a request body: serde would also read a struct from
/// an array of its fields in order (`"filter": [null]` was a filter), and
/// an internally tagged enum from an array led by its tag.
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    if !v.is_object() {
        return Err(serde::de::Error::custom(format!(
            "expected a JSON object, found {}",
            json_kind(&v)
        )));
    }
    T::deserialize(v).map_err(serde::de::Error::custom)
}

/// [`object`] for an optional field: `null` is absent.
pub fn optional_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    object(v).map(Some).map_err(serde::de::Error::custom)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Deserializes an integer that JSON may spell `5` or `5.0` (JSON Schema's
/// `integer` admits both).
pub fn integral<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let v: Option<f64> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(x) if x.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&x) => {
            T::try_from(x as u64)
                .map(Some)
                .map_err(|_| serde::de::Error::custom("integer out of range"))
        }
        Some(x) => Err(serde::de::Error::custom(format!(
            "{x} is not a whole number"
        ))),
    }
}

/// The tenant of a caller that must be one (notices, watches): admins get
/// 403.
/// The query of a route that takes no parameters: any is refused with
/// 400, so that a mistyped or unsupported parameter (`?tenant=`) never
/// passes for an answer that looks true.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

pub fn caller_tenant(p: &Principal, what: &str) -> ApiResult<TenantIdx> {
    p.tenant()
        .ok_or_else(|| ApiError::forbidden(format!("{what} with a tenant's token")))
}

/// RFC 3339 of a time in milliseconds (to the second).
pub fn rfc3339(ms: i64) -> String {
    format_unix(ms.div_euclid(1000))
}

/// Artifacts per kind, keyed by kind name.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct KindCounts {
    pub image: u64,
    pub template: u64,
    pub replica: u64,
    pub instance: u64,
}

impl From<[u64; 4]> for KindCounts {
    /// In `Kind::ALL` order.
    fn from(c: [u64; 4]) -> KindCounts {
        KindCounts {
            image: c[0],
            template: c[1],
            replica: c[2],
            instance: c[3],
        }
    }
}
