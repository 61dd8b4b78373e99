//! Advisories and failures: publishing OSV records, the `affected`
//! document, a record's progress, the lists of records and the report.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::state::Engine;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use patchline_core::notice::NoticeState;
use patchline_core::{Actor, Advisory, Kind, Published, Record};
use patchline_engine::report::{AffectedArtifact, counts_by_kind};
use patchline_formats::osv;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::artifacts::{LIST_PAGE_MAX, Outcome};
use super::{KindCounts, created_or_ok, require_publisher, rfc3339, with_engine, with_reader};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::AppState;

/// An OSV record (schema 1.6): validated by the engine's OSV parser. Only
/// the fields patchline reads are described here.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct OsvBody {
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    id: String,
    /// At most 5 minutes ahead of the server's clock.
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    modified: String,
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    published: Option<String>,
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    withdrawn: Option<String>,
    aliases: Option<Vec<String>>,
    /// Longer than 1 KiB: truncated.
    summary: Option<String>,
    /// Longer than 64 KiB: truncated.
    details: Option<String>,
    severity: Option<Vec<serde_json::Value>>,
    affected: Option<Vec<serde_json::Value>>,
}

/// An advisory as published.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryPublished {
    id: String,
    outcome: Outcome,
    /// Artifacts it affects now.
    affected: u64,
    withdrawn: bool,
    /// Entries patchline cannot evaluate, with the reason.
    unsupported: Vec<String>,
}

/// Publishes an OSV advisory (publishers). A record belongs to the tenant
/// that first published it: only it (or an admin) may update or withdraw
/// it, and ids under a prefix reserved for another publisher are refused.
#[utoipa::path(post, path = "/v1/advisories", tag = "advisories",
    request_body = OsvBody,
    responses((status = 201, body = AdvisoryPublished), (status = 200, body = AdvisoryPublished), Errors))]
pub async fn publish_advisory(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
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
        let affected = e.impact(outcome.idx()).artifact_count() as u64;
        let Record::Advisory(a) = e.db().get(outcome.idx()) else {
            return Err(ApiError::internal("not an advisory"));
        };
        Ok(created_or_ok(
            matches!(outcome, Published::New(_)),
            AdvisoryPublished {
                id: a.id.to_string(),
                outcome: outcome.into(),
                affected,
                withdrawn: a.withdrawn,
                unsupported: a.unsupported.clone(),
            },
        ))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AffectedQuery {
    /// Rows per page (1 to 10,000); without it the whole document is
    /// answered, up to 64 MiB.
    #[serde(default)]
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{0,256}$")]
    after: Option<String>,
}

/// Most rows of one page of `affected`.
pub const AFFECTED_PAGE_MAX: usize = 10_000;

/// The `affected` document (written by the engine, streamed into the
/// answer; described here).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AffectedDoc {
    advisory: String,
    /// How severe the record is, and what that was read from (left out
    /// when the record states nothing readable).
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<patchline_core::severity::Rating>,
    affected: Vec<AffectedArtifact>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unsupported: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    withdrawn: bool,
    /// Paged answers only: the `after` of the next page, null at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Option<String>>,
}

/// Which artifacts a record affects, where it came in and along which
/// path: all of an admin's, the caller's own for a tenant (ids it may not
/// see read `(private)`). Whole by default; past 64 MiB a `too_large`
/// error points to `?limit=&after=`.
#[utoipa::path(get, path = "/v1/advisories/{id}/affected", tag = "advisories",
    params(("id" = String, Path, description = "Advisory or failure id"), AffectedQuery),
    responses((status = 200, body = AffectedDoc), Errors))]
pub async fn affected(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<AffectedQuery>,
) -> ApiResult<Response> {
    let cap = st.config.affected_bytes_max;
    let limit = q
        .limit
        .map(|l| super::bounded("limit", Some(l), 1, AFFECTED_PAGE_MAX, 1000))
        .transpose()?;
    let after = super::id_cursor(&q.after)?.map(str::to_string);
    let body = with_engine(&st, move |e| {
        let actor = p.actor();
        let adv = e.lookup_record_for(&id, &actor)?;
        // Kept between requests: paging through `affected` computes it once.
        let impact = e.impact_shared(adv);
        let catalog = e.catalog();
        let rows = patchline_engine::report::affected_rows(catalog, &impact, &actor);
        let record = e.db().get(adv);
        let hint =
            "read it in pages with ?limit=1000&after= (then &after=<next> until next is null)";
        capped_json(cap, hint, |out| match limit {
            None => patchline_engine::report::write_affected(
                out, catalog, record, &rows, &actor, None, None,
            ),
            Some(limit) => {
                let start = match after {
                    Some(after) => rows
                        .partition_point(|(a, _)| catalog.node(*a).id.as_str() <= after.as_str()),
                    None => 0,
                };
                let page = &rows[start..(start + limit).min(rows.len())];
                let next = (start + page.len() < rows.len())
                    .then(|| page.last().map(|(a, _)| catalog.node(*a).id.as_str()))
                    .flatten();
                patchline_engine::report::write_affected(
                    out,
                    catalog,
                    record,
                    page,
                    &actor,
                    Some(next),
                    None,
                )
            }
        })
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// A JSON answer written into a buffer of at most `cap` bytes; past it, a
/// `too_large` error that says how to ask for less (`hint`).
fn capped_json(
    cap: usize,
    hint: &str,
    write: impl FnOnce(&mut patchline_engine::report::Capped) -> std::io::Result<()>,
) -> ApiResult<Vec<u8>> {
    let mut out = patchline_engine::report::Capped {
        buf: Vec::new(),
        max: cap,
    };
    match write(&mut out) {
        Ok(()) => Ok(out.buf),
        Err(err) if err.kind() == std::io::ErrorKind::FileTooLarge => Err(ApiError::too_large(
            format!("the answer is larger than {} MiB; {hint}", cap >> 20),
        )),
        Err(err) => Err(ApiError::internal(err)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemedyQuery {
    /// Whose plan (admins; a tenant reads only its own). Without it: the
    /// caller's own plan, or every tenant's for an admin.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: Option<String>,
    /// How many artifacts of how many tenants a patched successor of this
    /// artifact would clear (it must be visible to the caller).
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    if_successor_of: Option<String>,
}

/// Where to patch: one tenant's remedy plan for a record (steps top-down:
/// rebase, rebuild or relaunch, each with the successor to move onto or
/// the upstream artifact it waits for, and the artifacts it clears).
/// Publishers and admins also get the ranking of artifacts whose patched
/// successor would clear the most (counts across tenants); an admin
/// without `tenant` gets every tenant's steps. Past 64 MiB a `too_large`
/// error asks for one tenant's plan.
#[utoipa::path(get, path = "/v1/advisories/{id}/remedy", tag = "advisories",
    params(("id" = String, Path, description = "Advisory or failure id"), RemedyQuery),
    responses((status = 200, body = patchline_engine::report::RemedyDoc), Errors))]
pub async fn remedy(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<RemedyQuery>,
) -> ApiResult<Response> {
    let cap = st.config.affected_bytes_max;
    let body = with_engine(&st, move |e| {
        let actor = p.actor();
        let adv = e.lookup_record_for(&id, &actor)?;
        let catalog = e.catalog();
        let tenant = match (&p, q.tenant.as_deref()) {
            (Principal::Admin, None) => None,
            (Principal::Admin, Some(t)) => Some(
                catalog
                    .tenant_idx(t)
                    .ok_or_else(|| ApiError::not_found("tenant", t))?,
            ),
            (Principal::Tenant { id: me, .. }, t) => {
                if t.is_some_and(|t| t != me.as_str()) {
                    return Err(ApiError::forbidden(
                        "a tenant reads its own remedy plan only",
                    ));
                }
                // A tenant that never owned anything has an empty plan.
                Some(
                    catalog
                        .tenant_idx(me.as_str())
                        .unwrap_or(patchline_core::TenantIdx(u32::MAX)),
                )
            }
        };
        // What lies below an artifact (its successor's reach, the ranking)
        // is counted across tenants: told to admins, to the record's
        // publisher, and to the artifact's owner — no one else.
        let owns_record = e.owns_record(&actor, adv);
        let if_successor_of = match q.if_successor_of.as_deref() {
            None => None,
            Some(a) => {
                let u = catalog
                    .visible(a, &actor)
                    .ok_or_else(|| ApiError::not_found("artifact", a))?;
                if !owns_record && !catalog.owns(&actor, u) {
                    return Err(ApiError::forbidden(
                        "only the artifact's owner, the record's publisher or an admin reads what its successor would clear",
                    ));
                }
                Some(u)
            }
        };
        use patchline_engine::report::RankingScope;
        let ranking = match (&p, q.tenant.is_some()) {
            (Principal::Admin, false) => Some(RankingScope::Visible),
            (Principal::Admin, true) => None,
            (_, _) if owns_record => Some(RankingScope::Visible),
            (p, _) if p.is_publisher() => p.tenant().map(RankingScope::Owned),
            _ => None,
        };
        // An admin reading one tenant's plan reads it as that tenant does.
        let reader = match (&p, tenant) {
            (Principal::Admin, Some(t)) => {
                patchline_core::Actor::Tenant(catalog.tenant_id(t).clone())
            }
            _ => actor.clone(),
        };
        let impact = e.impact_shared(adv);
        let ask = patchline_engine::report::RemedyAsk {
            actor: &reader,
            tenant,
            ranking,
            if_successor_of,
        };
        let doc = patchline_engine::report::remedy_doc(e.catalog(), e.db().get(adv), &impact, &ask);
        // Bounded like `affected`.
        capped_json(cap, "ask for one tenant's plan with ?tenant=", |out| {
            serde_json::to_writer(out, &doc).map_err(std::io::Error::from)
        })
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProgressQuery {
    /// Width of a history bucket, in seconds (default 3600).
    #[serde(default)]
    #[param(minimum = 1, maximum = 2592000)]
    bucket_s: Option<i64>,
}

/// Notices in one state at one time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    at: String,
    state: NoticeState,
    count: i64,
}

/// How far a record spread, and how its notices moved: counts only.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    advisory: String,
    affected_now: u64,
    affected_now_by_kind: KindCounts,
    notices: i64,
    /// Notices per state.
    by_state: BTreeMap<String, i64>,
    /// Notices per artifact kind, then state.
    by_kind: BTreeMap<String, BTreeMap<String, i64>>,
    history: Vec<HistoryPoint>,
    /// Notices still open (affected, notified or acknowledged): what is
    /// still on the old base.
    still_open: i64,
    /// Remediated notices now, by what remediated them: `successor` (the
    /// artifact, or one above it, moved onto a patched successor),
    /// `rebase` (onto something else), `rebuild`, `removal`, `record` (the
    /// record changed), `unknown` (before causes were kept, or at a
    /// start-up's reconciliation).
    remediated_by: BTreeMap<String, i64>,
    /// Remediations per time bucket and cause.
    remediation_history: Vec<RemediationPoint>,
}

/// Remediations of one cause in one time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemediationPoint {
    at: String,
    cause: patchline_core::notice::RemediationCause,
    count: i64,
}

/// A record's spread and remediation over time, for its publisher and
/// admins (everyone else gets the answer of a missing id).
#[utoipa::path(get, path = "/v1/advisories/{id}/progress", tag = "advisories",
    params(("id" = String, Path, description = "Advisory or failure id"), ProgressQuery),
    responses((status = 200, body = Progress), Errors))]
pub async fn progress(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ProgressQuery>,
) -> ApiResult<Json<Progress>> {
    let (adv, record_id, affected_now, kinds) = with_engine(&st, move |e| {
        let actor = p.actor();
        let adv = e.lookup_record_for(&id, &actor)?;
        if !e.owns_record(&actor, adv) {
            return Err(ApiError::not_found("advisory", &id));
        }
        e.prepare();
        let impact = e.impact(adv);
        Ok((
            adv,
            e.db().get(adv).id().to_string(),
            impact.artifact_count() as u64,
            counts_by_kind(e.catalog(), &impact),
        ))
    })
    .await?;
    let bucket_ms = super::bounded("bucket_s", q.bucket_s, 1, 30 * 86_400, 3600)? * 1000;
    let (counts, history, causes, cause_history) = with_reader(&st, move |r| {
        Ok((
            r.progress_counts(adv)?,
            r.progress_history(adv, bucket_ms)?,
            r.remediation_counts(adv)?,
            r.remediation_history(adv, bucket_ms)?,
        ))
    })
    .await?;
    let mut by_kind: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0;
    for (kind, state, n) in counts {
        let k = Kind::from_code(kind).map(Kind::as_str).unwrap_or("unknown");
        *by_kind
            .entry(k.to_string())
            .or_default()
            .entry(state.clone())
            .or_default() += n;
        *by_state.entry(state).or_default() += n;
        total += n;
    }
    let history = history
        .into_iter()
        .filter_map(|(at, state, count)| {
            Some(HistoryPoint {
                at: rfc3339(at),
                state: NoticeState::parse(&state)?,
                count,
            })
        })
        .collect();
    let still_open = ["affected", "notified", "acknowledged"]
        .iter()
        .map(|s| by_state.get(*s).copied().unwrap_or(0))
        .sum();
    let remediation_history = cause_history
        .into_iter()
        .filter_map(|(at, cause, count)| {
            Some(RemediationPoint {
                at: rfc3339(at),
                cause: patchline_core::notice::RemediationCause::parse(&cause)?,
                count,
            })
        })
        .collect();
    Ok(Json(Progress {
        advisory: record_id,
        affected_now,
        affected_now_by_kind: kinds.into(),
        notices: total,
        by_state,
        by_kind,
        history,
        still_open,
        remediated_by: causes.into_iter().collect(),
        remediation_history,
    }))
}

// ----- lists -----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// 1 to 1000 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{0,256}$")]
    after: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Advisory,
    Failure,
}

/// A record and how far it spread, as the caller may count it: its own
/// artifacts; every tenant's for the record's publisher and admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordRow {
    id: String,
    kind: RecordKind,
    summary: Option<String>,
    modified: String,
    withdrawn: bool,
    affected: u64,
    affected_by_kind: KindCounts,
    /// The caller published it.
    owner: bool,
}

fn record_row(e: &Engine, adv: patchline_core::AdvIdx, actor: &Actor) -> RecordRow {
    let record = e.db().get(adv);
    let impact = e.impact(adv);
    let counts = if e.owns_record(actor, adv) {
        counts_by_kind(e.catalog(), &impact)
    } else {
        patchline_engine::report::counts_for(e.catalog(), &impact, actor)
    };
    let (kind, summary, withdrawn, modified) = match record {
        Record::Advisory(a) => (
            RecordKind::Advisory,
            a.osv.summary.clone(),
            a.withdrawn,
            a.osv.modified.clone(),
        ),
        Record::Failure(f) => (
            RecordKind::Failure,
            Some(f.summary.clone()),
            f.withdrawn,
            f.modified_text.clone(),
        ),
    };
    RecordRow {
        id: record.id().to_string(),
        kind,
        summary,
        modified,
        withdrawn,
        affected: counts.iter().sum(),
        affected_by_kind: counts.into(),
        owner: e.owns_record(actor, adv) && !matches!(actor, Actor::Admin),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    records: Vec<RecordRow>,
    /// `after` of the next page; null at the end.
    next: Option<String>,
}

/// Advisories and the failures the caller may know of, in publication
/// order, with their spread, paged.
#[utoipa::path(get, path = "/v1/advisories", tag = "advisories",
    params(RecordsQuery),
    responses((status = 200, body = RecordPage), Errors))]
pub async fn list_records(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<RecordsQuery>,
) -> ApiResult<Json<RecordPage>> {
    let limit = super::bounded("limit", q.limit, 1, LIST_PAGE_MAX, 50)?;
    with_engine(&st, move |e| {
        let actor = p.actor();
        let start = match super::id_cursor(&q.after)? {
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
        let records: Vec<RecordRow> = ids
            .iter()
            .take(limit)
            .map(|&i| record_row(e, i, &actor))
            .collect();
        let next = if more {
            records.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Json(RecordPage { records, next }))
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Report {
    /// Open records affecting what the caller may count, most widespread
    /// first.
    records: Vec<RecordRow>,
}

/// Every open record that affects something the caller may count (the
/// CLI's `report`).
#[utoipa::path(get, path = "/v1/report", tag = "advisories",
    responses((status = 200, body = Report), Errors))]
pub async fn report(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<Report>> {
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
        let mut records: Vec<RecordRow> = ids
            .into_iter()
            .map(|i| record_row(e, i, &actor))
            .filter(|r| r.affected > 0)
            .collect();
        records.sort_by(|a, b| b.affected.cmp(&a.affected).then_with(|| a.id.cmp(&b.id)));
        Ok(Json(Report { records }))
    })
    .await
}
