//! Subscriptions (webhook, stream, pull) with their filters, secrets and
//! delivery logs, and watches of public artifacts.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::notice::{Channel, DeliveryState, Purpose, SubscriptionState};
use patchline_delivery::routing::{Filter, RATE_PER_S_DEFAULT, SecretEntry, Subscription};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_json, rfc3339, with_engine, with_reader};
use crate::auth::{Principal, new_id};
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::AppState;

pub use patchline_core::notice::Grouping;
use patchline_delivery::digest::{Digest, DigestSchedule};

/// `POST /v1/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    #[serde(deserialize_with = "super::object")]
    channel: Channel,
    #[serde(default, deserialize_with = "super::optional_object")]
    filter: Option<Filter>,
    /// `grouped` (the default): one `data.notices[]` entry per root cause
    /// (record, top-most `introduced_by`, remedy step) listing its
    /// artifacts; `artifact`: one entry per (record, artifact); `digest`:
    /// no message per change, one on the `digest` schedule instead.
    #[serde(default)]
    grouping: Option<Grouping>,
    /// With `"grouping": "digest"` (and only then): when the digest falls
    /// due, at a local time in a time zone.
    #[serde(default, deserialize_with = "super::optional_object")]
    digest: Option<DigestSchedule>,
    /// Requests per second to the endpoint (1 to 100,000; default 1000).
    #[serde(default, deserialize_with = "super::integral")]
    #[schema(minimum = 1, maximum = 100000)]
    rate_per_s: Option<u32>,
    /// Admins create subscriptions for a tenant (and must name it).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: Option<String>,
}

/// A new subscription; webhooks get their signing secret (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionCreated {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SubscriptionState)]
pub enum SubscriptionStateName {
    Active,
    Disabled,
}

/// A subscription as its tenant (or an admin) sees it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    id: String,
    tenant: String,
    channel: Channel,
    filter: Filter,
    grouping: Grouping,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<DigestSchedule>,
    /// When the next digest falls due.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_digest_at: Option<String>,
    state: SubscriptionStateName,
    disabled_reason: Option<String>,
    rate_per_s: u32,
    created_at: String,
}

fn view(s: &Subscription, tenant: &str) -> SubscriptionView {
    SubscriptionView {
        id: s.id.clone(),
        tenant: tenant.to_string(),
        channel: s.channel.clone(),
        filter: s.filter.clone(),
        grouping: s.grouping,
        digest: s.digest.as_ref().map(|d| d.schedule.clone()),
        next_digest_at: s
            .digest
            .as_ref()
            .and_then(|d| d.schedule.next_after(d.last_ms))
            .map(rfc3339),
        state: if s.state.is_active() {
            SubscriptionStateName::Active
        } else {
            SubscriptionStateName::Disabled
        },
        disabled_reason: match s.state {
            SubscriptionState::Disabled(r) => Some(r.as_str().to_string()),
            _ => None,
        },
        rate_per_s: s.rate_per_s,
        created_at: rfc3339(s.created_at_ms),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

/// Subscribes the caller's tenant (an admin names one) to its notices.
/// Webhook URLs in private, loopback or link-local ranges are refused
/// unless the operator allowed them.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions",
    request_body = NewSubscription,
    responses((status = 201, body = SubscriptionCreated), Errors))]
pub async fn create_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewSubscription = parse_json(&body)?;
    if let Channel::Webhook { url } = &req.channel {
        st.config.webhook_policy.check_url(url).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "url_refused",
                e.to_string(),
            )
        })?;
    }
    let filter = req.filter.unwrap_or_default();
    filter.validate().map_err(ApiError::bad_request)?;
    let secret = matches!(req.channel, Channel::Webhook { .. })
        .then(|| patchline_webhook::secret::Secret::generate().to_string());
    let id = new_id("sub");
    let out = SubscriptionCreated {
        id: id.clone(),
        secret: secret.clone(),
    };
    let rate = super::bounded("rate_per_s", req.rate_per_s, 1, 100_000, RATE_PER_S_DEFAULT)?;
    with_engine(&st, move |e| {
        let tenant = match (&p, req.tenant) {
            (Principal::Tenant { idx, .. }, None) => *idx,
            (Principal::Tenant { .. }, Some(_)) => {
                return Err(ApiError::forbidden("a tenant subscribes for itself"));
            }
            (Principal::Admin, Some(t)) => e
                .catalog()
                .tenant_idx(&t)
                .filter(|x| e.service().roles.contains_key(x))
                .ok_or_else(|| ApiError::not_found("tenant", &t))?,
            (Principal::Admin, None) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "an admin names the tenant it subscribes",
                ));
            }
        };
        e.put_subscription(Subscription {
            id,
            tenant,
            channel: req.channel,
            filter,
            secrets: secret
                .into_iter()
                .map(|secret| SecretEntry {
                    secret,
                    not_after_ms: None,
                })
                .collect(),
            state: SubscriptionState::Active,
            rate_per_s: rate,
            created_at_ms: e.clock().now_ms(),
            grouping: req.grouping.unwrap_or_default(),
            digest: req.digest.map(|schedule| Digest {
                schedule: schedule.canonical(),
                last_ms: e.clock().now_ms(),
            }),
        })?;
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The caller's subscriptions (an admin's: all).
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions",
    responses((status = 200, body = SubscriptionList), Errors))]
pub async fn list_subscriptions(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<SubscriptionList>> {
    with_engine(&st, move |e| {
        let subscriptions = e
            .service()
            .subscriptions
            .values()
            .filter(|s| p.tenant().is_none_or(|t| t == s.tenant))
            .filter(|s| !s.state.is_deleted())
            .map(|s| view(s, e.catalog().tenant_id(s.tenant).as_str()))
            .collect();
        Ok(Json(SubscriptionList { subscriptions }))
    })
    .await
}

/// One subscription.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = SubscriptionView), Errors))]
pub async fn get_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<SubscriptionView>> {
    with_engine(&st, move |e| {
        let s = e.subscription(p.tenant(), &id)?;
        Ok(Json(view(s, e.catalog().tenant_id(s.tenant).as_str())))
    })
    .await
}

/// Deletes a subscription: its pending deliveries become dead letters.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted"), Errors))]
pub async fn delete_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let sid = id.clone();
    with_engine(&st, move |e| {
        e.subscription(p.tenant(), &id)?;
        e.delete_subscription(&id)?;
        Ok(())
    })
    .await?;
    bury(&st, sid, "subscription deleted").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pending work of a disabled subscription becomes dead letters.
pub async fn bury(st: &Arc<AppState>, id: String, reason: &'static str) -> ApiResult<()> {
    let open = st.queues.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let mut q = open()?;
        q.bury(&id, reason)?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?
}

/// Enables a disabled subscription (after a 410, say); replay its dead
/// letters to fill the gap.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/enable", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = SubscriptionView), Errors))]
pub async fn enable_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionView>> {
    with_engine(&st, move |e| {
        let mut s = e.subscription(p.tenant(), &id)?.clone();
        s.state = SubscriptionState::Active;
        e.put_subscription(s.clone())?;
        Ok(Json(view(&s, e.catalog().tenant_id(s.tenant).as_str())))
    })
    .await
}

/// A webhook's new secret (shown once); the previous one keeps signing for
/// the overlap.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    id: String,
    secret: String,
    previous_valid_for_s: i64,
}

/// A new signing secret; the old one keeps signing for the overlap
/// (`PATCHLINE_SECRET_OVERLAP_S`), so receivers switch without a gap.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/rotate", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Rotated), Errors))]
pub async fn rotate_secret(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<Json<Rotated>> {
    let overlap = st.config.secret_overlap_ms;
    let secret = patchline_webhook::secret::Secret::generate().to_string();
    let out = Rotated {
        id: id.clone(),
        secret: secret.clone(),
        previous_valid_for_s: overlap / 1000,
    };
    with_engine(&st, move |e| {
        let mut s = e.subscription(p.tenant(), &id)?.clone();
        if !matches!(s.channel, Channel::Webhook { .. }) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "only webhook subscriptions have secrets",
            ));
        }
        let now = e.clock().now_ms();
        for old in &mut s.secrets {
            if old.not_after_ms.is_none_or(|t| t > now + overlap) {
                old.not_after_ms = Some(now + overlap);
            }
        }
        s.secrets.retain(|x| x.not_after_ms.is_none_or(|t| t > now));
        s.secrets.insert(
            0,
            SecretEntry {
                secret,
                not_after_ms: None,
            },
        );
        e.put_subscription(s)?;
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    #[serde(default)]
    state: Option<DeliveryState>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One webhook message and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Its `webhook-id`.
    id: String,
    purpose: Purpose,
    notices: Vec<i64>,
    state: DeliveryState,
    attempts: i64,
    next_attempt_at: String,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

/// A subscription's delivery log (newest first), e.g. its dead letters.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/deliveries", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id"), DeliveriesQuery),
    responses((status = 200, body = DeliveryList), Errors))]
pub async fn list_deliveries(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let sid = id.clone();
    let installation = with_engine(&st, move |e| {
        e.subscription(p.tenant(), &sid)?;
        Ok(e.service().installation.clone())
    })
    .await?;
    let limit = super::bounded("limit", q.limit, 1, 1000, 100)?;
    let rows = with_reader(&st, move |r| Ok(r.deliveries(&id, q.state, limit)?)).await?;
    let deliveries = rows
        .into_iter()
        .map(|d| DeliveryView {
            id: patchline_delivery::message_id(&installation, d.id),
            purpose: d.purpose,
            notices: d.notices,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: rfc3339(d.next_at_ms),
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at_ms),
            delivered_at: d.delivered_at_ms.map(rfc3339),
        })
        .collect();
    Ok(Json(DeliveryList { deliveries }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Dead deliveries queued again.
    replayed: u64,
}

/// Queues a subscription's dead letters again.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/replay", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Replayed), Errors))]
pub async fn replay(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<Json<Replayed>> {
    let sid = id.clone();
    with_engine(&st, move |e| {
        e.subscription(p.tenant(), &sid)
            .map(|_| ())
            .map_err(Into::into)
    })
    .await?;
    let open = st.queues.clone();
    let now = st.now_ms();
    let n = tokio::task::spawn_blocking(move || -> ApiResult<usize> {
        let mut q = open()?;
        Ok(q.replay(&id, now)?)
    })
    .await
    .map_err(ApiError::internal)??;
    st.wake.notify_one();
    Ok(Json(Replayed { replayed: n as u64 }))
}

/// `POST /v1/watches`: follow a public artifact one does not own.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    artifact: String,
}

/// Follows a public artifact: its notices reach the tenant without the
/// owner's name, state or justification, and stop if it is made private.
#[utoipa::path(post, path = "/v1/watches", tag = "subscriptions",
    request_body = Watch,
    responses((status = 201, body = Watch), Errors))]
pub async fn watch(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: Watch = parse_json(&body)?;
    let t = super::caller_tenant(&p, "watches are made")?;
    with_engine(&st, move |e| {
        e.watch(t, &req.artifact)?;
        Ok((StatusCode::CREATED, Json(req)).into_response())
    })
    .await
}
