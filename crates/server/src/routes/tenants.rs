//! Tenants and their tokens, reserved record id prefixes and the operator's
//! escalation channel.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::TenantId;
use patchline_core::notice::Channel;
use patchline_engine::service::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{parse_json, require_admin, rfc3339, with_engine};
use crate::auth::{Principal, hash_token, new_token};
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::AppState;

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 256 bytes of ASCII letters, digits and `. _ - : / @ + ~ = ,`.
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    id: String,
    /// `tenant` (the default) and/or `publisher`.
    #[serde(default)]
    roles: Vec<RoleName>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Tenant,
    Publisher,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Tenant => Role::Tenant,
            RoleName::Publisher => Role::Publisher,
        }
    }
}

/// A new tenant and its first token (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    id: String,
    token: String,
    roles: Vec<RoleName>,
}

/// A new token (shown once) and its id.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    id: String,
    token: String,
}

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    id: String,
    created_at: String,
    /// The token that minted it; null when the admin did.
    minted_by: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenView>,
}

/// Creates a tenant with its roles and first token (admin).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    request_body = NewTenant,
    responses((status = 201, body = TenantCreated), Errors))]
pub async fn create_tenant(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    require_admin(&p)?;
    let req: NewTenant = parse_json(&body)?;
    let id = TenantId::new(req.id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut roles_out = req.roles.clone();
    if roles_out.is_empty() {
        roles_out.push(RoleName::Tenant);
    }
    roles_out.dedup();
    let roles: Vec<Role> = req.roles.into_iter().map(Role::from).collect();
    let (token_id, token) = new_token();
    let hash = hash_token(&token);
    let out_id = id.to_string();
    with_engine(&st, move |e| {
        e.create_tenant(&id, &roles, &token_id, &hash)
            .map_err(|err| match err {
                patchline_engine::EngineError::Invalid(m) => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", m)
                }
                other => other.into(),
            })?;
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            id: out_id,
            token,
            roles: roles_out,
        }),
    )
        .into_response())
}

/// Mints a token for the tenant (the admin, or the tenant itself: then
/// revoking the minting token revokes this one too).
#[utoipa::path(post, path = "/v1/tenants/{id}/tokens", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = TokenCreated), Errors))]
pub async fn create_token(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let (token_id, token) = new_token();
    let hash = hash_token(&token);
    let tid = token_id.clone();
    with_engine(&st, move |e| {
        // The token was checked before the engine's lock was taken; a
        // revocation may have committed in between, and a token minted by
        // a revoked one would escape the cascade (found from outside:
        // minting while being revoked kept tokens alive).
        if let Some(asking) = p.token_id()
            && !e.service().token_active(asking)
        {
            return Err(ApiError::unauthorized());
        }
        let t = e
            .catalog()
            .tenant_idx(&tenant)
            .filter(|t| e.service().roles.contains_key(t))
            .filter(|t| p.tenant().is_none_or(|own| own == *t))
            .ok_or_else(|| ApiError::not_found("tenant", &tenant))?;
        e.add_token(t, &tid, &hash, p.token_id())?;
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id: token_id,
            token,
        }),
    )
        .into_response())
}

/// Revokes a token and every token it minted; streams opened with them
/// close.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), Errors))]
pub async fn revoke_token(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    with_engine(&st, move |e| Ok(e.revoke_token(p.tenant(), &id)?)).await?;
    st.revocations.send_modify(|n| *n += 1);
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's tokens (ids and dates, never the tokens), for the tenant
/// and for admins.
#[utoipa::path(get, path = "/v1/tenants/{id}/tokens", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TokenList), Errors))]
pub async fn list_tokens(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(tenant): Path<String>,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<TokenList>> {
    with_engine(&st, move |e| {
        let t = e
            .catalog()
            .tenant_idx(&tenant)
            .filter(|t| p.tenant().is_none_or(|own| own == *t))
            .filter(|t| e.service().roles.contains_key(t))
            .ok_or_else(|| ApiError::not_found("tenant", &tenant))?;
        let tokens = e
            .tokens_of(t)
            .into_iter()
            .map(|i| TokenView {
                id: i.id.clone(),
                created_at: rfc3339(i.created_at_ms),
                minted_by: i.minted_by.clone(),
                revoked_at: i.revoked_at_ms.map(rfc3339),
            })
            .collect();
        Ok(Json(TokenList { tokens }))
    })
    .await
}

// ----- reserved id prefixes (admin) -----

/// A record id prefix reserved for a publisher.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Prefix {
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    prefix: String,
    /// The publisher it is reserved for.
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrefixList {
    prefixes: Vec<Prefix>,
}

/// Reserves a record id prefix for a publisher (admin): the operator
/// assigns the ids of a shared feed (`USN-` to the publisher that issues
/// them); nobody else may then publish a new id under it.
#[utoipa::path(post, path = "/v1/prefixes", tag = "tenants",
    request_body = Prefix,
    responses((status = 201, body = Prefix), Errors))]
pub async fn reserve_prefix(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    require_admin(&p)?;
    let req: Prefix = parse_json(&body)?;
    with_engine(&st, move |e| {
        let t = e
            .catalog()
            .tenant_idx(&req.tenant)
            .filter(|t| e.service().roles.contains_key(t))
            .ok_or_else(|| ApiError::not_found("tenant", &req.tenant))?;
        if !e.service().has_role(t, Role::Publisher) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("tenant {} is not a publisher", req.tenant),
            ));
        }
        e.reserve_prefix(&req.prefix, t)?;
        Ok((StatusCode::CREATED, Json(req)).into_response())
    })
    .await
}

/// The reserved prefixes (admin).
#[utoipa::path(get, path = "/v1/prefixes", tag = "tenants",
    responses((status = 200, body = PrefixList), Errors))]
pub async fn list_prefixes(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<PrefixList>> {
    require_admin(&p)?;
    with_engine(&st, move |e| {
        let prefixes = e
            .service()
            .prefixes
            .iter()
            .map(|(prefix, t)| Prefix {
                prefix: prefix.clone(),
                tenant: e.catalog().tenant_id(*t).to_string(),
            })
            .collect();
        Ok(Json(PrefixList { prefixes }))
    })
    .await
}

/// Releases a reserved prefix (admin).
#[utoipa::path(delete, path = "/v1/prefixes/{prefix}", tag = "tenants",
    params(("prefix" = String, Path, description = "The reserved prefix",
        pattern = r"^[A-Za-z0-9._:@+~=,-]{1,256}$")),
    responses((status = 204, description = "Released"), Errors))]
pub async fn release_prefix(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(prefix): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&p)?;
    with_engine(&st, move |e| Ok(e.release_prefix(&prefix)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- the operator's escalation channel (admin) -----

/// The escalation webhook and the secrets that sign it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Escalation {
    subscription: String,
    url: String,
    /// The current signing secret.
    secret: String,
    /// Secrets still signing during a rotation's overlap.
    previous_secrets: Vec<String>,
}

/// The escalation webhook and its secret (admin). Never printed nor logged;
/// rotate it with `POST /v1/subscriptions/sub_operator/rotate`.
#[utoipa::path(get, path = "/v1/operator/escalation", tag = "tenants",
    responses((status = 200, body = Escalation), Errors))]
pub async fn operator_escalation(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<Escalation>> {
    require_admin(&p)?;
    with_engine(&st, move |e| {
        let s = e
            .subscription(None, crate::OPERATOR_SUBSCRIPTION)
            .map_err(|_| {
                ApiError::not_found(
                    "escalation webhook",
                    "(PATCHLINE_OPERATOR_WEBHOOK is not set)",
                )
            })?;
        let Channel::Webhook { url } = &s.channel else {
            return Err(ApiError::internal(
                "the operator subscription is not a webhook",
            ));
        };
        let now = e.clock().now_ms();
        let secrets = s.signing_secrets(now);
        Ok(Json(Escalation {
            subscription: s.id.clone(),
            url: url.clone(),
            secret: secrets.first().map(|s| s.to_string()).unwrap_or_default(),
            previous_secrets: secrets.iter().skip(1).map(|s| s.to_string()).collect(),
        }))
    })
    .await
}
