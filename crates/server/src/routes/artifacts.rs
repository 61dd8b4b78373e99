//! The lineage catalog: artifacts, their lineage, failures published on
//! them, and the paged list.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::state::Engine;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use patchline_core::advisory::Failure;
use patchline_core::doc::ArtifactDoc;
use patchline_core::timestamp::{format_unix, parse_rfc3339};
use patchline_core::{AdvisoryId, Kind, Mode, Published, Relation, Visibility};
use patchline_engine::BatchItem;
use patchline_engine::report::TreeNode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{KindCounts, created_or_ok, parse_json, require_publisher, with_engine};
use crate::auth::{Principal, new_id};
use crate::error::{ApiError, ApiResult, Errors};
use crate::state::{AppState, Bucket};

/// The artifact JSON (one line of `patchline import artifacts` too).
/// Documents the contract; the body is read by the engine's own parser.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ArtifactBody {
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    id: String,
    kind: Kind,
    /// The owner: the token's tenant (an admin may name one).
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: Option<String>,
    /// At most 256 bytes (longer names are truncated).
    name: Option<String>,
    /// The artifact it derives from (own or public).
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    parent: Option<String>,
    /// Omitted: the one relation that fits the kinds.
    relation: Option<Relation>,
    visibility: Option<Visibility>,
    /// At most 64, keys ≤ 128 bytes, values ≤ 1024 bytes.
    labels: Option<BTreeMap<String, String>>,
    /// Package URLs: the artifact's own inventory (`[]`: own and empty).
    #[schema(inline, value_type = Option<Vec<super::schema::Purl>>)]
    components: Option<Vec<String>>,
    /// An inline CycloneDX or SPDX JSON document.
    sbom: Option<serde_json::Value>,
    /// Failure ids this artifact (and its subtree) has fixed.
    #[schema(inline, value_type = Option<Vec<super::schema::Id>>)]
    fixes: Option<Vec<String>>,
    /// The artifact this one is the patched successor of: same kind, same
    /// owner (an admin may declare any); chains allowed, cycles refused.
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    supersedes: Option<String>,
    /// The distribution (`debian-12`) for purls without one.
    distro: Option<String>,
}

/// An artifact as the caller may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactView {
    id: String,
    kind: Kind,
    tenant: String,
    name: Option<String>,
    /// `(private)` when the caller may not see it.
    parent: Option<String>,
    relation: Option<Relation>,
    visibility: Visibility,
    labels: BTreeMap<String, String>,
    fixes: Vec<String>,
    /// The artifact it is the patched successor of (`(private)` when the
    /// caller may not see it).
    #[serde(skip_serializing_if = "Option::is_none")]
    supersedes: Option<String>,
    /// Components of its effective inventory.
    components: u64,
    own_inventory: bool,
    /// Open records affecting it (its owner only).
    #[serde(skip_serializing_if = "Option::is_none")]
    affected_by: Option<Vec<String>>,
    /// The level of each record of `affected_by` that states one
    /// (README, "Severity and CI gates"; unrated records are left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    affected_by_severity: Option<BTreeMap<String, patchline_core::notice::Severity>>,
    /// What the request carried that deserves a look (unknown fields,
    /// skipped SBOM components...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    /// Kept with its own inventory: the SBOM components its import skipped
    /// and the components whose version cannot be ordered, each with its
    /// place and reason (its owner only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    inventory_warnings: Vec<String>,
}

/// `?strict=true` on `POST /v1/artifacts` and `PUT /v1/artifacts/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Reject an inline SBOM at its first component that cannot be read
    /// (invalid purl, no version, a version its ecosystem cannot order)
    /// instead of skipping it with a warning.
    #[serde(default)]
    strict: bool,
}

pub fn artifact_view(e: &Engine, a: patchline_core::ArtIdx, p: &Principal) -> ArtifactView {
    let c = e.catalog();
    let n = c.node(a);
    let actor = p.actor();
    let owner = c.owns(&actor, a);
    let inventory_warnings = if owner {
        n.warnings.iter().map(|w| w.to_string()).collect()
    } else {
        Vec::new()
    };
    let records: Option<Vec<&patchline_core::Record>> = owner.then(|| {
        patchline_core::propagate::check_artifact(c, e.db(), a)
            .iter()
            .map(|m| e.db().get(m.advisory))
            .collect()
    });
    let affected_by = records
        .as_ref()
        .map(|rs| rs.iter().map(|r| r.id().to_string()).collect());
    let affected_by_severity = records.as_ref().map(|rs| {
        rs.iter()
            .filter_map(|r| Some((r.id().to_string(), r.severity()?)))
            .collect()
    });
    ArtifactView {
        id: n.id.to_string(),
        kind: n.kind,
        tenant: c.tenant_id(n.tenant).to_string(),
        name: n.name.as_deref().map(str::to_string),
        parent: n
            .parent
            .map(|x| patchline_engine::report::shown_id(c, &actor, x)),
        relation: n.relation,
        visibility: n.visibility,
        labels: n.labels.clone(),
        fixes: n.fixes.iter().map(|f| f.to_string()).collect(),
        supersedes: n
            .supersedes
            .map(|x| patchline_engine::report::shown_id(c, &actor, x)),
        components: c.effective_components(a).len() as u64,
        own_inventory: n.inventory.is_some(),
        affected_by,
        affected_by_severity,
        warnings: Vec::new(),
        inventory_warnings,
    }
}

async fn put_artifact(
    st: Arc<AppState>,
    p: Principal,
    body: Bytes,
    mode: Mode,
    path_id: Option<String>,
    strict: bool,
) -> ApiResult<Response> {
    let doc = ArtifactDoc::parse(
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(id) = &path_id
        && &doc.id != id
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("the body's id {:?} is not the path's {id:?}", doc.id),
        ));
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
        .into_spec_with(owner.as_ref(), strict)
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
            // Nodes of a deployment share the budget (in PostgreSQL): this
            // node's bucket is no fuller than the deployment's, so a tenant
            // spreading its probes over the nodes gets one more probe per
            // node at most, not the whole budget again on each (found from
            // outside).
            let shared = e
                .take_budget(&format!("conflicts:{}", e.catalog().tenant_id(t)), per_min)
                .ok()
                .flatten();
            let mut buckets = st2.conflicts.lock().unwrap_or_else(|e| e.into_inner());
            let bucket = buckets.entry(t).or_insert_with(|| Bucket::full(per_min));
            bucket.tokens -= 1.0;
            if let Some(left) = shared {
                bucket.tokens = bucket.tokens.min(left);
            }
        }
        let report = applied?;
        let a = e
            .catalog()
            .lookup(item.spec.id.as_str())
            .ok_or_else(|| ApiError::internal("artifact vanished"))?;
        let mut view = artifact_view(e, a, &p);
        view.warnings = warnings;
        Ok(created_or_ok(report.created > 0, view))
    })
    .await
}

/// Creates an artifact (the same content again is a no-op: 200).
#[utoipa::path(post, path = "/v1/artifacts", tag = "artifacts",
    params(ImportQuery),
    request_body = ArtifactBody,
    responses((status = 201, body = ArtifactView), (status = 200, body = ArtifactView, description = "Already there, identical"), Errors))]
pub async fn create_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    put_artifact(st, p, body, Mode::Create, None, q.strict).await
}

/// Creates or replaces an artifact (re-parent, re-inventory).
#[utoipa::path(put, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id (the body's)"), ImportQuery),
    request_body = ArtifactBody,
    responses((status = 201, body = ArtifactView), (status = 200, body = ArtifactView), Errors))]
pub async fn upsert_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    put_artifact(st, p, body, Mode::Upsert, Some(id), q.strict).await
}

/// One artifact (own or public).
#[utoipa::path(get, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id")),
    responses((status = 200, body = ArtifactView), Errors))]
pub async fn get_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<ArtifactView>> {
    with_engine(&st, move |e| {
        let a = e
            .catalog()
            .visible(&id, &p.actor())
            .ok_or_else(|| ApiError::not_found("artifact", &id))?;
        Ok(Json(artifact_view(e, a, &p)))
    })
    .await
}

/// Removes an artifact (leaves only): its notices are remediated.
#[utoipa::path(delete, path = "/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id")),
    responses((status = 204, description = "Removed"), Errors))]
pub async fn delete_artifact(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    with_engine(&st, move |e| {
        e.remove(&[id.as_str()], &p.actor())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /v1/artifacts/{id}/failures`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFailure {
    /// Default: a new `FAIL_…` id.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    id: Option<String>,
    /// Longer than 1 KiB: truncated.
    #[schema(pattern = r"\S")]
    summary: String,
    #[serde(default)]
    details: Option<String>,
    /// `none`, `low`, `medium`, `high` or `critical` (a feed's words such
    /// as `moderate` or `important` are read too); anything else is a 422.
    #[serde(default)]
    severity: Option<String>,
    /// RFC 3339; default now; at most 5 minutes ahead.
    #[serde(default)]
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: bool,
}

/// What publishing a record did.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    New,
    Updated,
    Unchanged,
    /// Older than the stored version: ignored.
    Stale,
}

impl From<Published> for Outcome {
    fn from(o: Published) -> Outcome {
        match o {
            Published::New(_) => Outcome::New,
            Published::Updated(_) => Outcome::Updated,
            Published::Unchanged(_) => Outcome::Unchanged,
            Published::Stale(_) => Outcome::Stale,
        }
    }
}

/// A failure as published.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailurePublished {
    id: String,
    outcome: Outcome,
    /// Artifacts it affects now.
    affected: u64,
}

/// Publishes a failure of an artifact the caller owns (publishers); it
/// reaches every descendant that does not declare it fixed.
#[utoipa::path(post, path = "/v1/artifacts/{id}/failures", tag = "artifacts",
    params(("id" = String, Path, description = "The failed artifact")),
    request_body = NewFailure,
    responses((status = 201, body = FailurePublished), (status = 200, body = FailurePublished), Errors))]
pub async fn publish_failure(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
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
        .unwrap_or_else(|| format_unix(st.now_ms() / 1000));
    let modified = parse_rfc3339(&modified_text)
        .ok_or_else(|| ApiError::bad_request("modified must be an RFC 3339 timestamp"))?;
    // A word no level reads would leave the failure unrated: past every
    // severity filter and gate but `unknown`.
    if let Some(word) = &req.severity
        && patchline_core::notice::Severity::parse_word(word).is_none()
    {
        // 422: the body's form is right, its meaning is not.
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "severity must be none, low, medium, high or critical",
        ));
    }
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
        let affected = e.impact(outcome.idx()).artifact_count() as u64;
        Ok(created_or_ok(
            matches!(outcome, Published::New(_)),
            FailurePublished {
                id: id.to_string(),
                outcome: outcome.into(),
                affected,
            },
        ))
    })
    .await
}

// ----- reads -----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ArtifactsQuery {
    /// Only this tenant's.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{1,256}$")]
    tenant: Option<String>,
    #[serde(default)]
    kind: Option<Kind>,
    /// `key=value`.
    #[serde(default)]
    #[param(pattern = r"^[^=]+=.*$")]
    label: Option<String>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    #[param(pattern = r"^[A-Za-z0-9._:/@+~=,-]{0,256}$")]
    after: Option<String>,
}

/// Most artifacts or records per page of a list.
pub const LIST_PAGE_MAX: usize = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactPage {
    artifacts: Vec<ArtifactView>,
    /// `after` of the next page; null at the end.
    next: Option<String>,
}

/// The artifacts the caller may see (its own and public ones; admins:
/// all), in creation order, filtered, paged.
#[utoipa::path(get, path = "/v1/artifacts", tag = "artifacts",
    params(ArtifactsQuery),
    responses((status = 200, body = ArtifactPage), Errors))]
pub async fn list_artifacts(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<ArtifactsQuery>,
) -> ApiResult<Json<ArtifactPage>> {
    let limit = super::bounded("limit", q.limit, 1, LIST_PAGE_MAX, 100)?;
    let label = match &q.label {
        Some(l) => Some(
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::bad_request("label is key=value"))?,
        ),
        None => None,
    };
    // Every parameter is checked before any answer, the empty one for an
    // unknown tenant included (a malformed cursor answered 200 with an
    // empty list there, found by the API conformance run).
    super::id_cursor(&q.after)?;
    if let Some(t) = &q.tenant
        && patchline_core::TenantId::new(t.as_str()).is_err()
    {
        return Err(ApiError::bad_request(format!("tenant {t:?} is not an id")));
    }
    with_engine(&st, move |e| {
        let actor = p.actor();
        let c = e.catalog();
        // An unknown tenant: 404 for an admin; for a tenant, an empty list,
        // exactly as for a tenant whose artifacts are all private (whether
        // a tenant exists is not the caller's business).
        let tenant = match &q.tenant {
            Some(t) => match (c.tenant_idx(t), p.is_admin()) {
                (Some(x), _) => Some(x),
                (None, true) => return Err(ApiError::not_found("tenant", t)),
                (None, false) => {
                    return Ok(Json(ArtifactPage {
                        artifacts: Vec::new(),
                        next: None,
                    }));
                }
            },
            None => None,
        };
        let start = match super::id_cursor(&q.after)? {
            Some(after) => {
                c.visible(after, &actor)
                    .ok_or_else(|| ApiError::not_found("artifact", after))?
                    .0 as usize
                    + 1
            }
            None => 0,
        };
        let mut artifacts = Vec::new();
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
            if artifacts.len() == limit {
                next = artifacts.last().map(|v: &ArtifactView| v.id.clone());
                break;
            }
            artifacts.push(artifact_view(e, a, &p));
        }
        Ok(Json(ArtifactPage { artifacts, next }))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LineageQuery {
    /// Most nodes in `tree` (default 200, at most 10,000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 10000)]
    max_nodes: Option<usize>,
}

/// Most nodes of one lineage answer.
pub const LINEAGE_NODES_MAX: usize = 10_000;

/// An artifact's lineage as the caller may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lineage {
    artifact: String,
    /// Parent first, then up to the root (`(private)` where hidden).
    ancestors: Vec<String>,
    /// Descendants the caller may see, per kind.
    descendants: KindCounts,
    tree: TreeNode,
}

/// Ancestors, descendants per kind and the subtree of an artifact.
#[utoipa::path(get, path = "/v1/artifacts/{id}/lineage", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id"), LineageQuery),
    responses((status = 200, body = Lineage), Errors))]
pub async fn lineage(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> ApiResult<Json<Lineage>> {
    let max_nodes = super::bounded("max_nodes", q.max_nodes, 1, LINEAGE_NODES_MAX, 200)?;
    with_engine(&st, move |e| {
        let actor = p.actor();
        let c = e.catalog();
        let a = c
            .visible(&id, &actor)
            .ok_or_else(|| ApiError::not_found("artifact", &id))?;
        let ancestors = c
            .ancestors(a)
            .map(|x| patchline_engine::report::shown_id(c, &actor, x))
            .collect();
        let counts = patchline_engine::report::visible_subtree_counts(c, a, &actor);
        Ok(Json(Lineage {
            artifact: id,
            ancestors,
            descendants: counts.into(),
            tree: patchline_engine::report::lineage_tree(c, a, &actor, max_nodes),
        }))
    })
    .await
}

/// Who would inherit a failure of this artifact that has not happened
/// yet: its live descendants by kind and how many tenants own them
/// (counts across tenants: for the artifact's owner and admins).
#[utoipa::path(get, path = "/v1/artifacts/{id}/exposure", tag = "artifacts",
    params(("id" = String, Path, description = "Artifact id")),
    responses((status = 200, body = patchline_engine::report::ExposureDoc), Errors))]
pub async fn exposure(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    _: Query<super::NoQuery>,
) -> ApiResult<Json<patchline_engine::report::ExposureDoc>> {
    with_engine(&st, move |e| {
        let actor = p.actor();
        let c = e.catalog();
        let a = c
            .visible(&id, &actor)
            .ok_or_else(|| ApiError::not_found("artifact", &id))?;
        // Counts across tenants below an artifact: its owner's (and
        // admins') to read.
        if !c.owns(&actor, a) {
            return Err(ApiError::forbidden(
                "only the artifact's owner (or an admin) reads its exposure",
            ));
        }
        Ok(Json(patchline_engine::report::exposure_doc(c, &actor, a)))
    })
    .await
}
