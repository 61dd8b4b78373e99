//! A tenant's notices: pages, the live stream, acknowledgements.

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
use patchline_core::TenantIdx;
use patchline_core::notice::{Grouping, NoticeState};
use patchline_delivery::{Entry, NoticeDoc, RecordText, take_record_text};
use patchline_store::StoredNotice;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_json, with_engine, with_reader};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, Errors};
use crate::sse::LiveNotice;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoticesQuery {
    /// Notices after this id (default 0).
    #[serde(default)]
    #[param(minimum = 0)]
    after: Option<i64>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `artifact` (the default here): one entry per (record, artifact);
    /// `grouped`: one entry per root cause in the page (record, top-most
    /// `introduced_by`, remedy step), listing its artifacts.
    #[serde(default)]
    grouping: Option<ReadGrouping>,
}

/// How a page or a stream reads notices (a digest is a subscription's
/// schedule, not a way to read).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadGrouping {
    Artifact,
    Grouped,
}

/// `GET /v1/patches`, `GET /v1/notices/{id}/artifacts` and
/// `GET /v1/vex/statements` (whose cursor is the `next` of a page).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CursorQuery {
    /// After this id (default 0).
    #[serde(default)]
    #[param(minimum = 0)]
    pub(super) after: Option<i64>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub(super) limit: Option<usize>,
}

/// A page of notices as one reader sees them, and the cursor after it.
#[derive(Debug)]
pub struct NoticePage {
    pub docs: Vec<NoticeDoc>,
    /// The stored notice of each of `docs`, in the same order.
    pub rows: Vec<StoredNotice>,
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
    let rows = rows_caught_up(st, move |r| r.notices_after(tenant, after, limit)).await?;
    let (reader, view) = (p.reader(), st.view.clone());
    let (page, seen) = tokio::task::spawn_blocking(move || {
        // Rendered from the delivery view: no engine lock on this path.
        let docs = NoticeDoc::render_all(&rows, &view.names(), reader);
        let mut docs = docs.into_iter().peekable();
        let mut page = NoticePage {
            docs: Vec::new(),
            rows: Vec::new(),
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
                page.rows.push(row.clone());
            }
            page.next = row.id;
            page.scanned += 1;
        }
        (page, seen)
    })
    .await
    .map_err(ApiError::internal)?;
    if !seen.is_empty() {
        let now = st.now_ms();
        with_reader(st, move |r| Ok(r.mark_notified(&seen, now)?)).await?;
    }
    Ok(page)
}

fn reader_tenant(p: &Principal) -> ApiResult<TenantIdx> {
    super::caller_tenant(p, "notices are read")
}

/// A page's or a stream's grouping: `artifact` by default.
fn read_grouping(g: Option<ReadGrouping>) -> ApiResult<Grouping> {
    Ok(match g {
        None | Some(ReadGrouping::Artifact) => Grouping::Artifact,
        Some(ReadGrouping::Grouped) => Grouping::Grouped,
    })
}

/// The page's notices as `grouping` asks: one entry each, or one per root
/// cause (with each group's open notices now, read once).
async fn entries(
    st: &Arc<AppState>,
    p: &Principal,
    grouping: Grouping,
    rows: Vec<StoredNotice>,
    docs: Vec<NoticeDoc>,
) -> ApiResult<Vec<Entry>> {
    if grouping == Grouping::Artifact {
        return Ok(docs.into_iter().map(Entry::Notice).collect());
    }
    let reader = p.reader();
    let roots = patchline_delivery::grouped::roots_of(&rows, reader);
    let open: std::collections::HashMap<i64, u64> = if roots.is_empty() {
        Default::default()
    } else {
        with_reader(st, move |r| Ok(r.root_open_counts(&roots)?))
            .await?
            .into_iter()
            .collect()
    };
    let names = st.view.names();
    Ok(patchline_delivery::grouped::group(
        &rows, docs, &names, reader, &open,
    ))
}

/// A page of a tenant's notices.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notices {
    /// Notices, or (`grouping=grouped`) groups of them.
    notices: Vec<Entry>,
    /// Each record's text, once, by record id.
    records: BTreeMap<String, RecordText>,
    /// The `after` of the next page.
    next: i64,
}

/// A page of the caller's notices (own and watched), oldest first: at most
/// `limit` notices and 8 MiB; each record's summary once under `records`.
/// The caller's own `affected` notices become `notified`.
#[utoipa::path(get, path = "/v1/notices", tag = "notices",
    params(NoticesQuery),
    responses((status = 200, body = Notices), Errors))]
pub async fn list_notices(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<NoticesQuery>,
) -> ApiResult<Json<Notices>> {
    let t = reader_tenant(&p)?;
    let limit = super::bounded("limit", q.limit, 1, st.config.page_max, 100)?;
    let after = super::bounded("after", q.after, 0, i64::MAX, 0)?;
    let grouping = read_grouping(q.grouping)?;
    let mut page = read_notices(&st, &p, t, after, limit, st.config.page_bytes_max).await?;
    let records = take_record_text(&mut page.docs);
    let notices = entries(&st, &p, grouping, page.rows, page.docs).await?;
    Ok(Json(Notices {
        notices,
        records,
        next: page.next,
    }))
}

/// A page of a group's notices.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupNotices {
    /// The group (`notice_id` of a grouped notice).
    group: i64,
    notices: Vec<NoticeDoc>,
    /// The `after` of the next page.
    next: i64,
}

/// The notices of a group (a root cause of the caller's), oldest first:
/// each artifact's notice with its state. A group's `artifacts` list in a
/// message or page stops at 100; this lists them all, page by page.
#[utoipa::path(get, path = "/v1/notices/{id}/artifacts", tag = "notices",
    params(("id" = i64, Path, description = "Group id (a grouped notice's notice_id)"), CursorQuery),
    responses((status = 200, body = GroupNotices), Errors))]
pub async fn group_notices(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<i64>,
    Query(q): Query<CursorQuery>,
) -> ApiResult<Json<GroupNotices>> {
    let limit = super::bounded("limit", q.limit, 1, st.config.page_max, 100)?;
    let after = super::bounded("after", q.after, 0, i64::MAX, 0)?;
    let caller = p.tenant();
    let rows = with_reader(&st, move |r| {
        let rows = r.root_notices_after(id, after, limit)?;
        Ok(rows)
    })
    .await?;
    // A group is its owner's (and an admin's): another tenant's, or no
    // group, reads alike.
    let not_found = || ApiError::not_found("notice group", &id.to_string());
    if rows.is_empty() {
        // An empty page past the end, or no such group: ask which.
        let head = with_reader(&st, move |r| Ok(r.root_notices_after(id, 0, 1)?)).await?;
        match head.first() {
            Some(n) if caller.is_none_or(|t| t == n.tenant) => {}
            _ => return Err(not_found()),
        }
    } else if caller.is_some_and(|t| rows.iter().any(|n| n.tenant != t)) {
        return Err(not_found());
    }
    // At most `page_bytes_max` (at least one notice), like every page.
    let names = st.view.names();
    let docs = NoticeDoc::render_all(&rows, &names, p.reader());
    let (mut notices, mut bytes, mut next) = (Vec::new(), 0usize, after);
    for doc in docs {
        let size = serde_json::to_vec(&doc).map(|v| v.len()).unwrap_or(0);
        if !notices.is_empty() && bytes + size > st.config.page_bytes_max {
            break;
        }
        bytes += size;
        next = doc.notice_id;
        notices.push(doc);
    }
    if notices.is_empty() {
        next = rows.last().map_or(after, |n| n.id);
    }
    Ok(Json(GroupNotices {
        group: id,
        notices,
        next,
    }))
}

/// A page of a tenant's patch notices.
#[derive(Debug, Serialize, ToSchema)]
pub struct Patches {
    patches: Vec<patchline_delivery::PatchNotice>,
    /// The `after` of the next page.
    next: i64,
}

/// A page of the caller's patch notices (patched successors announced to
/// it: what each clears of its artifacts and its remedy plan), oldest
/// first: at most `limit` and 8 MiB. Ids share the notices' sequence.
#[utoipa::path(get, path = "/v1/patches", tag = "notices",
    params(CursorQuery),
    responses((status = 200, body = Patches), Errors))]
pub async fn list_patches(
    State(st): State<Arc<AppState>>,
    p: Principal,
    Query(q): Query<CursorQuery>,
) -> ApiResult<Json<Patches>> {
    let t = super::caller_tenant(&p, "patch notices are read")?;
    let limit = super::bounded("limit", q.limit, 1, st.config.page_max, 100)?;
    let after = super::bounded("after", q.after, 0, i64::MAX, 0)?;
    let rows = patch_rows(&st, t, after, limit).await?;
    let (reader, view, bytes_max) = (p.reader(), st.view.clone(), st.config.page_bytes_max);
    let page = tokio::task::spawn_blocking(move || {
        let names = view.names();
        let mut page = Patches {
            patches: Vec::new(),
            next: after,
        };
        let mut bytes = 0usize;
        for row in &rows {
            if let Some(doc) = patchline_delivery::PatchNotice::render(row, &names, reader) {
                let size = serde_json::to_vec(&doc).map(|v| v.len()).unwrap_or(0);
                if !page.patches.is_empty() && bytes + size > bytes_max {
                    break;
                }
                bytes += size;
                page.patches.push(doc);
            }
            page.next = row.id;
        }
        page
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(page))
}

/// Up to `limit` of a tenant's patch notices after `after`, once this node
/// has applied the changes that made them.
async fn patch_rows(
    st: &Arc<AppState>,
    t: TenantIdx,
    after: i64,
    limit: usize,
) -> ApiResult<Vec<patchline_store::PatchRow>> {
    rows_caught_up(st, move |r| r.patches_after(Some(t), after, limit)).await
}

/// Rows `read` from the store, once this node has applied the changes
/// that made them (a node of a deployment may not have seen them yet:
/// rendering needs their names); 503 `busy` after the wait.
async fn rows_caught_up<T: Send + 'static>(
    st: &Arc<AppState>,
    read: impl FnOnce(
        &mut dyn patchline_store::NoticeReader,
    ) -> Result<Vec<T>, patchline_store::StoreError>
    + Send
    + 'static,
) -> ApiResult<Vec<T>> {
    let shared = st.config.bus.is_some();
    let (rows, need) = with_reader(st, move |r| {
        let rows = read(r)?;
        let need = if shared && !rows.is_empty() {
            r.log_seq()?
        } else {
            0
        };
        Ok((rows, need))
    })
    .await?;
    if need > 0 && !crate::follow::caught_up_to(st, need).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "this node is catching up with the deployment's latest changes; try again",
        ));
    }
    Ok(rows)
}

/// One pass of a stream over the store after `last`: the events to send
/// (notices, or groups, and patch notices, `event: patch`), the cursor
/// after them, and whether more may follow at once. Notices and patch
/// notices share one id sequence: the pass covers ids up to the first
/// full page's end, so a client holding an event's id has everything up
/// to it (per artifact: each event its own id, in id order; grouped:
/// patch notices first under the previous cursor, then the groups).
async fn stream_pass(
    st: &Arc<AppState>,
    p: &Principal,
    t: TenantIdx,
    last: i64,
    page: usize,
    grouping: Grouping,
) -> ApiResult<(Vec<Event>, i64, bool)> {
    let mut batch = read_notices(st, p, t, last, page, usize::MAX).await?;
    let patch_rows = patch_rows(st, t, last, page).await?;
    let notices_full = batch.scanned >= page;
    let patches_full = patch_rows.len() >= page;
    let mut bound = i64::MAX;
    if notices_full {
        bound = bound.min(batch.next);
    }
    if patches_full && let Some(r) = patch_rows.last() {
        bound = bound.min(r.id);
    }
    let more = notices_full || patches_full;
    if bound == i64::MAX {
        bound = patch_rows
            .last()
            .map_or(batch.next, |r| r.id.max(batch.next));
    }
    // Past the bound: read again by the next pass.
    let keep: Vec<bool> = batch.rows.iter().map(|n| n.id <= bound).collect();
    let mut k = keep.iter();
    batch.docs.retain(|_| *k.next().unwrap_or(&false));
    batch.rows.retain(|n| n.id <= bound);
    let patches: Vec<(i64, String)> = {
        let names = st.view.names();
        patch_rows
            .iter()
            .filter(|r| r.id <= bound)
            .filter_map(|r| {
                let doc = patchline_delivery::PatchNotice::render(r, &names, p.reader())?;
                Some((r.id, serde_json::to_string(&doc).ok()?))
            })
            .collect()
    };
    let patch_event = |id: i64, json: &str| {
        Event::default()
            .id(id.to_string())
            .event("patch")
            .data(json)
    };
    let mut events = Vec::new();
    if grouping == Grouping::Grouped {
        for (_, json) in &patches {
            events.push(patch_event(last, json));
        }
        let entries = entries(st, p, grouping, batch.rows, batch.docs).await?;
        events.extend(grouped_events(&entries, bound).ok_or_else(|| ApiError::internal("event"))?);
    } else {
        let mut docs = batch.docs.iter().peekable();
        let mut patches = patches.iter().peekable();
        loop {
            let take_doc = match (docs.peek(), patches.peek()) {
                (Some(d), Some((pid, _))) => d.notice_id < *pid,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_doc {
                let Some(d) = docs.next() else { break };
                events.push(event_of(d).ok_or_else(|| ApiError::internal("event"))?);
            } else {
                let Some((id, json)) = patches.next() else {
                    break;
                };
                events.push(patch_event(*id, json));
            }
        }
    }
    Ok((events, bound.max(last), more))
}

/// The states a tenant sets.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    Acknowledged,
    NotAffected,
}

/// `POST /v1/notices/{id}/ack`.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// `acknowledged` (the default) or `not_affected`.
    #[serde(default)]
    state: Option<AckState>,
    /// With `not_affected` (which needs a justification or a detail):
    /// OpenVEX's `component_not_present`, `vulnerable_code_not_present`,
    /// `vulnerable_code_not_in_execute_path`,
    /// `vulnerable_code_cannot_be_controlled_by_adversary`,
    /// `inline_mitigations_already_exist`, or CycloneDX's
    /// `code_not_present`, `code_not_reachable`, `requires_configuration`,
    /// `requires_dependency`, `requires_environment`,
    /// `protected_by_compiler`, `protected_at_runtime`,
    /// `protected_at_perimeter`, `protected_by_mitigating_control` (kept
    /// as given; VEX exports translate). With `acknowledged`: read as the
    /// detail (the note it was before `detail`).
    #[serde(default)]
    justification: Option<String>,
    /// Free text with the decision (why not affected; what is planned), up
    /// to 1 KiB (cut with the ` …[truncated]` marker past it).
    #[serde(default)]
    detail: Option<String>,
}

/// A group after an acknowledgement: the group with its open notices
/// (up to 100 listed) and how many changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupAcked {
    #[serde(flatten)]
    group: patchline_delivery::GroupedNotice,
    /// Notices of the group this acknowledgement changed.
    changed: usize,
}

/// What an acknowledgement answers: the notice, or the group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AckAnswer {
    Notice(NoticeDoc),
    Group(GroupAcked),
}

/// Acknowledges one of the caller's notices, or states that it does not
/// apply (VEX style, with a justification). The id of a group (a grouped
/// notice's `notice_id`) acknowledges every open notice of it.
#[utoipa::path(post, path = "/v1/notices/{id}/ack", tag = "notices",
    params(("id" = i64, Path, description = "Notice or group id")),
    request_body(content = AckBody, description = "Optional; empty means acknowledged"),
    responses((status = 200, body = AckAnswer), Errors))]
pub async fn ack(
    State(st): State<Arc<AppState>>,
    p: Principal,
    _: Query<super::NoQuery>,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult<Json<AckAnswer>> {
    let req: AckBody = if body.is_empty() {
        AckBody::default()
    } else {
        parse_json(&body)?
    };
    let reader = p.reader();
    let acked = with_engine(&st, move |e| {
        let acked = e.ack(
            p.tenant(),
            id,
            match req.state {
                None | Some(AckState::Acknowledged) => NoticeState::Acknowledged,
                Some(AckState::NotAffected) => NoticeState::NotAffected,
            },
            req.justification,
            req.detail,
        )?;
        Ok(match acked {
            patchline_engine::service::Acked::Notice(n) => {
                let doc = NoticeDoc::render(&n, &e.view().names(), reader)
                    .ok_or_else(|| ApiError::internal("notice body"))?;
                Err(doc)
            }
            patchline_engine::service::Acked::Group {
                root,
                changed,
                members,
                artifacts,
            } => Ok((root, changed, members, artifacts)),
        })
    })
    .await?;
    let (root, changed, listed, artifacts) = match acked {
        Err(doc) => return Ok(Json(AckAnswer::Notice(doc))),
        Ok(group) => group,
    };
    let (rows, open) = with_reader(&st, move |r| {
        Ok((r.notices(&listed)?, r.root_open_counts(&[root])?))
    })
    .await?;
    let names = st.view.names();
    let docs = NoticeDoc::render_all(&rows, &names, reader);
    let open: std::collections::HashMap<i64, u64> = open.into_iter().collect();
    let mut entries = patchline_delivery::grouped::group(&rows, docs, &names, reader, &open);
    match entries.pop() {
        Some(Entry::Grouped(mut group)) if entries.is_empty() => {
            group.artifacts_omitted = artifacts.saturating_sub(group.artifacts.len());
            Ok(Json(AckAnswer::Group(GroupAcked { group, changed })))
        }
        _ => Err(ApiError::internal("group body")),
    }
}

/// Counts a stream for as long as its connection lives: dropped with the
/// response body when the client goes away.
struct StreamGuard {
    st: Arc<AppState>,
    tenant: TenantIdx,
    /// The deployment-wide slot it holds (a node of several).
    slot: Option<i32>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let (Some(slot), Some(slots)) = (self.slot, self.st.stream_slots.clone()) {
            let tenant = self.tenant.0;
            // Off the async threads: it is a database call.
            std::thread::spawn(move || slots.release(tenant, slot));
        }
        self.st.hub.close_stream(self.tenant);
        self.st
            .metrics
            .sse_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Server-sent events, one `notice` event per notice (its id the event
/// id), resumable with `Last-Event-ID` (or `?after=`): the backlog after
/// that id is read from the database, then live notices follow. Ends when
/// its token is revoked or the server stops; at most 100 per tenant.
#[utoipa::path(get, path = "/v1/notices/stream", tag = "notices",
    params(NoticesQuery,
        ("last-event-id" = Option<i64>, Header, description = "Resume after this notice id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: notice`, `id: <notice id>`, `data: <notice JSON>`"), Errors))]
pub async fn stream(
    State(st): State<Arc<AppState>>,
    p: Principal,
    headers: HeaderMap,
    Query(q): Query<NoticesQuery>,
) -> ApiResult<Response> {
    let t = reader_tenant(&p)?;
    let grouping = read_grouping(q.grouping)?;
    // `limit` is a page's: a stream takes it only within bounds (and sends
    // every notice anyway).
    super::bounded("limit", q.limit, 1, st.config.page_max, 100)?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|&v| v >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Last-Event-ID: the id of the last event received (a notice id, 0 or more)",
                )
            })?,
        None => super::bounded("after", q.after, 0, i64::MAX, 0)?,
    };
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
    let mut guard = StreamGuard {
        st: st.clone(),
        tenant: t,
        slot: None,
    };
    // Nodes of a deployment: the tenant's cap holds over all of them.
    if let Some(slots) = st.stream_slots.clone() {
        let max = st.config.streams_per_tenant_max;
        let slot = tokio::task::spawn_blocking(move || slots.acquire(t.0, max))
            .await
            .map_err(ApiError::internal)??;
        match slot {
            Some(slot) => guard.slot = Some(slot),
            None => {
                return Err(ApiError::rate_limited(format!(
                    "this tenant holds {max} open streams over the deployment's nodes; close one first"
                )));
            }
        }
    }
    // Subscribe before reading the backlog so nothing falls in between.
    let live = st.hub.subscribe(t);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(pump(st.clone(), p, t, after, live, tx, grouping));
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

/// The events of a grouped page: one per entry, in the order of their
/// first notice. An entry's event id is the last notice id a client that
/// received it (and those before it) has every notice up to: one less
/// than the next entry's first notice, the page's cursor for the last. A
/// client resuming from it reads no notice twice that it lacks, and may
/// read some of a group it had again (at least once).
fn grouped_events(entries: &[Entry], next: i64) -> Option<Vec<Event>> {
    let first_of = |e: &Entry| -> i64 {
        match e {
            Entry::Notice(n) => n.notice_id,
            Entry::Grouped(g) => {
                // The group's first notice in this page (its members are
                // in page order, the first one listed).
                g.artifacts.first().map_or(g.notice_id, |m| m.notice_id)
            }
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let id = entries.get(i + 1).map_or(next, |n| first_of(n) - 1);
        let json = serde_json::to_string(e).ok()?;
        let event = if matches!(e, Entry::Grouped(_)) {
            "group"
        } else {
            "notice"
        };
        out.push(Event::default().id(id.to_string()).event(event).data(json));
    }
    Some(out)
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

/// How long a stream waits for a store that is unavailable (or a node
/// catching up) before it ends; the client then resumes with
/// `Last-Event-ID`.
const STREAM_STORE_WAIT: Duration = Duration::from_secs(120);

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
    grouping: Grouping,
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
            // A store that is down, or a node still catching up, answers
            // 503: the stream waits and reads again (its keep-alives go on)
            // rather than ending, for as long as the client stays.
            let mut waited = Duration::ZERO;
            let mut pause = Duration::from_millis(100);
            let (events, next, more) = loop {
                match stream_pass(&st, &p, t, last, page, grouping).await {
                    Ok(pass) => break pass,
                    Err(e)
                        if e.status == StatusCode::SERVICE_UNAVAILABLE
                            && waited < STREAM_STORE_WAIT =>
                    {
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = stopping.changed() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        waited += pause;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(_) => return,
                }
            };
            for ev in events {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            last = next;
            if !more {
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
                    // Grouped, or a patch notice: the live notice says
                    // there is news; it is read from the store (the
                    // backlog pass).
                    Ok(n) if grouping == Grouping::Grouped || n.from_store => break,
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
                        let (id, now) = (n.id, st.now_ms());
                        drop(tokio::task::spawn_blocking(move || {
                            if let Ok(mut r) = reader.lock() {
                                let _ = r.mark_notified(&[id], now);
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
