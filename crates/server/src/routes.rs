//! The HTTP API of PRODUCT.md §5. Request and answer types live here, at
//! the edge; the work is the engine's, on a blocking thread, under the
//! engine lock.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use patchline_core::advisory::Failure;
use patchline_core::doc::ArtifactDoc;
use patchline_core::notice::{Channel, Filter, NoticeState};
use patchline_core::timestamp::{format_unix, parse_rfc3339};
use patchline_core::{
    Actor, Advisory, AdvisoryId, Kind, Mode, Published, Record, TenantId, TenantIdx,
};
use patchline_engine::report::counts_by_kind;
use patchline_engine::service::{NoticeDoc, RATE_PER_S_DEFAULT, Role, SecretEntry, Subscription};
use patchline_engine::{BatchItem, Engine};
use patchline_formats::osv;
use patchline_store::StoredNotice;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, hash_token, new_id, new_token};
use crate::error::{ApiError, ApiResult};
use crate::sse::LiveNotice;
use crate::state::{AppState, Bucket};

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
        let out = f(&mut engine);
        let created = engine.take_created();
        if !created.is_empty() {
            st.metrics
                .notices_created_total
                .fetch_add(created.len() as u64, std::sync::atomic::Ordering::Relaxed);
            st.wake.notify_one();
            push_live(&st, &engine, &created);
        }
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
pub fn push_live(st: &AppState, engine: &Engine, created: &[(TenantIdx, i64)]) {
    let listening: Vec<&(TenantIdx, i64)> = created
        .iter()
        .filter(|(t, _)| st.hub.listening(*t))
        .collect();
    if listening.is_empty() {
        return;
    }
    let Ok(mut reader) = st.reader.lock() else {
        return;
    };
    for &&(t, id) in &listening {
        let Ok(Some(n)) = reader.notice(id) else {
            continue;
        };
        let actor = Actor::Tenant(engine.catalog().tenant_id(t).clone());
        if let Some(doc) = NoticeDoc::render(&n, engine.catalog(), engine.db(), &actor)
            && let Ok(json) = serde_json::to_string(&doc)
        {
            st.hub.publish(
                t,
                LiveNotice {
                    id,
                    json: json.into(),
                    own: n.tenant == t,
                },
            );
        }
    }
}

/// 201 when something was created, else 200, with a JSON body.
fn created_or_ok(created: bool, body: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn require_admin(p: &Principal) -> ApiResult<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the admin token"))
    }
}

fn require_publisher(p: &Principal) -> ApiResult<()> {
    if p.is_publisher() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the publisher role"))
    }
}

// ----- tenants and tokens -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
    #[serde(default)]
    roles: Vec<String>,
}

pub async fn create_tenant(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    require_admin(&p)?;
    let req: NewTenant = parse_json(&body)?;
    let id = TenantId::new(req.id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let roles = req
        .roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                ApiError::bad_request(format!("unknown role {r:?} (tenant or publisher)"))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let (token_id, token) = new_token();
    let hash = hash_token(&token);
    let out_id = id.to_string();
    let roles_out: Vec<&str> = if roles.is_empty() {
        vec!["tenant"]
    } else {
        roles.iter().map(|r| r.as_str()).collect()
    };
    let roles_out: Vec<String> = roles_out.into_iter().map(str::to_string).collect();
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
        Json(json!({"id": out_id, "token": token, "roles": roles_out})),
    )
        .into_response())
}

/// `POST /v1/tenants/{id}/tokens`: a new token (admin, or the tenant itself).
pub async fn create_token(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let (token_id, token) = new_token();
    let hash = hash_token(&token);
    let tid = token_id.clone();
    with_engine(&st, move |e| {
        let t = e
            .catalog()
            .tenant_idx(&tenant)
            .ok_or_else(|| ApiError::not_found("tenant", &tenant))?;
        if p.tenant().is_some_and(|own| own != t) {
            return Err(ApiError::not_found("tenant", &tenant));
        }
        e.add_token(t, &tid, &hash, p.token_id())?;
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": token_id, "token": token})),
    )
        .into_response())
}

/// `DELETE /v1/tokens/{id}`: revokes the token and every token it minted;
/// streams opened with them close.
pub async fn revoke_token(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    with_engine(&st, move |e| Ok(e.revoke_token(p.tenant(), &id)?)).await?;
    st.revocations.send_modify(|n| *n += 1);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/tenants/{id}/tokens`: the tenant's tokens (never the tokens
/// themselves), for the tenant and for admins.
pub async fn list_tokens(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let t = e
            .catalog()
            .tenant_idx(&tenant)
            .filter(|t| p.tenant().is_none_or(|own| own == *t))
            .filter(|t| e.service().roles.contains_key(t))
            .ok_or_else(|| ApiError::not_found("tenant", &tenant))?;
        let tokens: Vec<Value> = e
            .tokens_of(t)
            .into_iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "created_at": format_unix(i.created_at_ms / 1000),
                    "minted_by": i.minted_by,
                    "revoked_at": i.revoked_at_ms.map(|t| format_unix(t / 1000)),
                })
            })
            .collect();
        Ok(Json(json!({"tokens": tokens})))
    })
    .await
}

// ----- artifacts -----

fn artifact_json(e: &Engine, a: patchline_core::ArtIdx, p: &Principal) -> Value {
    let c = e.catalog();
    let n = c.node(a);
    let mut doc = json!({
        "id": n.id.as_str(),
        "kind": n.kind,
        "tenant": c.tenant_id(n.tenant).as_str(),
        "name": n.name.as_deref(),
        "parent": n.parent.map(|x| {
            let id = c.node(x).id.to_string();
            if c.visible(&id, &p.actor()).is_some() { id } else { patchline_engine::report::HIDDEN.to_string() }
        }),
        "relation": n.relation,
        "visibility": n.visibility,
        "labels": n.labels,
        "fixes": n.fixes,
        "components": c.effective_components(a).len(),
        "own_inventory": n.inventory.is_some(),
    });
    if c.owns(&p.actor(), a) {
        let matches = patchline_core::propagate::check_artifact(c, e.db(), a);
        doc["affected_by"] = matches
            .iter()
            .map(|m| Value::from(e.db().get(m.advisory).id().as_str()))
            .collect();
    }
    doc
}

async fn put_artifact(
    st: Arc<AppState>,
    p: Principal,
    body: Bytes,
    mode: Mode,
    path_id: Option<String>,
) -> ApiResult<Response> {
    let doc = ArtifactDoc::parse(
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(id) = &path_id
        && &doc.id != id
    {
        return Err(ApiError::bad_request(format!(
            "the body's id {} is not the path's {id}",
            doc.id
        )));
    }
    let owner = match &p {
        Principal::Tenant { id, .. } => {
            if doc.tenant.as_ref().is_some_and(|t| t != id.as_str()) {
                return Err(ApiError::forbidden(
                    "a tenant creates artifacts under itself",
                ));
            }
            Some(id.clone())
        }
        Principal::Admin => None,
    };
    let translated = doc
        .into_spec(owner.as_ref())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let warnings = translated.warnings;
    let item = BatchItem {
        location: String::new(),
        spec: translated.spec,
    };
    let per_min = st.config.conflicts_per_min;
    if let Some(t) = p.tenant() {
        // A tenant that keeps hitting taken ids is probing: all its
        // creations wait until its budget refills, so that "taken" and
        // "free" answer alike while it is spent.
        let mut buckets = st.conflicts.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(t).or_insert_with(|| Bucket::full(per_min));
        if !bucket.has_token(per_min) {
            return Err(ApiError::rate_limited(format!(
                "too many creations of taken ids; retry in {} s",
                bucket.wait_s(per_min)
            )));
        }
    }
    let st2 = st.clone();
    with_engine(&st, move |e| {
        let actor = p.actor();
        let applied = e.apply_batch([Ok(item.clone())], mode, &actor, &mut |_| {});
        if let (
            Err(patchline_engine::EngineError::Rejected {
                error: patchline_core::CatalogError::Conflict { .. },
                ..
            }),
            Some(t),
        ) = (&applied, p.tenant())
        {
            let mut buckets = st2.conflicts.lock().unwrap_or_else(|e| e.into_inner());
            let bucket = buckets.entry(t).or_insert_with(|| Bucket::full(per_min));
            bucket.tokens -= 1.0;
        }
        let report = applied?;
        let a = e
            .catalog()
            .lookup(item.spec.id.as_str())
            .ok_or_else(|| ApiError::internal("artifact vanished"))?;
        let mut doc = artifact_json(e, a, &p);
        if !warnings.is_empty() {
            doc["warnings"] = json!(warnings);
        }
        Ok(created_or_ok(report.created > 0, doc))
    })
    .await
}

pub async fn create_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    put_artifact(st, p, body, Mode::Create, None).await
}

pub async fn upsert_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    put_artifact(st, p, body, Mode::Upsert, Some(id)).await
}

pub async fn get_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let a = e
            .catalog()
            .visible(&id, &p.actor())
            .ok_or_else(|| ApiError::not_found("artifact", &id))?;
        Ok(Json(artifact_json(e, a, &p)))
    })
    .await
}

pub async fn delete_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    with_engine(&st, move |e| {
        e.remove(&[id.as_str()], &p.actor())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFailure {
    #[serde(default)]
    id: Option<String>,
    summary: String,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: bool,
}

pub async fn publish_failure(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(artifact): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    require_publisher(&p)?;
    let req: NewFailure = parse_json(&body)?;
    if req.summary.trim().is_empty() {
        return Err(ApiError::bad_request(
            "a failure needs a summary (longer ones are truncated)",
        ));
    }
    let id = AdvisoryId::new(req.id.unwrap_or_else(|| new_id("FAIL")))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let modified_text = req
        .modified
        .unwrap_or_else(|| format_unix(patchline_engine::now_ms() / 1000));
    let modified = parse_rfc3339(&modified_text)
        .ok_or_else(|| ApiError::bad_request("modified must be an RFC 3339 timestamp"))?;
    with_engine(&st, move |e| {
        let actor = p.actor();
        let a = e
            .catalog()
            .visible(&artifact, &actor)
            .filter(|&a| e.catalog().owns(&actor, a))
            .ok_or_else(|| ApiError::not_found("artifact", &artifact))?;
        let outcome = e.publish_failure(
            Failure {
                id: id.clone(),
                artifact: a,
                summary: req.summary,
                details: req.details,
                severity: req.severity,
                modified,
                modified_text,
                withdrawn: req.withdrawn,
            },
            &actor,
        )?;
        e.prepare();
        let impact = e.impact(outcome.idx());
        let body = json!({
            "id": id.as_str(),
            "outcome": outcome_name(outcome),
            "affected": impact.artifact_count(),
        });
        Ok(created_or_ok(matches!(outcome, Published::New(_)), body))
    })
    .await
}

fn outcome_name(o: Published) -> &'static str {
    match o {
        Published::New(_) => "new",
        Published::Updated(_) => "updated",
        Published::Unchanged(_) => "unchanged",
        Published::Stale(_) => "stale",
    }
}

// ----- advisories -----

pub async fn publish_advisory(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    require_publisher(&p)?;
    let record = osv::parse_json(&body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let adv = Advisory::compile(record)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    with_engine(&st, move |e| {
        let report = e.publish_advisories_as(vec![(String::new(), adv)], &p.actor())?;
        let outcome = report.outcomes[0];
        e.prepare();
        let impact = e.impact(outcome.idx());
        let Record::Advisory(a) = e.db().get(outcome.idx()) else {
            return Err(ApiError::internal("not an advisory"));
        };
        let body = json!({
            "id": a.id.as_str(),
            "outcome": outcome_name(outcome),
            "affected": impact.artifact_count(),
            "withdrawn": a.withdrawn,
            "unsupported": a.unsupported,
        });
        Ok(created_or_ok(matches!(outcome, Published::New(_)), body))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffectedQuery {
    /// Rows per page; without it the whole document is answered (up to
    /// `affected_bytes_max`).
    #[serde(default)]
    limit: Option<usize>,
    /// The last artifact id of the previous page.
    #[serde(default)]
    after: Option<String>,
}

/// Most rows of one page of `affected`.
pub const AFFECTED_PAGE_MAX: usize = 10_000;

/// `GET /v1/advisories/{id}/affected`: the document of PRODUCT.md §5,
/// whole by default, paged with `?limit=&after=` (the answer then has
/// `next`, the `after` of the following page, or null at the end).
pub async fn affected(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<AffectedQuery>,
) -> ApiResult<Response> {
    let cap = st.config.affected_bytes_max;
    let body = with_engine(&st, move |e| {
        let actor = p.actor();
        let adv = e.lookup_record_for(&id, &actor)?;
        e.prepare();
        let impact = e.impact(adv);
        let catalog = e.catalog();
        let rows = patchline_engine::report::affected_rows(catalog, &impact, &actor);
        let mut out = patchline_engine::report::Capped {
            buf: Vec::new(),
            max: cap,
        };
        let written = match q.limit {
            None => {
                patchline_engine::report::write_affected(&mut out, catalog, e.db().get(adv), &rows, &actor, None)
            }
            Some(limit) => {
                let limit = limit.clamp(1, AFFECTED_PAGE_MAX);
                let start = match &q.after {
                    Some(after) if !after.is_empty() => {
                        rows.partition_point(|(a, _)| catalog.node(*a).id.as_str() <= after.as_str())
                    }
                    _ => 0,
                };
                let page = &rows[start..(start + limit).min(rows.len())];
                let next = (start + page.len() < rows.len())
                    .then(|| page.last().map(|(a, _)| catalog.node(*a).id.as_str()))
                    .flatten();
                patchline_engine::report::write_affected(&mut out, catalog, e.db().get(adv), page, &actor, Some(next))
            }
        };
        match written {
            Ok(()) => Ok(out.buf),
            Err(err) if err.kind() == std::io::ErrorKind::FileTooLarge => Err(ApiError::too_large(format!(
                "the answer is larger than {} MiB; read it in pages with ?limit=1000&after= (then &after=<next> until next is null)",
                cap >> 20
            ))),
            Err(err) => Err(ApiError::internal(err)),
        }
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ProgressQuery {
    /// Width of a history bucket, in seconds.
    #[serde(default)]
    bucket_s: Option<i64>,
}

/// `GET /v1/advisories/{id}/progress`: counts for the record's publisher
/// and admins; anyone else gets the answer of a missing id.
pub async fn progress(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ProgressQuery>,
) -> ApiResult<Json<Value>> {
    let (adv, affected_now, kinds) = with_engine(&st, move |e| {
        let actor = p.actor();
        let adv = e.lookup_record_for(&id, &actor)?;
        if !e.owns_record(&actor, adv) {
            return Err(ApiError::not_found("advisory", &id));
        }
        e.prepare();
        let impact = e.impact(adv);
        Ok((
            adv,
            impact.artifact_count(),
            counts_by_kind(e.catalog(), &impact),
        ))
    })
    .await?;
    let bucket_ms = q.bucket_s.unwrap_or(3600).clamp(1, 30 * 86_400) * 1000;
    let (counts, history) = with_reader(&st, move |r| {
        Ok((r.progress_counts(adv)?, r.progress_history(adv, bucket_ms)?))
    })
    .await?;
    let mut by_kind: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    for (kind, state, n) in counts {
        let k = Kind::from_code(kind).map(Kind::as_str).unwrap_or("unknown");
        *by_kind
            .entry(k)
            .or_default()
            .entry(state.clone())
            .or_default() += n;
        *by_state.entry(state).or_default() += n;
        total += n;
    }
    let history: Vec<Value> = history
        .into_iter()
        .map(|(at, state, n)| json!({"at": format_unix(at / 1000), "state": state, "count": n}))
        .collect();
    Ok(Json(json!({
        "advisory": st_id(&st, adv).await,
        "affected_now": affected_now,
        "affected_now_by_kind": Kind::ALL.iter().zip(kinds).map(|(k, n)| (k.as_str(), n)).collect::<BTreeMap<_, _>>(),
        "notices": total,
        "by_state": by_state,
        "by_kind": by_kind,
        "history": history,
    })))
}

async fn st_id(st: &Arc<AppState>, adv: patchline_core::AdvIdx) -> String {
    with_engine(st, move |e| Ok(e.db().get(adv).id().to_string()))
        .await
        .unwrap_or_default()
}

// ----- subscriptions and watches -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    channel: Channel,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    rate_per_s: Option<u32>,
    /// Admins create subscriptions for a tenant.
    #[serde(default)]
    tenant: Option<String>,
}

fn subscription_json(s: &Subscription, tenant: &str) -> Value {
    json!({
        "id": s.id,
        "tenant": tenant,
        "channel": s.channel,
        "filter": s.filter,
        "state": if s.active { "active" } else { "disabled" },
        "disabled_reason": s.disabled_reason,
        "rate_per_s": s.rate_per_s,
        "created_at": format_unix(s.created_at_ms / 1000),
    })
}

pub async fn create_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
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
    let out_secret = secret.clone();
    let out_id = id.clone();
    let rate = req
        .rate_per_s
        .unwrap_or(RATE_PER_S_DEFAULT)
        .clamp(1, 100_000);
    with_engine(&st, move |e| {
        let tenant = match (&p, req.tenant) {
            (Principal::Tenant { idx, .. }, None) => *idx,
            (Principal::Tenant { .. }, Some(_)) => {
                return Err(ApiError::forbidden("a tenant subscribes for itself"));
            }
            (Principal::Admin, Some(t)) => e
                .catalog()
                .tenant_idx(&t)
                .ok_or_else(|| ApiError::not_found("tenant", &t))?,
            (Principal::Admin, None) => {
                return Err(ApiError::bad_request("an admin names the tenant"));
            }
        };
        let sub = Subscription {
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
            active: true,
            disabled_reason: None,
            rate_per_s: rate,
            created_at_ms: patchline_engine::now_ms(),
        };
        e.put_subscription(sub)?;
        Ok(())
    })
    .await?;
    let mut body = json!({"id": out_id});
    if let Some(s) = out_secret {
        body["secret"] = s.into();
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list_subscriptions(
    State(st): State<Arc<AppState>>,
    p: Principal,
) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let subs: Vec<Value> = e
            .service()
            .subscriptions
            .values()
            .filter(|s| p.tenant().is_none_or(|t| t == s.tenant))
            .filter(|s| s.disabled_reason.as_deref() != Some(patchline_engine::service::DELETED))
            .map(|s| subscription_json(s, e.catalog().tenant_id(s.tenant).as_str()))
            .collect();
        Ok(Json(json!({"subscriptions": subs})))
    })
    .await
}

pub async fn get_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let s = e.subscription(p.tenant(), &id)?;
        Ok(Json(subscription_json(
            s,
            e.catalog().tenant_id(s.tenant).as_str(),
        )))
    })
    .await
}

pub async fn delete_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let sid = id.clone();
    with_engine(&st, move |e| {
        e.subscription(p.tenant(), &id)?;
        e.disable_subscription(&id, patchline_engine::service::DELETED)?;
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

pub async fn enable_subscription(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let mut s = e.subscription(p.tenant(), &id)?.clone();
        if s.disabled_reason.as_deref() == Some(patchline_engine::service::DELETED) {
            return Err(ApiError::not_found("subscription", &id));
        }
        s.active = true;
        s.disabled_reason = None;
        e.put_subscription(s.clone())?;
        Ok(Json(subscription_json(
            &s,
            e.catalog().tenant_id(s.tenant).as_str(),
        )))
    })
    .await
}

/// `POST /v1/subscriptions/{id}/rotate`: a new secret; the old one keeps
/// signing for the overlap, so receivers can switch without a gap.
pub async fn rotate_secret(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let overlap = st.config.secret_overlap_ms;
    let secret = patchline_webhook::secret::Secret::generate().to_string();
    let out = secret.clone();
    let sub_id = id.clone();
    with_engine(&st, move |e| {
        let mut s = e.subscription(p.tenant(), &id)?.clone();
        if !matches!(s.channel, Channel::Webhook { .. }) {
            return Err(ApiError::bad_request(
                "only webhook subscriptions have secrets",
            ));
        }
        let now = patchline_engine::now_ms();
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
    Ok(Json(
        json!({"id": sub_id, "secret": out, "previous_valid_for_s": overlap / 1000}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn list_deliveries(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Value>> {
    let sid = id.clone();
    let installation = with_engine(&st, move |e| {
        e.subscription(p.tenant(), &sid)?;
        Ok(e.service().installation.clone())
    })
    .await?;
    if let Some(s) = &q.state
        && patchline_core::notice::DeliveryState::parse(s).is_none()
    {
        return Err(ApiError::bad_request(format!("unknown state {s:?}")));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = with_reader(&st, move |r| {
        Ok(r.deliveries(&id, q.state.as_deref(), limit)?)
    })
    .await?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|d| {
            json!({
                "id": patchline_engine::service::message_id(&installation, d.id), "purpose": d.purpose, "notices": d.notices, "state": d.state,
                "attempts": d.attempts, "next_attempt_at": format_unix(d.next_at_ms / 1000),
                "last_status": d.last_status, "last_error": d.last_error,
                "created_at": format_unix(d.created_at_ms / 1000),
                "delivered_at": d.delivered_at_ms.map(|t| format_unix(t / 1000)),
            })
        })
        .collect();
    Ok(Json(json!({"deliveries": rows})))
}

pub async fn replay(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let sid = id.clone();
    with_engine(&st, move |e| {
        e.subscription(p.tenant(), &sid)
            .map(|_| ())
            .map_err(Into::into)
    })
    .await?;
    let open = st.queues.clone();
    let n = tokio::task::spawn_blocking(move || -> ApiResult<usize> {
        let mut q = open()?;
        Ok(q.replay(&id, patchline_engine::now_ms())?)
    })
    .await
    .map_err(ApiError::internal)??;
    st.wake.notify_one();
    Ok(Json(json!({"replayed": n})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWatch {
    artifact: String,
}

pub async fn watch(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewWatch = parse_json(&body)?;
    let Some(t) = p.tenant() else {
        return Err(ApiError::bad_request("watches are a tenant's"));
    };
    with_engine(&st, move |e| {
        e.watch(t, &req.artifact)?;
        Ok((StatusCode::CREATED, Json(json!({"artifact": req.artifact}))).into_response())
    })
    .await
}

// ----- notices -----

#[derive(Debug, Deserialize)]
pub struct NoticesQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// A page of notices as one reader sees them, and the cursor after it.
#[derive(Debug)]
pub struct NoticePage {
    pub docs: Vec<NoticeDoc>,
    /// Rows looked at (visible or not).
    pub scanned: usize,
    /// The last notice id looked at (notices the reader may no longer see
    /// are skipped, not returned): the next page's `after`.
    pub next: i64,
}

/// Reads up to `limit` notices of `tenant` after `after`, rendered for the
/// reader, within `bytes_max` bytes (at least one notice); the reader's
/// own notices that were `affected` become `notified`.
async fn read_notices(
    st: &Arc<AppState>,
    p: &Principal,
    tenant: TenantIdx,
    after: i64,
    limit: usize,
    bytes_max: usize,
) -> ApiResult<NoticePage> {
    let rows: Vec<StoredNotice> =
        with_reader(st, move |r| Ok(r.notices_after(tenant, after, limit)?)).await?;
    let p = p.clone();
    let (page, seen) = with_engine(st, move |e| {
        let docs = NoticeDoc::render_all(&rows, e.catalog(), e.db(), &p.actor());
        let mut docs = docs.into_iter().peekable();
        let mut page = NoticePage {
            docs: Vec::new(),
            scanned: 0,
            next: after,
        };
        let mut seen = Vec::new();
        let mut bytes = 0usize;
        for row in &rows {
            if docs.peek().is_some_and(|d| d.notice_id == row.id) {
                let Some(doc) = docs.next() else { break };
                let size = serde_json::to_vec(&doc).map(|v| v.len()).unwrap_or(0);
                if !page.docs.is_empty() && bytes + size > bytes_max {
                    break;
                }
                bytes += size;
                if row.tenant == tenant && row.state == NoticeState::Affected {
                    seen.push(row.id);
                }
                page.docs.push(doc);
            }
            page.next = row.id;
            page.scanned += 1;
        }
        Ok((page, seen))
    })
    .await?;
    if !seen.is_empty() {
        with_reader(st, move |r| {
            Ok(r.mark_notified(&seen, patchline_engine::now_ms())?)
        })
        .await?;
    }
    Ok(page)
}

fn reader_tenant(p: &Principal) -> ApiResult<TenantIdx> {
    p.tenant()
        .ok_or_else(|| ApiError::bad_request("notices are read with a tenant's token"))
}

/// `GET /v1/notices`: a page of the reader's notices; each record's text
/// (its summary) is given once, under `records`, not in every notice.
pub async fn list_notices(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<NoticesQuery>,
) -> ApiResult<Json<Value>> {
    let t = reader_tenant(&p)?;
    let limit = q.limit.unwrap_or(100).clamp(1, st.config.page_max);
    let after = q.after.unwrap_or(0).max(0);
    let mut page = read_notices(&st, &p, t, after, limit, st.config.page_bytes_max).await?;
    let records = take_record_text(&mut page.docs);
    Ok(Json(
        json!({"notices": page.docs, "records": records, "next": page.next}),
    ))
}

/// Moves each record's summary out of its notices into one map entry per
/// record (text is rendered once per page or event, not per notice).
pub fn take_record_text(docs: &mut [NoticeDoc]) -> BTreeMap<String, Value> {
    let mut records = BTreeMap::new();
    for d in docs {
        let summary = d.body.summary.take();
        records
            .entry(d.body.advisory.clone())
            .or_insert_with(|| json!({"summary": summary}));
    }
    records
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    #[serde(default)]
    state: Option<NoticeState>,
    #[serde(default)]
    justification: Option<String>,
}

pub async fn ack(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: AckBody = if body.is_empty() {
        AckBody::default()
    } else {
        parse_json(&body)?
    };
    with_engine(&st, move |e| {
        let n = e.ack(
            p.tenant(),
            id,
            req.state.unwrap_or(NoticeState::Acknowledged),
            req.justification,
        )?;
        let doc = NoticeDoc::render(&n, e.catalog(), e.db(), &p.actor())
            .ok_or_else(|| ApiError::internal("notice body"))?;
        Ok(Json(serde_json::to_value(doc).map_err(ApiError::internal)?))
    })
    .await
}

/// Counts a stream for as long as its connection lives: dropped with the
/// response body when the client goes away.
struct StreamGuard {
    st: Arc<AppState>,
    tenant: TenantIdx,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.st.hub.close_stream(self.tenant);
        self.st
            .metrics
            .sse_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `GET /v1/notices/stream`: server-sent events, one per notice, resumable
/// with `Last-Event-ID` (or `?after=`): the backlog after that id is read
/// from the database, then live notices follow. The stream ends when its
/// token is revoked or the server stops.
pub async fn stream(
    State(st): State<Arc<AppState>>,
    p: Principal,
    headers: HeaderMap,
    Query(q): Query<NoticesQuery>,
) -> ApiResult<Response> {
    let t = reader_tenant(&p)?;
    st.hub
        .open_stream(t, st.config.streams_max, st.config.streams_per_tenant_max)
        .map_err(|refused| match refused {
            crate::sse::StreamRefused::Full => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many open streams",
            ),
            crate::sse::StreamRefused::TenantFull => ApiError::rate_limited(format!(
                "this tenant holds {} open streams; close one first",
                st.config.streams_per_tenant_max
            )),
        })?;
    st.metrics
        .sse_streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let guard = StreamGuard {
        st: st.clone(),
        tenant: t,
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after)
        .unwrap_or(0);
    // Subscribe before reading the backlog so nothing falls in between.
    let live = st.hub.subscribe(t);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(pump(st.clone(), p, t, after, live, tx));
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<Event, Infallible>(e), (rx, guard)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn event_of(doc: &NoticeDoc) -> Option<Event> {
    let json = serde_json::to_string(doc).ok()?;
    Some(
        Event::default()
            .id(doc.notice_id.to_string())
            .event("notice")
            .data(json),
    )
}

/// Whether the stream's token is still valid.
async fn token_still_valid(st: &Arc<AppState>, p: &Principal) -> bool {
    let Some(token) = p.token_id().map(str::to_string) else {
        return true;
    };
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        st.engine
            .lock()
            .map(|e| e.service().token_active(&token))
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Feeds one stream: backlog pages, then live notices; on lag, back to the
/// database from the last id sent. Ends when the client is gone, the
/// token is revoked or the server stops.
async fn pump(
    st: Arc<AppState>,
    p: Principal,
    t: TenantIdx,
    mut last: i64,
    mut live: tokio::sync::broadcast::Receiver<LiveNotice>,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    let page = st.config.page_max.min(500);
    let mut revocations = st.revocations.subscribe();
    let mut stopping = st.stopping.subscribe();
    if *stopping.borrow() {
        return;
    }
    loop {
        // Backlog (or catch-up after lag).
        loop {
            let Ok(batch) = read_notices(&st, &p, t, last, page, usize::MAX).await else {
                return;
            };
            for d in &batch.docs {
                let Some(ev) = event_of(d) else { return };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            last = batch.next;
            if batch.scanned < page {
                break;
            }
        }
        // Live.
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = stopping.changed() => return,
                changed = revocations.changed() => {
                    if changed.is_err() || !token_still_valid(&st, &p).await {
                        return;
                    }
                }
                got = live.recv() => match got {
                    Ok(n) if n.id <= last => continue,
                    Ok(n) => {
                        last = n.id;
                        let ev = Event::default()
                            .id(n.id.to_string())
                            .event("notice")
                            .data(&*n.json);
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                        if !n.own {
                            continue;
                        }
                        let reader = st.reader.clone();
                        let id = n.id;
                        drop(tokio::task::spawn_blocking(move || {
                            if let Ok(mut r) = reader.lock() {
                                let _ = r.mark_notified(&[id], patchline_engine::now_ms());
                            }
                        }));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

// ----- operations -----

pub async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let (artifacts, records) = with_engine(&st, |e| Ok((e.catalog().len(), e.db().len()))).await?;
    Ok(Json(
        json!({"status": "ok", "artifacts": artifacts, "records": records}),
    ))
}

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

pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI,
    )
        .into_response()
}

// ----- scanning -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// Files or folders on the server's filesystem.
    paths: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    visibility: Option<patchline_core::Visibility>,
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
            let refused = || {
                ApiError::forbidden(format!(
                    "{p}: not under an image root (PATCHLINE_SCAN_ROOTS) or not found"
                ))
            };
            let real = std::fs::canonicalize(p).map_err(|_| refused())?;
            if roots.iter().any(|r| real.starts_with(r)) {
                Ok(real)
            } else {
                Err(refused())
            }
        })
        .collect()
}

/// Most paths one scan request names.
const SCAN_PATHS_MAX: usize = 64;

/// `POST /v1/scan` (admin): scans disk images on the server and registers
/// them; each image is applied on its own, failures are listed.
pub async fn scan(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Json<Value>> {
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
    };
    let paths = confined_paths(&st.config.scan_roots, &req.paths)?;
    let outcome =
        tokio::task::spawn_blocking(move || patchline_scan::scanner::scan(&paths, &options))
            .await
            .map_err(ApiError::internal)?;
    let (bytes_read, on_disk) = (outcome.bytes_read(), outcome.bytes_on_disk());
    with_engine(&st, move |e| {
        let mut images = Vec::new();
        let mut errors: Vec<Value> = outcome
            .errors
            .iter()
            .map(|(path, error)| json!({"path": path.display().to_string(), "error": error}))
            .collect();
        for image in outcome.images {
            let id = image.spec.id.to_string();
            let item = BatchItem { location: image.path.display().to_string(), spec: image.spec };
            match e.apply_batch([Ok(item)], Mode::Upsert, &Actor::Admin, &mut |_| {}) {
                Ok(r) => images.push(json!({
                    "artifact": id,
                    "outcome": if r.created > 0 { "created" } else if r.updated > 0 { "updated" } else { "unchanged" },
                    "warnings": image.warnings,
                })),
                Err(err) => errors.push(json!({"path": image.path.display().to_string(), "error": err.to_string()})),
            }
        }
        Ok(Json(json!({"images": images, "errors": errors, "bytes_read": bytes_read, "bytes_on_disk": on_disk})))
    })
    .await
}

// ----- reserved id prefixes (admin) -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPrefix {
    prefix: String,
    tenant: String,
}

/// `POST /v1/prefixes`: reserves a record id prefix for a publisher (the
/// operator assigns the ids of a shared feed: `USN-` to the publisher that
/// issues them).
pub async fn reserve_prefix(
    State(st): State<Arc<AppState>>,
    p: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    require_admin(&p)?;
    let req: NewPrefix = parse_json(&body)?;
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
        Ok((
            StatusCode::CREATED,
            Json(json!({"prefix": req.prefix, "tenant": req.tenant})),
        )
            .into_response())
    })
    .await
}

/// `GET /v1/prefixes` (admin).
pub async fn list_prefixes(
    State(st): State<Arc<AppState>>,
    p: Principal,
) -> ApiResult<Json<Value>> {
    require_admin(&p)?;
    with_engine(&st, move |e| {
        let list: Vec<Value> = e
            .service()
            .prefixes
            .iter()
            .map(|(prefix, t)| json!({"prefix": prefix, "tenant": e.catalog().tenant_id(*t).as_str()}))
            .collect();
        Ok(Json(json!({"prefixes": list})))
    })
    .await
}

/// `DELETE /v1/prefixes/{prefix}` (admin).
pub async fn release_prefix(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(prefix): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&p)?;
    with_engine(&st, move |e| Ok(e.release_prefix(&prefix)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- the operator's escalation channel (admin) -----

/// `GET /v1/operator/escalation`: the escalation webhook and the secret
/// that signs it (never printed or logged; rotate it with
/// `POST /v1/subscriptions/sub_operator/rotate`).
pub async fn operator_escalation(
    State(st): State<Arc<AppState>>,
    p: Principal,
) -> ApiResult<Json<Value>> {
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
        let now = patchline_engine::now_ms();
        Ok(Json(json!({
            "subscription": s.id,
            "url": url,
            "secret": s.signing_secrets(now).first(),
            "previous_secrets": s.signing_secrets(now).iter().skip(1).collect::<Vec<_>>(),
        })))
    })
    .await
}

// ----- reads for dashboards and scripts -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    kind: Option<Kind>,
    /// `key=value`.
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// The last artifact id of the previous page.
    #[serde(default)]
    after: Option<String>,
}

/// Most artifacts or records per page of a list.
pub const LIST_PAGE_MAX: usize = 1000;

/// `GET /v1/artifacts`: the artifacts the caller may see (its own and
/// public ones; admins: all), in creation order, filtered by tenant, kind
/// and label, paged with `?limit=&after=`.
pub async fn list_artifacts(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<ArtifactsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, LIST_PAGE_MAX);
    let label = match &q.label {
        Some(l) => Some(
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::bad_request("label is key=value"))?,
        ),
        None => None,
    };
    with_engine(&st, move |e| {
        let actor = p.actor();
        let c = e.catalog();
        let tenant = match &q.tenant {
            Some(t) => Some(
                c.tenant_idx(t)
                    .filter(|&x| e.service().roles.contains_key(&x) || p.is_admin())
                    .ok_or_else(|| ApiError::not_found("tenant", t))?,
            ),
            None => None,
        };
        let start = match q.after.as_deref().filter(|a| !a.is_empty()) {
            Some(after) => {
                c.visible(after, &actor)
                    .ok_or_else(|| ApiError::not_found("artifact", after))?
                    .0 as usize
                    + 1
            }
            None => 0,
        };
        let mut out = Vec::new();
        let mut next = None;
        for (a, n) in c.nodes().skip(start) {
            if n.removed
                || !c.may_see_idx(&actor, a)
                || tenant.is_some_and(|t| t != n.tenant)
                || q.kind.is_some_and(|k| k != n.kind)
                || label
                    .as_ref()
                    .is_some_and(|(k, v)| n.labels.get(k) != Some(v))
            {
                continue;
            }
            if out.len() == limit {
                next = out
                    .last()
                    .and_then(|v: &Value| v["id"].as_str().map(str::to_string));
                break;
            }
            out.push(artifact_json(e, a, &p));
        }
        Ok(Json(json!({"artifacts": out, "next": next})))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageQuery {
    #[serde(default)]
    max_nodes: Option<usize>,
}

/// Most nodes of one lineage answer.
pub const LINEAGE_NODES_MAX: usize = 10_000;

/// `GET /v1/artifacts/{id}/lineage`: ancestors, descendants per kind and
/// the subtree, as the caller may see them.
pub async fn lineage(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> ApiResult<Json<Value>> {
    let max_nodes = q.max_nodes.unwrap_or(200).clamp(1, LINEAGE_NODES_MAX);
    with_engine(&st, move |e| {
        let actor = p.actor();
        let c = e.catalog();
        let a = c
            .visible(&id, &actor)
            .ok_or_else(|| ApiError::not_found("artifact", &id))?;
        let ancestors: Vec<String> = c
            .ancestors(a)
            .map(|x| patchline_engine::report::shown_id(c, &actor, x))
            .collect();
        let counts = patchline_engine::report::visible_subtree_counts(c, a, &actor);
        Ok(Json(json!({
            "artifact": id,
            "ancestors": ancestors,
            "descendants": kind_map(&counts),
            "tree": patchline_engine::report::lineage_tree(c, a, &actor, max_nodes),
        })))
    })
    .await
}

fn kind_map(counts: &[u64; 4]) -> BTreeMap<&'static str, u64> {
    Kind::ALL
        .iter()
        .zip(counts)
        .map(|(k, n)| (k.as_str(), *n))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    #[serde(default)]
    limit: Option<usize>,
    /// The last record id of the previous page.
    #[serde(default)]
    after: Option<String>,
}

/// One record of a list: what it is and how far it spread, as the caller
/// may count it (its own artifacts; publishers of the record and admins:
/// every tenant's).
fn record_row(e: &Engine, adv: patchline_core::AdvIdx, actor: &Actor) -> Value {
    let record = e.db().get(adv);
    let impact = e.impact(adv);
    let counts = if e.owns_record(actor, adv) {
        counts_by_kind(e.catalog(), &impact)
    } else {
        patchline_engine::report::counts_for(e.catalog(), &impact, actor)
    };
    let (kind, summary, withdrawn, modified) = match record {
        Record::Advisory(a) => (
            "advisory",
            a.osv.summary.clone(),
            a.withdrawn,
            a.osv.modified.clone(),
        ),
        Record::Failure(f) => (
            "failure",
            Some(f.summary.clone()),
            f.withdrawn,
            f.modified_text.clone(),
        ),
    };
    json!({
        "id": record.id().as_str(),
        "kind": kind,
        "summary": summary,
        "modified": modified,
        "withdrawn": withdrawn,
        "affected": counts.iter().sum::<u64>(),
        "affected_by_kind": kind_map(&counts),
        "owner": e.owns_record(actor, adv) && !matches!(actor, Actor::Admin),
    })
}

/// `GET /v1/advisories`: advisories and the failures the caller may know
/// of, in publication order, with their spread, paged.
pub async fn list_records(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<RecordsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, LIST_PAGE_MAX);
    with_engine(&st, move |e| {
        let actor = p.actor();
        let start = match q.after.as_deref().filter(|a| !a.is_empty()) {
            Some(after) => e.lookup_record_for(after, &actor)?.0 as usize + 1,
            None => 0,
        };
        e.prepare();
        let ids: Vec<patchline_core::AdvIdx> = e
            .db()
            .iter()
            .skip(start)
            .map(|(i, _)| i)
            .filter(|&i| {
                e.lookup_record_for(e.db().get(i).id().as_str(), &actor)
                    .is_ok()
            })
            .take(limit + 1)
            .collect();
        let more = ids.len() > limit;
        let rows: Vec<Value> = ids
            .iter()
            .take(limit)
            .map(|&i| record_row(e, i, &actor))
            .collect();
        let next = more
            .then(|| {
                rows.last()
                    .and_then(|r| r["id"].as_str().map(str::to_string))
            })
            .flatten();
        Ok(Json(json!({"records": rows, "next": next})))
    })
    .await
}

/// `GET /v1/report`: every open record that affects something the caller
/// may count, most widespread first (the CLI's `report`).
pub async fn report(State(st): State<Arc<AppState>>, p: Principal) -> ApiResult<Json<Value>> {
    with_engine(&st, move |e| {
        let actor = p.actor();
        e.prepare();
        let ids: Vec<patchline_core::AdvIdx> = e
            .db()
            .iter()
            .filter(|(_, r)| r.is_open())
            .map(|(i, _)| i)
            .filter(|&i| {
                e.lookup_record_for(e.db().get(i).id().as_str(), &actor)
                    .is_ok()
            })
            .collect();
        let mut rows: Vec<Value> = ids
            .into_iter()
            .map(|i| record_row(e, i, &actor))
            .filter(|r| r["affected"].as_u64().unwrap_or(0) > 0)
            .collect();
        rows.sort_by(|a, b| {
            b["affected"]
                .as_u64()
                .cmp(&a["affected"].as_u64())
                .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()))
        });
        Ok(Json(json!({"records": rows})))
    })
    .await
}
