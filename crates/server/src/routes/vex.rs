//! VEX in and out: a tenant imports OpenVEX or CycloneDX VEX statements on
//! its artifacts (each covers the artifact's subtree) and exports its
//! decisions in either format.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use patchline_core::notice::NoticeState;
use patchline_formats::vex::{Decision, Justification, VexFormat};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{rfc3339, with_engine, with_reader};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::AppState;

/// Most decisions one export carries (past it: 422, `too_large`).
pub const EXPORT_MAX: usize = 100_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The artifact (yours) that statements naming none of your artifacts
    /// are about — a VEX written for an image names its products by purl.
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    artifact: Option<String>,
    /// `subtree` (the default): a statement covers its artifact's subtree
    /// (the tenant's artifacts in it), now and later; `artifact`: the
    /// artifact alone (what an export of one-by-one decisions means).
    scope: Option<Scope>,
}

/// What a statement on an artifact covers.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Subtree,
    Artifact,
}

/// A statement that was not applied, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    /// Where it is in the document (`statements[2]`, `vulnerabilities[0]`).
    at: String,
    reason: String,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct VexImport {
    /// `openvex` or `cyclonedx`.
    format: String,
    /// Statements in the document.
    statements: usize,
    /// Statements kept, one per artifact they are on.
    recorded: usize,
    /// Notices that took a decision now.
    notices: usize,
    skipped: Vec<Skipped>,
    /// Vulnerabilities no record names yet: kept, they apply when one is
    /// published.
    no_record: Vec<String>,
}

/// Imports an OpenVEX (v0.2.0) or CycloneDX VEX document: each statement
/// that applies is kept on the artifacts of yours it names and covers
/// their subtrees — your open notices there of the records it names (by
/// id or alias) take its decision (`not_affected` ← OpenVEX
/// `not_affected`, CycloneDX `not_affected`/`false_positive`;
/// `acknowledged` ← `affected`, `under_investigation`, `exploitable`,
/// `in_triage`) and notices that appear there later are born with it and
/// not sent. `fixed`/`resolved` are skipped (a fix is read from
/// inventories). A document that is not VEX is 422; statements that
/// cannot apply are listed under `skipped`.
#[utoipa::path(post, path = "/v1/vex", tag = "notices",
    params(ImportQuery),
    request_body(content = Object, description = "An OpenVEX or CycloneDX VEX document"),
    responses((status = 200, body = VexImport), Errors))]
pub async fn import_vex(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<VexImport>> {
    let t = super::caller_tenant(&p, "VEX is imported")?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected a JSON object",
        ));
    }
    let doc = patchline_formats::vex::parse_value(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))?;
    let format = doc.format.as_str().to_string();
    let done = with_engine(&st, move |e| {
        let subtree = q.scope != Some(Scope::Artifact);
        Ok(e.import_vex(t, &doc, q.artifact.as_deref(), subtree)?)
    })
    .await?;
    Ok(Json(VexImport {
        format,
        statements: done.statements,
        recorded: done.recorded,
        notices: done.notices,
        skipped: done
            .skipped
            .into_iter()
            .map(|(at, reason)| Skipped { at, reason })
            .collect(),
        no_record: done.no_record,
    }))
}

/// The two export formats.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Openvex,
    Cyclonedx,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `openvex` (the default) or `cyclonedx`.
    format: Option<ExportFormat>,
}

/// Your decisions as a VEX document: every notice of yours you
/// acknowledged or stated not affected (one statement per record and
/// decision, naming its artifacts). OpenVEX gets OpenVEX's justifications
/// (`not_affected`; an acknowledgement is `under_investigation`);
/// CycloneDX gets CycloneDX's states and justifications (`not_affected`;
/// `in_triage`). A justification given in the other format's words is
/// translated (the table is in the README); the detail goes along
/// (`impact_statement`/`status_notes`, `analysis.detail`).
#[utoipa::path(get, path = "/v1/vex", tag = "notices",
    params(ExportQuery),
    responses((status = 200, body = Object, description = "An OpenVEX or CycloneDX document"), Errors))]
pub async fn export_vex(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let t = super::caller_tenant(&p, "VEX is exported")?;
    let format = match q.format.unwrap_or(ExportFormat::Openvex) {
        ExportFormat::Openvex => VexFormat::OpenVex,
        ExportFormat::Cyclonedx => VexFormat::CycloneDx,
    };
    // One export at a time on a node; the tenant's decided notices, page
    // by page (watched ones are other tenants' decisions: left out), the
    // readers' connection released for a moment between pages, so other
    // reads and the readiness probe go on meanwhile.
    let _running = st.exports.try_acquire().map_err(|_| {
        ApiError::rate_limited("a VEX export is running on this node: try again in a few seconds")
    })?;
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        if after > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let page = with_reader(&st, move |r| Ok(r.notices_after(t, after, 1000)?)).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for n in page {
            if n.tenant == t
                && matches!(
                    n.state,
                    NoticeState::NotAffected | NoticeState::Acknowledged
                )
            {
                if rows.len() == EXPORT_MAX {
                    return Err(ApiError::too_large(format!(
                        "more than {EXPORT_MAX} decisions: an export carries at most that many"
                    )));
                }
                rows.push(n);
            }
        }
    }
    if rows.is_empty() && format == VexFormat::OpenVex {
        // OpenVEX has no document without a statement.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "no decision to export: an OpenVEX document needs at least one statement \
             (a CycloneDX export of none is valid)",
        ));
    }
    let tenant_name = st.view.names().tenant(t).to_string();
    let decisions = with_engine(&st, move |e| {
        let mut decisions = Vec::with_capacity(rows.len());
        for n in rows {
            if n.advisory.0 as usize >= e.db().len() || n.artifact.0 as usize >= e.catalog().len() {
                continue;
            }
            let record = e.db().get(n.advisory);
            // Every name the import reads as the record's: aliases and
            // upstream ids (`UBUNTU-CVE-…` of a USN).
            let aliases = match record {
                patchline_core::Record::Advisory(a) => {
                    let mut names = a.osv.aliases.clone();
                    names.extend(a.osv.upstream.iter().cloned());
                    names.dedup();
                    names
                }
                patchline_core::Record::Failure(_) => Vec::new(),
            };
            decisions.push(Decision {
                vulnerability: record.id().as_str().to_string(),
                aliases,
                artifact: e.catalog().node(n.artifact).id.as_str().to_string(),
                not_affected: n.state == NoticeState::NotAffected,
                justification: match n.state {
                    NoticeState::NotAffected => {
                        n.justification.as_deref().and_then(Justification::parse)
                    }
                    _ => None,
                },
                // An acknowledgement's note was kept as its justification
                // before decisions had a detail.
                detail: match n.state {
                    NoticeState::Acknowledged => n.detail.or(n.justification),
                    _ => n.detail,
                },
                at: rfc3339(n.updated_at_ms),
            });
        }
        Ok(decisions)
    })
    .await?;
    let now = rfc3339(patchline_engine::now_ms());
    let tool = ("patchline", env!("CARGO_PKG_VERSION"));
    let doc = match format {
        VexFormat::OpenVex => patchline_formats::vex::openvex_document(
            &decisions,
            &format!("urn:uuid:{}", uuid4()),
            &tenant_name,
            &now,
            &format!("{} {}", tool.0, tool.1),
        ),
        VexFormat::CycloneDx => patchline_formats::vex::cyclonedx_document(
            &decisions,
            &format!("urn:uuid:{}", uuid4()),
            &now,
            tool,
        ),
    };
    Ok(Json(doc))
}

/// A random RFC 4122 version 4 UUID.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    // Without randomness, a fixed id is still a valid one.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A VEX statement kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    artifact: String,
    /// The vulnerability's name (what it matches), then its aliases.
    vulnerability: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    /// The packages it is about (lower-case names; empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    packages: Vec<String>,
    /// `subtree` or `artifact`.
    scope: &'static str,
    /// `not_affected` or `acknowledged`.
    state: NoticeState,
    #[serde(skip_serializing_if = "Option::is_none")]
    justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    made_at: String,
}

/// A page of statements.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementPage {
    statements: Vec<StatementView>,
    /// The cursor of the next page (`after`); the end is a page with no
    /// statements.
    next: i64,
}

/// Your VEX statements kept (each on an artifact, covering its subtree or
/// itself), in the order first made, page by page.
#[utoipa::path(get, path = "/v1/vex/statements", tag = "notices",
    params(super::notices::CursorQuery),
    responses((status = 200, body = StatementPage), Errors))]
pub async fn list_statements(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<super::notices::CursorQuery>,
) -> ApiResult<Json<StatementPage>> {
    let t = super::caller_tenant(&p, "VEX statements are listed")?;
    let after = super::bounded("after", q.after, 0, i64::MAX, 0)?;
    let after = usize::try_from(after).unwrap_or(usize::MAX);
    let limit = super::bounded("limit", q.limit, 1, 1000, 100)?;
    with_engine(&st, move |e| {
        let page = e.service().vex.of_tenant(t, after, limit);
        let next = i64::try_from(page.last().map_or(after, |(i, _)| *i)).unwrap_or(i64::MAX);
        let statements = page
            .into_iter()
            .filter(|(_, r)| (r.artifact.0 as usize) < e.catalog().len())
            .map(|(_, r)| StatementView {
                artifact: e.catalog().node(r.artifact).id.as_str().to_string(),
                vulnerability: r.names[0].clone(),
                aliases: r.names[1..].to_vec(),
                packages: r.packages.clone(),
                scope: if r.subtree { "subtree" } else { "artifact" },
                state: r.state,
                justification: r.justification.clone(),
                detail: r.detail.clone(),
                made_at: rfc3339(r.at_ms),
            })
            .collect();
        Ok(Json(StatementPage { statements, next }))
    })
    .await
}

/// `POST /v1/vex/withdraw`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    artifact: String,
    /// The statement's vulnerability name, as listed.
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    vulnerability: String,
    /// Its packages, as listed (none: a statement about every package).
    #[serde(default)]
    #[schema(max_items = 1000)]
    packages: Vec<String>,
}

/// Whether a statement was withdrawn.
#[derive(Debug, Serialize, ToSchema)]
pub struct Withdrawn {
    withdrawn: bool,
}

/// Withdraws one of your VEX statements: notices that appear later are no
/// longer born with its decision. Decisions it made stay (a tenant's
/// `not_affected` is final). 404 when you keep no such statement.
#[utoipa::path(post, path = "/v1/vex/withdraw", tag = "notices",
    request_body = Withdraw,
    responses((status = 200, body = Withdrawn), Errors))]
pub async fn withdraw(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    body: Bytes,
) -> ApiResult<Json<Withdrawn>> {
    let t = super::caller_tenant(&p, "VEX statements are withdrawn")?;
    let req: Withdraw = super::parse_json(&body)?;
    if req.packages.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 packages"));
    }
    with_engine(&st, move |e| {
        if e.withdraw_vex(t, &req.artifact, &req.vulnerability, &req.packages)? {
            Ok(Json(Withdrawn { withdrawn: true }))
        } else {
            Err(ApiError::not_found(
                "VEX statement",
                &format!("on {} about {}", req.artifact, req.vulnerability),
            ))
        }
    })
    .await
}
