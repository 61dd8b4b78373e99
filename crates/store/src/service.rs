//! The service's durable state beside the catalog: tenants' roles, hashed
//! tokens, subscriptions, watches, notices (one per record and affected
//! artifact, with their remediation history) and the delivery queue.
//!
//! Rows are written through [`Outbox`] in the same transaction as the
//! catalog and records they follow from (a notice is durable before any
//! channel sees it); queue workers and readers use their own connections
//! ([`SqliteQueue`], [`SqliteReader`]) on the same file.

use std::path::Path;

use patchline_core::notice::{
    DeliveryState, Grouping, NoticeState, Purpose, RemediationCause, SubscriptionState,
};
use patchline_core::remedy::{Action, RootCause};
use patchline_core::{AdvIdx, ArtIdx, TenantIdx};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::{DB_FILE, SecretKeys, StoreError};

pub(crate) const SERVICE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenant_roles (tenant INTEGER PRIMARY KEY, roles TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    tenant INTEGER NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    minted_by TEXT
);
CREATE TABLE IF NOT EXISTS record_owners (record INTEGER PRIMARY KEY, tenant INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS id_prefixes (prefix TEXT PRIMARY KEY, tenant INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    tenant INTEGER NOT NULL,
    channel TEXT NOT NULL,
    filter TEXT NOT NULL,
    secrets TEXT NOT NULL,
    state TEXT NOT NULL,
    disabled_reason TEXT,
    rate_per_s INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    grouping TEXT NOT NULL DEFAULT 'artifact',
    digest TEXT
);
CREATE TABLE IF NOT EXISTS digest_items (
    subscription TEXT NOT NULL,
    notice INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (subscription, notice)
);
CREATE TABLE IF NOT EXISTS watches (tenant INTEGER NOT NULL, artifact INTEGER NOT NULL, PRIMARY KEY (tenant, artifact));
CREATE TABLE IF NOT EXISTS vex_statements (
    tenant INTEGER NOT NULL,
    artifact INTEGER NOT NULL,
    name TEXT NOT NULL,
    packages TEXT NOT NULL,
    names TEXT NOT NULL,
    subtree INTEGER NOT NULL,
    state TEXT NOT NULL,
    justification TEXT,
    detail TEXT,
    at INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    PRIMARY KEY (tenant, artifact, name, packages)
);
CREATE TABLE IF NOT EXISTS notice_groups (
    id INTEGER PRIMARY KEY,
    advisory INTEGER NOT NULL,
    components TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY,
    advisory INTEGER NOT NULL,
    artifact INTEGER NOT NULL,
    tenant INTEGER NOT NULL,
    state TEXT NOT NULL,
    justification TEXT,
    grp INTEGER NOT NULL,
    path BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    reminders INTEGER NOT NULL DEFAULT 0,
    reminded_at INTEGER NOT NULL,
    remediated_by TEXT,
    root INTEGER,
    detail TEXT,
    UNIQUE (advisory, artifact)
);
CREATE TABLE IF NOT EXISTS notice_roots (
    id INTEGER PRIMARY KEY,
    tenant INTEGER NOT NULL,
    advisory INTEGER NOT NULL,
    introduced_by INTEGER NOT NULL,
    step INTEGER NOT NULL,
    action TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    waits_for INTEGER,
    onto INTEGER,
    UNIQUE (tenant, advisory, introduced_by, step, action)
);
-- The roots a change of one artifact can touch (`root_plans_near`).
CREATE INDEX IF NOT EXISTS notice_roots_step ON notice_roots (step);
CREATE INDEX IF NOT EXISTS notice_roots_waits_for ON notice_roots (waits_for);
CREATE INDEX IF NOT EXISTS notice_roots_onto ON notice_roots (onto);
CREATE INDEX IF NOT EXISTS notices_tenant ON notices (tenant, id);
CREATE INDEX IF NOT EXISTS notices_artifact ON notices (artifact);
CREATE INDEX IF NOT EXISTS notices_due ON notices (reminded_at) WHERE state IN ('affected', 'notified');
CREATE TABLE IF NOT EXISTS notice_events (
    seq INTEGER PRIMARY KEY,
    notice INTEGER NOT NULL,
    advisory INTEGER NOT NULL,
    state TEXT NOT NULL,
    at INTEGER NOT NULL,
    cause TEXT
);
CREATE INDEX IF NOT EXISTS notice_events_advisory ON notice_events (advisory, at);
CREATE TABLE IF NOT EXISTS patch_notices (
    id INTEGER PRIMARY KEY,
    tenant INTEGER NOT NULL,
    record INTEGER NOT NULL,
    successor INTEGER NOT NULL,
    doc TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS patch_notices_tenant ON patch_notices (tenant, id);
CREATE INDEX IF NOT EXISTS patch_notices_successor ON patch_notices (successor);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    subscription TEXT NOT NULL,
    purpose TEXT NOT NULL,
    notices BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_status INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at);
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription, state);
";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A new notice. What artifacts share (the affected components, where
/// each was introduced, the fix) is stored once per group; a notice keeps
/// its artifact's lineage path as artifact indexes.
#[derive(Debug, Clone)]
pub struct NoticeRow {
    pub id: i64,
    pub advisory: AdvIdx,
    pub artifact: ArtIdx,
    pub tenant: TenantIdx,
    pub state: NoticeState,
    pub group: i64,
    pub path: Vec<u32>,
    pub at_ms: i64,
    /// The root cause it is grouped under ([`RootRow`]).
    pub root: Option<i64>,
}

/// A root cause that grouped notices share: (tenant, record, top-most
/// `introduced_by`, remedy step). Its id comes from the notices' sequence
/// (a grouped notice's `notice_id`), so an id names a notice or a root,
/// never both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRow {
    pub id: i64,
    pub advisory: AdvIdx,
    pub cause: RootCause,
    pub at_ms: i64,
    /// The upstream artifact whose successor the step moves onto (a
    /// rebase's or a relaunch's parent).
    pub waits_for: Option<ArtIdx>,
    /// That successor, once one exists that the tenant may see and the
    /// record does not affect.
    pub onto: Option<ArtIdx>,
}

/// The plan of the roots of (tenant, record, step, action): what the step
/// waits for and the successor it moves onto. Read by
/// `CatalogStore::root_plans_near`; written (both columns, every root of
/// the key) when a change of the catalog changed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RootPlan {
    pub tenant: TenantIdx,
    pub advisory: AdvIdx,
    pub step: ArtIdx,
    pub action: Action,
    pub waits_for: Option<ArtIdx>,
    pub onto: Option<ArtIdx>,
}

/// A root cause's owner and record, and its notices (id, state), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMembers {
    pub tenant: TenantIdx,
    pub advisory: AdvIdx,
    pub members: Vec<RootMember>,
}

/// One notice of a root cause (of its record, or of a record that agrees
/// with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootMember {
    pub id: i64,
    pub advisory: AdvIdx,
    pub artifact: ArtIdx,
    pub state: NoticeState,
}

/// The root cause of a stored notice, as rendering needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRoot {
    pub id: i64,
    /// The record that made it (notices of records that agree with it
    /// may share it).
    pub advisory: AdvIdx,
    pub introduced_by: ArtIdx,
    pub step: ArtIdx,
    pub action: Action,
    pub waits_for: Option<ArtIdx>,
    pub onto: Option<ArtIdx>,
}

/// The shared part of notices: the text of `patchline_delivery::GroupDoc`
/// (`{"v":1,"components":[{"purl"?, "introduced_by": artifact index,
/// "fixed"?}]}`; rows written before it hold the bare list). The store
/// keeps it as given and never reads it.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: i64,
    pub advisory: AdvIdx,
    pub components: String,
}

/// A patch notice: a patched successor announced to one tenant, for one
/// record and root cause. Its id comes from the notices' sequence (one id
/// space for every notice). `doc` is the text of
/// `patchline_delivery::PatchDoc` (what it clears, the tenant's plan,
/// artifact and record indexes): the store keeps it as given and never
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRow {
    pub id: i64,
    pub tenant: TenantIdx,
    pub record: AdvIdx,
    pub successor: ArtIdx,
    pub doc: String,
    pub at_ms: i64,
}

/// A notice about an artifact as the engine reconciles it: its record,
/// state, root cause and lineage path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactNotice {
    pub id: i64,
    pub advisory: AdvIdx,
    pub state: NoticeState,
    pub root: Option<i64>,
    pub path: Vec<u32>,
}

/// An open notice whose lineage changed under it (its artifact, or one
/// above, re-parented or rebuilt) and still applies: its new group, path
/// and root cause. Not a state change (no history event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeMove {
    pub id: i64,
    pub group: i64,
    pub path: Vec<u32>,
    pub root: Option<i64>,
}

/// A tenant's VEX statement on one of its artifacts, which covers the
/// artifact's subtree (the tenant's artifacts in it): notices of a record
/// named by `names` there take the decision, now and when they appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexRow {
    pub tenant: TenantIdx,
    pub artifact: ArtIdx,
    /// The vulnerability's name first (the key with tenant, artifact and
    /// packages), then its aliases.
    pub names: Vec<String>,
    /// The packages the statement is about (lower-case names, a binary
    /// package's source package too); empty: every package of the
    /// artifact.
    pub packages: Vec<String>,
    /// Covers the artifact's subtree (else the artifact alone).
    pub subtree: bool,
    /// `NotAffected` or `Acknowledged`.
    pub state: NoticeState,
    pub justification: Option<String>,
    pub detail: Option<String>,
    pub at_ms: i64,
    /// Its place in the import that made it (of statements made at the
    /// same time, the later one wins).
    pub ord: u32,
}

impl VexRow {
    /// A list of names or packages as stored: one per line (ids and
    /// package names have no line breaks).
    pub fn lines(list: &[String]) -> String {
        list.join("\n")
    }

    /// [`VexRow::lines`] read back.
    pub fn from_lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }
}

/// A state change of an existing notice.
#[derive(Debug, Clone)]
pub struct NoticeChange {
    pub id: i64,
    pub advisory: AdvIdx,
    pub state: NoticeState,
    pub justification: Option<String>,
    /// The free text of a tenant's decision (acknowledged, not affected).
    pub detail: Option<String>,
    pub at_ms: i64,
    /// A reopened notice's new group, path and root cause.
    pub regroup: Option<(i64, Vec<u32>, Option<i64>)>,
    /// With `Remediated`: what did it, when the engine knows (the notice
    /// keeps the document until it changes again; its history event keeps
    /// the cause, which progress counts).
    pub remediated_by: Option<Remediated>,
}

/// What remediated a notice: the cause progress counts, and the text of
/// `patchline_delivery::RemediatedBy` (the step: action, artifact, onto),
/// which the store keeps as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remediated {
    pub cause: RemediationCause,
    pub doc: String,
}

/// A new delivery: a batch of notices for one subscription.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub subscription: String,
    pub purpose: Purpose,
    pub notices: Vec<i64>,
    pub next_at_ms: i64,
    pub at_ms: i64,
    /// Recorded straight into the dead letters (its subscription is
    /// disabled): replayed when the subscription is enabled again.
    pub dead: bool,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    pub tenant: TenantIdx,
    /// JSON of `notice::Channel`.
    pub channel: String,
    /// JSON of `notice::Filter`.
    pub filter: String,
    /// JSON list of `{"secret", "not_after_ms"?}`.
    pub secrets: String,
    pub state: SubscriptionState,
    pub rate_per_s: u32,
    pub created_at_ms: i64,
    pub grouping: Grouping,
    /// A digest subscription's schedule and last window end: the text of
    /// `patchline_delivery::digest::Digest`, kept as given.
    pub digest: Option<String>,
}

/// A group of a digest subscription's notices still open: its root cause
/// and how many of its notices routed to the subscription are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenGroup {
    pub root: StoredRoot,
    pub advisory: AdvIdx,
    pub open: u64,
}

/// What a digest's window holds: the notices routed to the subscription in
/// it or closed or acknowledged in it (the first `limit`, oldest first),
/// how many there are in all, and how many of the subscription's notices
/// are open now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestWindow {
    pub notices: Vec<i64>,
    pub total: u64,
    pub open: u64,
}

/// An API token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub tenant: TenantIdx,
    pub hash: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// The token that minted this one (`None`: the admin did); revoking a
    /// token revokes what it minted.
    pub minted_by: Option<String>,
}

/// Service changes written with a catalog batch.
#[derive(Debug, Default, Clone)]
pub struct Outbox {
    pub roles: Vec<(TenantIdx, String, i64)>,
    pub tokens: Vec<TokenRow>,
    pub revoked_tokens: Vec<(String, i64)>,
    /// New records and the tenant that published them (records of the
    /// operator have no row).
    pub record_owners: Vec<(AdvIdx, TenantIdx)>,
    /// Reserved id prefixes: (prefix, Some((publisher, at))) reserves,
    /// (prefix, None) releases.
    pub prefixes: Vec<(String, Option<(TenantIdx, i64)>)>,
    pub subscriptions: Vec<SubscriptionRow>,
    pub watches: Vec<(TenantIdx, ArtIdx)>,
    /// VEX statements of tenants on their artifacts (a later one with the
    /// same (tenant, artifact, name) replaces the earlier).
    pub vex: Vec<VexRow>,
    /// VEX statements withdrawn: (tenant, artifact, name, packages).
    pub vex_withdrawn: Vec<(TenantIdx, ArtIdx, String, Vec<String>)>,
    pub groups: Vec<GroupRow>,
    /// New root causes of grouped notices.
    pub roots: Vec<RootRow>,
    /// Plans of existing root causes that changed (a step re-parented, a
    /// successor announced, rebuilt, hidden or removed).
    pub root_plans: Vec<RootPlan>,
    pub notices: Vec<NoticeRow>,
    pub notice_changes: Vec<NoticeChange>,
    pub notice_moves: Vec<NoticeMove>,
    /// (notice, at): a reminder was scheduled.
    pub reminded: Vec<(i64, i64)>,
    pub deliveries: Vec<DeliveryRow>,
    /// Patch notices (their deliveries carry their ids, purpose `patch`).
    pub patches: Vec<PatchRow>,
    /// (digest subscription, notice, at): a notice routed to a digest
    /// subscription, sent with its next digest.
    pub digest_items: Vec<(String, i64, i64)>,
    /// The reading tenants of the notices this change created or reopened
    /// (not rows: written into the change log for the other nodes' event
    /// streams).
    pub readers: Vec<(TenantIdx, i64)>,
}

impl Outbox {
    /// Whether the change touches the state every node keeps in memory
    /// besides the catalog (roles, tokens, owners, prefixes,
    /// subscriptions, watches).
    pub fn touches_service(&self) -> bool {
        !(self.roles.is_empty()
            && self.tokens.is_empty()
            && self.revoked_tokens.is_empty()
            && self.record_owners.is_empty()
            && self.prefixes.is_empty()
            && self.subscriptions.is_empty()
            && self.watches.is_empty()
            && self.vex.is_empty()
            && self.vex_withdrawn.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.tokens.is_empty()
            && self.revoked_tokens.is_empty()
            && self.record_owners.is_empty()
            && self.prefixes.is_empty()
            && self.subscriptions.is_empty()
            && self.watches.is_empty()
            && self.vex.is_empty()
            && self.vex_withdrawn.is_empty()
            && self.groups.is_empty()
            && self.roots.is_empty()
            && self.root_plans.is_empty()
            && self.notices.is_empty()
            && self.notice_changes.is_empty()
            && self.notice_moves.is_empty()
            && self.reminded.is_empty()
            && self.deliveries.is_empty()
            && self.patches.is_empty()
            && self.digest_items.is_empty()
    }
}

pub(crate) fn path_blob(path: &[u32]) -> Vec<u8> {
    path.iter().flat_map(|i| i.to_le_bytes()).collect()
}

pub(crate) fn blob_path(blob: &[u8]) -> Vec<u32> {
    blob.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub(crate) fn ids_blob(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

pub(crate) fn blob_ids(blob: &[u8]) -> Vec<i64> {
    blob.chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

pub(crate) fn write_outbox(
    tx: &Transaction<'_>,
    out: &Outbox,
    keys: &SecretKeys,
) -> Result<(), StoreError> {
    if out.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO tenant_roles (tenant, roles, created_at) VALUES (?1, ?2, ?3)",
        )
        .map_err(db_err)?;
    for (t, roles, at) in &out.roles {
        stmt.execute(params![t.0, roles, at]).map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO tokens (id, tenant, hash, created_at, minted_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db_err)?;
    for t in &out.tokens {
        stmt.execute(params![
            t.id,
            t.tenant.0,
            t.hash,
            t.created_at_ms,
            t.minted_by
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1")
        .map_err(db_err)?;
    for (id, at) in &out.revoked_tokens {
        stmt.execute(params![id, at]).map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached("INSERT OR REPLACE INTO record_owners (record, tenant) VALUES (?1, ?2)")
        .map_err(db_err)?;
    for (r, t) in &out.record_owners {
        stmt.execute(params![r.0, t.0]).map_err(db_err)?;
    }
    for (prefix, owner) in &out.prefixes {
        match owner {
            Some((t, at)) => tx.execute(
                "INSERT OR REPLACE INTO id_prefixes (prefix, tenant, created_at) VALUES (?1, ?2, ?3)",
                params![prefix, t.0, at],
            ),
            None => tx.execute("DELETE FROM id_prefixes WHERE prefix = ?1", [prefix]),
        }
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO subscriptions
             (id, tenant, channel, filter, secrets, state, disabled_reason, rate_per_s, created_at, grouping, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(db_err)?;
    for s in &out.subscriptions {
        stmt.execute(params![
            s.id,
            s.tenant.0,
            s.channel,
            s.filter,
            keys.seal(&s.secrets, &s.id)?,
            s.state.to_stored().0,
            s.state.to_stored().1,
            s.rate_per_s,
            s.created_at_ms,
            s.grouping.as_str(),
            s.digest
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO digest_items (subscription, notice, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (subscription, notice) DO UPDATE SET at = excluded.at",
        )
        .map_err(db_err)?;
    for (sub, notice, at) in &out.digest_items {
        stmt.execute(params![sub, notice, at]).map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached("INSERT OR IGNORE INTO watches (tenant, artifact) VALUES (?1, ?2)")
        .map_err(db_err)?;
    for (t, a) in &out.watches {
        stmt.execute(params![t.0, a.0]).map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO vex_statements
               (tenant, artifact, name, packages, names, state, justification, detail, at,
                subtree, ord)
             VALUES (?1, ?2, ?3, ?9, ?4, ?5, ?6, ?7, ?8, ?10, ?11)",
        )
        .map_err(db_err)?;
    for v in &out.vex {
        stmt.execute(params![
            v.tenant.0,
            v.artifact.0,
            v.names[0],
            VexRow::lines(&v.names),
            v.state.as_str(),
            v.justification,
            v.detail,
            v.at_ms,
            VexRow::lines(&v.packages),
            v.subtree,
            v.ord
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "DELETE FROM vex_statements
             WHERE tenant = ?1 AND artifact = ?2 AND name = ?3 AND packages = ?4",
        )
        .map_err(db_err)?;
    for (t, a, name, packages) in &out.vex_withdrawn {
        stmt.execute(params![t.0, a.0, name, VexRow::lines(packages)])
            .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO patch_notices (id, tenant, record, successor, doc, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db_err)?;
    for p in &out.patches {
        stmt.execute(params![
            p.id,
            p.tenant.0,
            p.record.0,
            p.successor.0,
            p.doc,
            p.at_ms
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached("INSERT INTO notice_groups (id, advisory, components) VALUES (?1, ?2, ?3)")
        .map_err(db_err)?;
    for g in &out.groups {
        stmt.execute(params![g.id, g.advisory.0, g.components])
            .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO notice_roots (id, tenant, advisory, introduced_by, step, action, created_at, waits_for, onto)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    for r in &out.roots {
        stmt.execute(params![
            r.id,
            r.cause.tenant.0,
            r.advisory.0,
            r.cause.introduced_by.0,
            r.cause.step.0,
            r.cause.action.as_str(),
            r.at_ms,
            r.waits_for.map(|a| a.0),
            r.onto.map(|a| a.0)
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "UPDATE notice_roots SET waits_for = ?5, onto = ?6
             WHERE tenant = ?1 AND advisory = ?2 AND step = ?3 AND action = ?4",
        )
        .map_err(db_err)?;
    for o in &out.root_plans {
        stmt.execute(params![
            o.tenant.0,
            o.advisory.0,
            o.step.0,
            o.action.as_str(),
            o.waits_for.map(|a| a.0),
            o.onto.map(|a| a.0)
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO notices (id, advisory, artifact, tenant, state, grp, path, created_at, updated_at, reminded_at, root)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8, ?9)",
        )
        .map_err(db_err)?;
    let mut event = tx
        .prepare_cached(
            "INSERT INTO notice_events (notice, advisory, state, at, cause) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db_err)?;
    for n in &out.notices {
        // The creation is the notice row itself (`created_at`): no event
        // row, which halves the writes of a million-notice fan-out.
        stmt.execute(params![
            n.id,
            n.advisory.0,
            n.artifact.0,
            n.tenant.0,
            n.state.as_str(),
            n.group,
            path_blob(&n.path),
            n.at_ms,
            n.root
        ])
        .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "UPDATE notices SET state = ?2, justification = ?3, updated_at = ?4,
               grp = coalesce(?5, grp), path = coalesce(?6, path),
               reminded_at = CASE WHEN ?5 IS NULL THEN reminded_at ELSE ?4 END,
               remediated_by = ?7,
               root = CASE WHEN ?5 IS NULL THEN root ELSE ?8 END,
               detail = ?9
             WHERE id = ?1",
        )
        .map_err(db_err)?;
    for c in &out.notice_changes {
        let (grp, path, root) = match &c.regroup {
            Some((g, p, root)) => (Some(*g), Some(path_blob(p)), *root),
            None => (None, None, None),
        };
        stmt.execute(params![
            c.id,
            c.state.as_str(),
            c.justification,
            c.at_ms,
            grp,
            path,
            c.remediated_by.as_ref().map(|r| r.doc.as_str()),
            root,
            c.detail
        ])
        .map_err(db_err)?;
        event
            .execute(params![
                c.id,
                c.advisory.0,
                c.state.as_str(),
                c.at_ms,
                c.remediated_by.as_ref().map(|r| r.cause.as_str())
            ])
            .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached("UPDATE notices SET grp = ?2, path = ?3, root = ?4 WHERE id = ?1")
        .map_err(db_err)?;
    for m in &out.notice_moves {
        stmt.execute(params![m.id, m.group, path_blob(&m.path), m.root])
            .map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "UPDATE notices SET reminders = reminders + 1, reminded_at = ?2 WHERE id = ?1",
        )
        .map_err(db_err)?;
    for (id, at) in &out.reminded {
        stmt.execute(params![id, at]).map_err(db_err)?;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, subscription, purpose, notices, state, next_at, created_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?7, ?5, ?6, CASE WHEN ?7 = 'dead' THEN 'subscription disabled' END)",
        )
        .map_err(db_err)?;
    for d in &out.deliveries {
        stmt.execute(params![
            d.id,
            d.subscription,
            d.purpose.as_str(),
            ids_blob(&d.notices),
            d.next_at_ms,
            d.at_ms,
            if d.dead { "dead" } else { "pending" }
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

/// Everything the engine keeps in memory about the service.
#[derive(Debug, Default, Clone)]
pub struct ServiceState {
    pub roles: Vec<(TenantIdx, String)>,
    pub tokens: Vec<TokenRow>,
    pub record_owners: Vec<(AdvIdx, TenantIdx)>,
    pub prefixes: Vec<(String, TenantIdx)>,
    /// A random id of the installation (see `SqliteStore::installation`).
    pub installation: String,
    pub subscriptions: Vec<SubscriptionRow>,
    pub watches: Vec<(TenantIdx, ArtIdx)>,
    pub vex: Vec<VexRow>,
    pub next_notice_id: i64,
    pub next_delivery_id: i64,
    pub next_group_id: i64,
}

/// Seals every subscription's secrets under the current key (a key was
/// added, or rotated); a no-op without a key and nothing sealed.
pub(crate) fn reseal_secrets(conn: &Connection, keys: &SecretKeys) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare("SELECT id, secrets FROM subscriptions")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut stale = Vec::new();
    for (id, stored) in rows {
        let (plain, reseal) = keys.open(&stored, &id)?;
        if reseal {
            stale.push((id, plain));
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    for (id, plain) in stale {
        tx.execute(
            "UPDATE subscriptions SET secrets = ?2 WHERE id = ?1",
            params![id, keys.seal(&plain, &id)?],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

pub(crate) fn load_service(
    conn: &Connection,
    keys: &SecretKeys,
) -> Result<ServiceState, StoreError> {
    let mut state = ServiceState::default();
    let mut stmt = conn
        .prepare("SELECT tenant, roles FROM tenant_roles")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((TenantIdx(r.get(0)?), r.get::<_, String>(1)?)))
        .map_err(db_err)?;
    for r in rows {
        state.roles.push(r.map_err(db_err)?);
    }
    let mut stmt = conn
        .prepare("SELECT id, tenant, hash, created_at, revoked_at, minted_by FROM tokens ORDER BY created_at, id")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                id: r.get(0)?,
                tenant: TenantIdx(r.get(1)?),
                hash: r.get(2)?,
                created_at_ms: r.get(3)?,
                revoked_at_ms: r.get(4)?,
                minted_by: r.get(5)?,
            })
        })
        .map_err(db_err)?;
    for r in rows {
        state.tokens.push(r.map_err(db_err)?);
    }
    let mut stmt = conn
        .prepare("SELECT record, tenant FROM record_owners")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((AdvIdx(r.get(0)?), TenantIdx(r.get(1)?))))
        .map_err(db_err)?;
    for r in rows {
        state.record_owners.push(r.map_err(db_err)?);
    }
    let mut stmt = conn
        .prepare("SELECT prefix, tenant FROM id_prefixes ORDER BY prefix")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, TenantIdx(r.get(1)?))))
        .map_err(db_err)?;
    for r in rows {
        state.prefixes.push(r.map_err(db_err)?);
    }
    state.installation = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'installation'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?
        .unwrap_or_default();
    let mut stmt = conn
        .prepare(
            "SELECT id, tenant, channel, filter, secrets, state, disabled_reason, rate_per_s, created_at, grouping, digest
             FROM subscriptions ORDER BY created_at, id",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(SubscriptionRow {
                id: r.get(0)?,
                tenant: TenantIdx(r.get(1)?),
                channel: r.get(2)?,
                filter: r.get(3)?,
                secrets: r.get(4)?,
                state: {
                    let (state, reason): (String, Option<String>) = (r.get(5)?, r.get(6)?);
                    SubscriptionState::from_stored(&state, reason.as_deref()).ok_or_else(|| {
                        rusqlite::Error::FromSqlConversionFailure(
                            5,
                            rusqlite::types::Type::Text,
                            format!("subscription state {state:?}").into(),
                        )
                    })?
                },
                rate_per_s: r.get(7)?,
                created_at_ms: r.get(8)?,
                grouping: Grouping::parse(&r.get::<_, String>(9)?).unwrap_or(Grouping::Artifact),
                digest: r.get(10)?,
            })
        })
        .map_err(db_err)?;
    for r in rows {
        let mut row = r.map_err(db_err)?;
        row.secrets = keys.open(&row.secrets, &row.id)?.0;
        state.subscriptions.push(row);
    }
    let mut stmt = conn
        .prepare("SELECT tenant, artifact FROM watches")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((TenantIdx(r.get(0)?), ArtIdx(r.get(1)?))))
        .map_err(db_err)?;
    for r in rows {
        state.watches.push(r.map_err(db_err)?);
    }
    let mut stmt = conn
        .prepare(
            "SELECT tenant, artifact, names, state, justification, detail, at, packages,
                    subtree, ord
             FROM vex_statements ORDER BY at, ord, tenant, artifact, name, packages",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, u32>(9)?,
            ))
        })
        .map_err(db_err)?;
    for r in rows {
        let (t, a, names, st, justification, detail, at_ms, packages, subtree, ord) =
            r.map_err(db_err)?;
        let decision = NoticeState::parse(&st)
            .ok_or_else(|| StoreError::Corrupt(format!("VEX statement with state {st:?}")))?;
        state.vex.push(VexRow {
            tenant: TenantIdx(t),
            artifact: ArtIdx(a),
            names: VexRow::from_lines(&names),
            packages: VexRow::from_lines(&packages),
            subtree,
            state: decision,
            justification,
            detail,
            at_ms,
            ord,
        });
    }
    state.next_notice_id = conn
        .query_row(
            "SELECT max((SELECT coalesce(max(id), 0) FROM notices),
                        (SELECT coalesce(max(id), 0) FROM patch_notices),
                        (SELECT coalesce(max(id), 0) FROM notice_roots)) + 1",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    state.next_delivery_id = conn
        .query_row("SELECT coalesce(max(id), 0) + 1 FROM deliveries", [], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    state.next_group_id = conn
        .query_row(
            "SELECT coalesce(max(id), 0) + 1 FROM notice_groups",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    Ok(state)
}

/// A notice as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotice {
    pub id: i64,
    pub advisory: AdvIdx,
    pub artifact: ArtIdx,
    pub tenant: TenantIdx,
    pub state: NoticeState,
    pub justification: Option<String>,
    /// The free text of the tenant's decision.
    pub detail: Option<String>,
    /// The group's stored document (see [`GroupRow`]).
    pub components: String,
    /// The lineage path, artifact indexes from the introduction down.
    pub path: Vec<u32>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub reminders: i64,
    /// The text of `patchline_delivery::RemediatedBy`, while remediated by
    /// a known step.
    pub remediated_by: Option<String>,
    /// The root cause it is grouped under (notices written before grouping
    /// have none: each is a group of its own).
    pub root: Option<StoredRoot>,
}

const NOTICE_COLUMNS: &str = "n.id, n.advisory, n.artifact, n.tenant, n.state, n.justification, g.components, n.path, n.created_at, n.updated_at, n.reminders, n.remediated_by, r.id, r.introduced_by, r.step, r.action, r.waits_for, r.onto, n.detail, r.advisory";
const NOTICE_FROM: &str =
    "notices n JOIN notice_groups g ON g.id = n.grp LEFT JOIN notice_roots r ON r.id = n.root";

/// The root columns from `at` (id, introduced_by, step, action, waits_for,
/// onto) and its record at `advisory_at`, where the row has a root.
fn root_from_row(
    r: &rusqlite::Row<'_>,
    at: usize,
    advisory_at: usize,
) -> rusqlite::Result<Option<StoredRoot>> {
    let Some(id) = r.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    let action: String = r.get(at + 3)?;
    let (introduced_by, step) = (ArtIdx(r.get(at + 1)?), ArtIdx(r.get(at + 2)?));
    let waits_for = r.get::<_, Option<u32>>(at + 4)?.map(ArtIdx);
    let onto = r.get::<_, Option<u32>>(at + 5)?.map(ArtIdx);
    let advisory = AdvIdx(r.get(advisory_at)?);
    Ok(Action::parse(&action).map(|action| StoredRoot {
        id,
        advisory,
        introduced_by,
        step,
        action,
        waits_for,
        onto,
    }))
}

fn notice_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredNotice> {
    let state: String = r.get(4)?;
    Ok(StoredNotice {
        id: r.get(0)?,
        advisory: AdvIdx(r.get(1)?),
        artifact: ArtIdx(r.get(2)?),
        tenant: TenantIdx(r.get(3)?),
        state: NoticeState::parse(&state).unwrap_or(NoticeState::Affected),
        justification: r.get(5)?,
        detail: r.get(18)?,
        components: r.get(6)?,
        path: blob_path(&r.get::<_, Vec<u8>>(7)?),
        created_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
        reminders: r.get(10)?,
        remediated_by: r.get(11)?,
        root: root_from_row(r, 12, 19)?,
    })
}

/// Notice queries the engine needs inside its own connection.
pub(crate) fn notices_of_advisory(
    conn: &Connection,
    adv: AdvIdx,
) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, artifact, state FROM notices WHERE advisory = ?1")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([adv.0], |r| {
            let s: String = r.get(2)?;
            Ok((
                r.get(0)?,
                ArtIdx(r.get(1)?),
                NoticeState::parse(&s).unwrap_or(NoticeState::Affected),
            ))
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// A record's notices on these artifacts (one indexed lookup each).
pub(crate) fn notices_on(
    conn: &Connection,
    adv: AdvIdx,
    artifacts: &[ArtIdx],
) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, state FROM notices WHERE advisory = ?1 AND artifact = ?2")
        .map_err(db_err)?;
    let mut out = Vec::new();
    for &a in artifacts {
        let row = stmt
            .query_row(params![adv.0, a.0], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
            .map_err(db_err)?;
        if let Some((id, state)) = row {
            out.push((
                id,
                a,
                NoticeState::parse(&state).unwrap_or(NoticeState::Affected),
            ));
        }
    }
    Ok(out)
}

pub(crate) fn notices_of_artifact(
    conn: &Connection,
    a: ArtIdx,
) -> Result<Vec<ArtifactNotice>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, advisory, state, root, path FROM notices WHERE artifact = ?1")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([a.0], |r| {
            let s: String = r.get(2)?;
            Ok(ArtifactNotice {
                id: r.get(0)?,
                advisory: AdvIdx(r.get(1)?),
                state: NoticeState::parse(&s).unwrap_or(NoticeState::Affected),
                root: r.get(3)?,
                path: blob_path(&r.get::<_, Vec<u8>>(4)?),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// Notices by id, oldest first (one query per hundred ids); ids that do
/// not exist are left out.
pub(crate) fn notices_by_ids(
    conn: &Connection,
    ids: &[i64],
) -> Result<Vec<StoredNotice>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(100) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM} WHERE n.id IN ({placeholders}) ORDER BY n.id"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(chunk.iter()), notice_from_row)
            .map_err(db_err)?;
        for r in rows {
            out.push(r.map_err(db_err)?);
        }
    }
    Ok(out)
}

pub(crate) fn notice_by_id(conn: &Connection, id: i64) -> Result<Option<StoredNotice>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM} WHERE n.id = ?1"
    ))
    .map_err(db_err)?
    .query_row([id], notice_from_row)
    .optional()
    .map_err(db_err)
}

/// The ids of these root causes of a record, where they exist (one
/// indexed lookup each).
pub(crate) fn root_ids(
    conn: &Connection,
    adv: AdvIdx,
    causes: &[RootCause],
) -> Result<Vec<Option<i64>>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM notice_roots WHERE tenant = ?1 AND advisory = ?2
               AND introduced_by = ?3 AND step = ?4 AND action = ?5",
        )
        .map_err(db_err)?;
    causes
        .iter()
        .map(|c| {
            stmt.query_row(
                params![
                    c.tenant.0,
                    adv.0,
                    c.introduced_by.0,
                    c.step.0,
                    c.action.as_str()
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
        .collect()
}

/// The plans of the roots whose step, `waits_for` or `onto` is one of
/// `arts` (of one record, when given), one per (tenant, record, step,
/// action), in that order.
pub(crate) fn root_plans_near(
    conn: &Connection,
    arts: &[ArtIdx],
    adv: Option<AdvIdx>,
) -> Result<Vec<RootPlan>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    // One statement per column and chunk of ids (a JSON list), each id an
    // index probe.
    for column in ["step", "waits_for", "onto"] {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT tenant, advisory, step, action, waits_for, onto FROM notice_roots
                 WHERE {column} IN (SELECT value FROM json_each(?1))
                   AND (?2 IS NULL OR advisory = ?2)"
            ))
            .map_err(db_err)?;
        for chunk in arts.chunks(10_000) {
            let list = serde_json::to_string(&chunk.iter().map(|a| a.0).collect::<Vec<u32>>())
                .map_err(|e| StoreError::Corrupt(format!("root ids: {e}")))?;
            let rows = stmt
                .query_map(params![list, adv.map(|a| a.0)], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<u32>>(4)?,
                        r.get::<_, Option<u32>>(5)?,
                    ))
                })
                .map_err(db_err)?;
            for row in rows {
                let (tenant, advisory, step, action, waits_for, onto) = row.map_err(db_err)?;
                let action = Action::parse(&action).ok_or_else(|| {
                    StoreError::Corrupt(format!("notice_roots: action {action:?}"))
                })?;
                out.insert(RootPlan {
                    tenant: TenantIdx(tenant),
                    advisory: AdvIdx(advisory),
                    step: ArtIdx(step),
                    action,
                    waits_for: waits_for.map(ArtIdx),
                    onto: onto.map(ArtIdx),
                });
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// A root cause's owner and record, and its notices (id, state).
pub(crate) fn root_members(
    conn: &Connection,
    root: i64,
) -> Result<Option<RootMembers>, StoreError> {
    let head = conn
        .prepare_cached("SELECT tenant, advisory FROM notice_roots WHERE id = ?1")
        .map_err(db_err)?
        .query_row([root], |r| Ok((TenantIdx(r.get(0)?), AdvIdx(r.get(1)?))))
        .optional()
        .map_err(db_err)?;
    let Some((tenant, advisory)) = head else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, advisory, artifact, state FROM notices WHERE root = ?1 ORDER BY id",
        )
        .map_err(db_err)?;
    let members = stmt
        .query_map([root], |r| {
            let s: String = r.get(3)?;
            Ok(RootMember {
                id: r.get(0)?,
                advisory: AdvIdx(r.get(1)?),
                artifact: ArtIdx(r.get(2)?),
                state: NoticeState::parse(&s).unwrap_or(NoticeState::Affected),
            })
        })
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    Ok(Some(RootMembers {
        tenant,
        advisory,
        members,
    }))
}

/// How many artifacts with an open notice (affected, notified,
/// acknowledged) each root cause has now (an artifact counts once where
/// records that agree share the root).
pub(crate) fn root_open_counts(
    conn: &Connection,
    roots: &[i64],
) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT count(DISTINCT artifact) FROM notices WHERE root = ?1
               AND state IN ('affected', 'notified', 'acknowledged')",
        )
        .map_err(db_err)?;
    roots
        .iter()
        .map(|&root| {
            let n: i64 = stmt.query_row([root], |r| r.get(0)).map_err(db_err)?;
            Ok((root, n.max(0) as u64))
        })
        .collect()
}

/// A root cause's notices after `after`, oldest first.
pub(crate) fn root_notices_after(
    conn: &Connection,
    root: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredNotice>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
             WHERE n.root = ?1 AND n.id > ?2 ORDER BY n.id LIMIT ?3"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![root, after, limit as i64], notice_from_row)
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// See [`DigestWindow`]: the window `[from_ms, to_ms)`.
pub(crate) fn digest_window(
    conn: &Connection,
    subscription: &str,
    tenant: TenantIdx,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<DigestWindow, StoreError> {
    const IN_WINDOW: &str = "d.subscription = ?1 AND ((d.at >= ?2 AND d.at < ?3)
        OR (n.updated_at >= ?2 AND n.updated_at < ?3
            AND n.state IN ('acknowledged', 'not_affected', 'remediated')))";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT n.id FROM digest_items d JOIN notices n ON n.id = d.notice
             WHERE {IN_WINDOW} ORDER BY n.id LIMIT ?4"
        ))
        .map_err(db_err)?;
    let notices = stmt
        .query_map(params![subscription, from_ms, to_ms, limit as i64], |r| {
            r.get(0)
        })
        .map_err(db_err)?
        .collect::<Result<Vec<i64>, _>>()
        .map_err(db_err)?;
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM digest_items d JOIN notices n ON n.id = d.notice WHERE {IN_WINDOW}"
        ))
        .map_err(db_err)?
        .query_row(params![subscription, from_ms, to_ms], |r| r.get(0))
        .map_err(db_err)?;
    let open: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM digest_items d JOIN notices n ON n.id = d.notice
             WHERE d.subscription = ?1 AND n.tenant = ?2
               AND n.state IN ('affected', 'notified', 'acknowledged')",
        )
        .map_err(db_err)?
        .query_row(params![subscription, tenant.0], |r| r.get(0))
        .map_err(db_err)?;
    Ok(DigestWindow {
        notices,
        total: total.max(0) as u64,
        open: open.max(0) as u64,
    })
}

/// The groups of a digest subscription's open notices (the tenant's own),
/// by root id, the first `limit`.
pub(crate) fn digest_open(
    conn: &Connection,
    subscription: &str,
    tenant: TenantIdx,
    limit: usize,
) -> Result<Vec<OpenGroup>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT r.id, r.introduced_by, r.step, r.action, r.waits_for, r.onto, r.advisory, count(DISTINCT n.artifact)
             FROM digest_items d JOIN notices n ON n.id = d.notice
               JOIN notice_roots r ON r.id = n.root
             WHERE d.subscription = ?1 AND n.tenant = ?2
               AND n.state IN ('affected', 'notified', 'acknowledged')
             GROUP BY r.id ORDER BY r.id LIMIT ?3",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![subscription, tenant.0, limit as i64], |r| {
            let root = root_from_row(r, 0, 6)?;
            let n: i64 = r.get(7)?;
            Ok(root.map(|root| (root, AdvIdx(r.get(6).unwrap_or_default()), n)))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some((root, advisory, n)) = r.map_err(db_err)? {
            out.push(OpenGroup {
                root,
                advisory,
                open: n.max(0) as u64,
            });
        }
    }
    Ok(out)
}

/// Open notices due for a reminder: delivered or not, unacknowledged, last
/// reminded (or created) before `before_ms`.
pub(crate) fn due_reminders(
    conn: &Connection,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<StoredNotice>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
             WHERE n.state IN ('affected', 'notified') AND n.reminded_at < ?1
             ORDER BY n.reminded_at LIMIT ?2"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![before_ms, limit as i64], notice_from_row)
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.execute_batch(crate::sqlite::PRAGMAS).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(crate::sqlite::STATEMENTS_CACHED);
    Ok(conn)
}

/// The purpose stored in column `i`.
fn purpose_of(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Purpose> {
    let text: String = r.get(i)?;
    Purpose::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("delivery purpose {text:?}").into(),
        )
    })
}

/// A claimed delivery, for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub subscription: String,
    pub purpose: Purpose,
    pub notices: Vec<i64>,
    pub attempts: u32,
    pub created_at_ms: i64,
    /// Which claim of the delivery this is (the shared queue counts
    /// them; the embedded one, which no other process claims from,
    /// answers 0): its result is recorded only while no later claim took
    /// the delivery.
    pub claim: i64,
}

/// What a worker learnt from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub id: i64,
    pub state: DeliveryState,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// For `Failed`: when to retry.
    pub next_at_ms: i64,
    pub at_ms: i64,
    /// Notices that were delivered (their state moves to `notified`).
    pub notices: Vec<i64>,
    /// The claim the attempt was made under ([`Claimed::claim`]).
    pub claim: i64,
}

/// The delivery queue on its own connection.
#[derive(Debug)]
pub struct SqliteQueue {
    conn: Connection,
}

impl SqliteQueue {
    pub fn open(data_dir: &Path) -> Result<SqliteQueue, StoreError> {
        Ok(SqliteQueue {
            conn: open(&data_dir.join(DB_FILE))?,
        })
    }

    fn claim_unsynced(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let tx = self.conn.transaction().map_err(db_err)?;
        let claimed = claim_rows(&tx, now_ms, lease_ms, limit)?;
        tx.commit().map_err(db_err)?;
        Ok(claimed)
    }
}

/// Leases up to `limit` due deliveries, oldest due first (the caller
/// commits).
fn claim_rows(
    tx: &Transaction<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 'in_flight', lease_until = ?2
             WHERE id IN (SELECT id FROM deliveries
                          WHERE state IN ('pending', 'failed') AND next_at <= ?1
                          ORDER BY next_at, id LIMIT ?3)
             RETURNING id, subscription, purpose, notices, attempts, created_at",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![now_ms, now_ms + lease_ms, limit as i64], |r| {
            Ok(Claimed {
                id: r.get(0)?,
                subscription: r.get(1)?,
                purpose: purpose_of(r, 2)?,
                notices: blob_ids(&r.get::<_, Vec<u8>>(3)?),
                attempts: r.get(4)?,
                created_at_ms: r.get(5)?,
                claim: 0,
            })
        })
        .map_err(db_err)?;
    let mut claimed = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Writes attempt results (the caller commits).
fn record_results(tx: &Transaction<'_>, results: &[Finished]) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3,
                   last_error = ?4, next_at = ?5, lease_until = NULL,
                   delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_at END
                 WHERE id = ?1",
        )
        .map_err(db_err)?;
    // The notices delivered in this group, each once (two subscriptions of
    // one tenant may carry the same notice), with when it was delivered.
    let mut seen = std::collections::HashSet::new();
    let mut delivered: Vec<(i64, i64)> = Vec::new();
    for f in results {
        stmt.execute(params![
            f.id,
            f.state.as_str(),
            f.status,
            f.error,
            f.next_at_ms,
            f.at_ms
        ])
        .map_err(db_err)?;
        if f.state == DeliveryState::Delivered {
            delivered.extend(
                f.notices
                    .iter()
                    .filter(|&&n| seen.insert(n))
                    .map(|&n| (n, f.at_ms)),
            );
        }
    }
    if delivered.is_empty() {
        return Ok(());
    }
    // Two statements for the whole group, not two per notice: the ones
    // still `affected` get their history event, then become `notified`.
    let json =
        serde_json::to_string(&delivered).map_err(|e| StoreError::Database(e.to_string()))?;
    const GROUP: &str =
        "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at
                         FROM json_each(?1)";
    tx.prepare_cached(&format!(
        "INSERT INTO notice_events (notice, advisory, state, at)
         SELECT n.id, n.advisory, 'notified', v.at FROM ({GROUP}) v
         JOIN notices n ON n.id = v.id WHERE n.state = 'affected'"
    ))
    .map_err(db_err)?
    .execute([&json])
    .map_err(db_err)?;
    tx.prepare_cached(&format!(
        "UPDATE notices SET state = 'notified', updated_at = v.at FROM ({GROUP}) v
         WHERE notices.id = v.id AND notices.state = 'affected'"
    ))
    .map_err(db_err)?
    .execute([&json])
    .map_err(db_err)?;
    Ok(())
}

impl crate::DeliveryQueue for SqliteQueue {
    /// Puts back deliveries whose lease expired (a worker or the process
    /// died mid-attempt): at-least-once, the receiver may see them twice.
    fn release_expired(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'pending', lease_until = NULL
                 WHERE state = 'in_flight' AND lease_until < ?1",
                [now_ms],
            )
            .map_err(db_err)
    }

    fn renew(&mut self, ids: &[i64], until_ms: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction().map_err(db_err)?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE deliveries SET lease_until = ?2 WHERE id = ?1 AND state = 'in_flight'",
                )
                .map_err(db_err)?;
            for id in ids {
                n += stmt.execute([*id, until_ms]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(n)
    }

    /// Claims up to `limit` due deliveries for `lease_ms`.
    fn claim(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        // A claim is acknowledged to no one: if a crash forgets it, the
        // delivery is due again and sent again (at least once), which is
        // what happens to a remembered lease too, since a process voids
        // every lease at start. So it commits without waiting for the disk;
        // the next durable commit on this connection (a group of results)
        // syncs the log that this commit is part of.
        self.conn
            .execute_batch("PRAGMA synchronous = OFF;")
            .map_err(db_err)?;
        let claimed = self.claim_unsynced(now_ms, lease_ms, limit);
        let restored = self
            .conn
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(db_err);
        let claimed = claimed?;
        restored?;
        Ok(claimed)
    }

    /// Records attempts, in one transaction (group commit).
    fn finish(&mut self, results: &[Finished]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(db_err)?;
        record_results(&tx, results)?;
        tx.commit().map_err(db_err)
    }

    /// Records attempts and claims the next due deliveries in one
    /// transaction: one commit (and one `fsync`, when there are results to
    /// make durable) a round, and the worker's one connection is never
    /// held by a group commit while a claim waits.
    fn finish_and_claim(
        &mut self,
        results: &[Finished],
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        if results.is_empty() {
            return self.claim(now_ms, lease_ms, limit);
        }
        let tx = self.conn.transaction().map_err(db_err)?;
        record_results(&tx, results)?;
        let claimed = if limit > 0 {
            claim_rows(&tx, now_ms, lease_ms, limit)?
        } else {
            Vec::new()
        };
        tx.commit().map_err(db_err)?;
        Ok(claimed)
    }

    /// Dead deliveries of a subscription become pending again.
    fn replay(&mut self, subscription: &str, now_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'pending', next_at = ?2, attempts = 0
                 WHERE subscription = ?1 AND state = 'dead'",
                params![subscription, now_ms],
            )
            .map_err(db_err)
    }

    /// Pending work of a disabled subscription goes to the dead letters.
    fn bury(&mut self, subscription: &str, reason: &str) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?2, lease_until = NULL
                 WHERE subscription = ?1 AND state IN ('pending', 'failed', 'in_flight')",
                params![subscription, reason],
            )
            .map_err(db_err)
    }

    /// Notice bodies by id, for rendering a delivery.
    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        notices_by_ids(&self.conn, ids)
    }

    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError> {
        root_open_counts(&self.conn, roots)
    }

    fn digest_open(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        limit: usize,
    ) -> Result<Vec<OpenGroup>, StoreError> {
        digest_open(&self.conn, subscription, tenant, limit)
    }

    fn patches(&mut self, ids: &[i64]) -> Result<Vec<PatchRow>, StoreError> {
        patches_by_ids(&self.conn, ids)
    }

    /// The earliest time something becomes due, if anything is queued.
    fn next_due(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_at) FROM deliveries WHERE state IN ('pending', 'failed')",
                [],
                |r| r.get(0),
            )
            .map_err(db_err)
    }
}

/// Read-only queries of the API on their own connection.
#[derive(Debug)]
pub struct SqliteReader {
    conn: Connection,
}

/// A delivery as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    pub id: i64,
    pub purpose: Purpose,
    pub notices: Vec<i64>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

impl SqliteReader {
    /// The readers' connection. Its only writes are `notified` marks, which
    /// no answer acknowledges: it commits with `synchronous = NORMAL` (safe
    /// against a process crash; a power loss can only forget the last
    /// marks, and such notices are then delivered or reminded again — at
    /// least once), so that a stream marking each live event does not pay
    /// an fsync per event. Every acknowledged write goes through the
    /// engine's or the queue's connection, with `synchronous = FULL`.
    pub fn open(data_dir: &Path) -> Result<SqliteReader, StoreError> {
        let conn = open(&data_dir.join(DB_FILE))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(db_err)?;
        Ok(SqliteReader { conn })
    }
}

impl crate::NoticeReader for SqliteReader {
    /// Notices a tenant may read (its own, and those about the public
    /// artifacts it watches), after `after_id`, oldest first. Filtered here,
    /// not after the read: a page's cursor then never moves over notices
    /// the reader may not see, so it reveals nothing about them.
    fn notices_after(
        &mut self,
        tenant: TenantIdx,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
                 WHERE n.id > ?2 AND (n.tenant = ?1 OR n.artifact IN (
                     SELECT w.artifact FROM watches w JOIN artifacts a ON a.idx = w.artifact
                     WHERE w.tenant = ?1 AND a.visibility = 1 AND a.removed = 0))
                 ORDER BY n.id LIMIT ?3"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![tenant.0, after_id, limit as i64], notice_from_row)
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        notice_by_id(&self.conn, id)
    }

    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        notices_by_ids(&self.conn, ids)
    }

    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError> {
        root_open_counts(&self.conn, roots)
    }

    fn root_notices_after(
        &mut self,
        root: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        root_notices_after(&self.conn, root, after_id, limit)
    }

    fn patches_after(
        &mut self,
        tenant: Option<TenantIdx>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PatchRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {PATCH_COLUMNS} FROM patch_notices
                 WHERE id > ?2 AND (?1 IS NULL OR tenant = ?1) ORDER BY id LIMIT ?3"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(
                params![tenant.map(|t| t.0), after_id, limit as i64],
                patch_from_row,
            )
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Counts by (artifact kind code, state) of an advisory's notices.
    fn progress_counts(&mut self, adv: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.kind, n.state, count(*) FROM notices n JOIN artifacts a ON a.idx = n.artifact
                 WHERE n.advisory = ?1 GROUP BY a.kind, n.state",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([adv.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// State transitions of an advisory's notices per time bucket.
    fn progress_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bucket, state, count(*) FROM (
                   SELECT (created_at / ?2) * ?2 AS bucket, 'affected' AS state FROM notices WHERE advisory = ?1
                   UNION ALL
                   SELECT (at / ?2) * ?2 AS bucket, state FROM notice_events WHERE advisory = ?1)
                 GROUP BY bucket, state ORDER BY bucket, state",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![adv.0, bucket_ms.max(1)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    fn remediation_counts(&mut self, adv: AdvIdx) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT coalesce(json_extract(remediated_by, '$.cause'), 'unknown') AS cause, count(*)
                 FROM notices WHERE advisory = ?1 AND state = 'remediated'
                 GROUP BY cause ORDER BY cause",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([adv.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    fn remediation_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT (at / ?2) * ?2 AS bucket, cause, count(*) FROM notice_events
                 WHERE advisory = ?1 AND state = 'remediated' AND cause IS NOT NULL
                 GROUP BY bucket, cause ORDER BY bucket, cause",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![adv.0, bucket_ms.max(1)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// A subscription's deliveries, newest first, optionally in one state.
    fn deliveries(
        &mut self,
        subscription: &str,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        let state = state.map(DeliveryState::as_str);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, purpose, notices, state, attempts, next_at, last_status, last_error, created_at, delivered_at
                 FROM deliveries WHERE subscription = ?1 AND (?2 IS NULL OR state = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![subscription, state, limit as i64], |r| {
                Ok(DeliveryInfo {
                    id: r.get(0)?,
                    purpose: purpose_of(r, 1)?,
                    notices: blob_ids(&r.get::<_, Vec<u8>>(2)?),
                    state: {
                        let s: String = r.get(3)?;
                        DeliveryState::parse(&s).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                3,
                                rusqlite::types::Type::Text,
                                format!("delivery state {s:?}").into(),
                            )
                        })?
                    },
                    attempts: r.get(4)?,
                    next_at_ms: r.get(5)?,
                    last_status: r.get(6)?,
                    last_error: r.get(7)?,
                    created_at_ms: r.get(8)?,
                    delivered_at_ms: r.get(9)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Queue depth per state, for metrics.
    fn delivery_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM deliveries GROUP BY state")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Marks notices read through pull or a stream as notified.
    fn mark_notified(&mut self, ids: &[i64], at_ms: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE notices SET state = 'notified', updated_at = ?2 WHERE id = ?1 AND state = 'affected' RETURNING advisory",
                )
                .map_err(db_err)?;
            let mut event = tx
                .prepare_cached("INSERT INTO notice_events (notice, advisory, state, at) VALUES (?1, ?2, 'notified', ?3)")
                .map_err(db_err)?;
            for &id in ids {
                let adv: Option<i64> = stmt
                    .query_row(params![id, at_ms], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                if let Some(adv) = adv {
                    event.execute(params![id, adv, at_ms]).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }
}

const PATCH_COLUMNS: &str = "id, tenant, record, successor, doc, created_at";

fn patch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PatchRow> {
    Ok(PatchRow {
        id: r.get(0)?,
        tenant: TenantIdx(r.get(1)?),
        record: AdvIdx(r.get(2)?),
        successor: ArtIdx(r.get(3)?),
        doc: r.get(4)?,
        at_ms: r.get(5)?,
    })
}

/// Patch notices by id, oldest first; ids that do not exist are left out.
fn patches_by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<PatchRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {PATCH_COLUMNS} FROM patch_notices WHERE id = ?1"
        ))
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = stmt
            .query_row([id], patch_from_row)
            .optional()
            .map_err(db_err)?
        {
            out.push(row);
        }
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}
