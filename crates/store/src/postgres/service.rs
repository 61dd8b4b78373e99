//! The service's rows in PostgreSQL: the outbox written with each batch,
//! the state loaded at start, secrets resealed under the current key, and
//! the notice queries the store, the queue and the reader share.
//!
//! The semantics are those of `crate::service` (SQLite): rows of one
//! outbox are applied in the same order with the same effect. Only the
//! shape differs: bulk rows go through binary `COPY` and `unnest` arrays
//! instead of one statement per row, and several changes of one row in one
//! outbox are folded into the one update they amount to.

use std::collections::{BTreeMap, HashMap, HashSet};

use ::postgres::binary_copy::BinaryCopyInWriter;
use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, GenericClient, Row, Transaction};
use patchline_core::notice::{Grouping, NoticeState, SubscriptionState};
use patchline_core::remedy::{Action, RootCause};
use patchline_core::{AdvIdx, ArtIdx, TenantIdx};

use super::{Fail, Prepared, db_err, in_transaction, index};
use crate::service::{
    DigestWindow, NoticeChange, OpenGroup, Outbox, PatchRow, RootMembers, ServiceState,
    StoredNotice, StoredRoot, SubscriptionRow, TokenRow, VexRow, blob_path, path_blob,
};
use crate::{SecretKeys, StoreError};

/// Rows per chunk of ids in one `= ANY($1)` read.
pub(super) const IDS_PER_QUERY_MAX: usize = 1000;

pub(super) const NOTICE_COLUMNS: &str = "n.id, n.advisory, n.artifact, n.tenant, n.state, n.justification, g.components, n.path, n.created_at, n.updated_at, n.reminders, n.remediated_by, r.id, r.introduced_by, r.step, r.action, r.waits_for, r.onto, n.detail, r.advisory";
pub(super) const NOTICE_FROM: &str =
    "notices n JOIN notice_groups g ON g.id = n.grp LEFT JOIN notice_roots r ON r.id = n.root";

pub(super) fn notice_from_row(r: &Row) -> Result<StoredNotice, StoreError> {
    Ok(StoredNotice {
        id: r.get(0),
        advisory: AdvIdx(index(r.get(1), "notice advisory")?),
        artifact: ArtIdx(index(r.get(2), "notice artifact")?),
        tenant: TenantIdx(index(r.get(3), "notice tenant")?),
        state: NoticeState::parse(r.get(4)).unwrap_or(NoticeState::Affected),
        justification: r.get(5),
        detail: r.get(18),
        components: r.get(6),
        path: blob_path(r.get(7)),
        created_at_ms: r.get(8),
        updated_at_ms: r.get(9),
        reminders: r.get(10),
        remediated_by: r.get(11),
        root: root_from_row(r, 12, 19)?,
    })
}

/// The root columns from `at` (id, introduced_by, step, action, waits_for,
/// onto) and its record at `advisory_at`, where the row has a root.
fn root_from_row(r: &Row, at: usize, advisory_at: usize) -> Result<Option<StoredRoot>, StoreError> {
    let Some(id) = r.get::<_, Option<i64>>(at) else {
        return Ok(None);
    };
    let Some(action) = Action::parse(r.get(at + 3)) else {
        return Ok(None);
    };
    Ok(Some(StoredRoot {
        id,
        advisory: AdvIdx(index(r.get(advisory_at), "root advisory")?),
        introduced_by: ArtIdx(index(r.get(at + 1), "root introduction")?),
        step: ArtIdx(index(r.get(at + 2), "root step")?),
        action,
        waits_for: opt_artifact(r, at + 4, "root waits_for")?,
        onto: opt_artifact(r, at + 5, "root onto")?,
    }))
}

/// A nullable artifact index column.
fn opt_artifact(r: &Row, i: usize, what: &str) -> Result<Option<ArtIdx>, StoreError> {
    r.get::<_, Option<i64>>(i)
        .map(|v| index(v, what).map(ArtIdx))
        .transpose()
}

/// See `crate::service::root_ids`.
pub(super) fn root_ids(
    client: &mut impl GenericClient,
    adv: AdvIdx,
    causes: &[RootCause],
) -> Result<Vec<Option<i64>>, StoreError> {
    if causes.is_empty() {
        return Ok(Vec::new());
    }
    let tenant: Vec<i64> = causes.iter().map(|c| i64::from(c.tenant.0)).collect();
    let intro: Vec<i64> = causes
        .iter()
        .map(|c| i64::from(c.introduced_by.0))
        .collect();
    let step: Vec<i64> = causes.iter().map(|c| i64::from(c.step.0)).collect();
    let action: Vec<&str> = causes.iter().map(|c| c.action.as_str()).collect();
    let rows = client
        .query(
            "SELECT v.ord, r.id
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])
               WITH ORDINALITY AS v(tenant, intro, step, action, ord)
             JOIN notice_roots r ON r.tenant = v.tenant AND r.advisory = $5
               AND r.introduced_by = v.intro AND r.step = v.step AND r.action = v.action",
            &[&tenant, &intro, &step, &action, &i64::from(adv.0)],
        )
        .map_err(db_err)?;
    let mut out = vec![None; causes.len()];
    for r in rows {
        let ord: i64 = r.get(0);
        if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(r.get(1));
        }
    }
    Ok(out)
}

/// See `crate::service::digest_window`.
pub(super) fn digest_window(
    client: &mut impl GenericClient,
    subscription: &str,
    tenant: TenantIdx,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<DigestWindow, StoreError> {
    const IN_WINDOW: &str = "d.subscription = $1 AND ((d.at >= $2 AND d.at < $3)
        OR (n.updated_at >= $2 AND n.updated_at < $3
            AND n.state IN ('acknowledged', 'not_affected', 'remediated')))";
    let limit = limit.min(i64::MAX as usize) as i64;
    let notices: Vec<i64> = client
        .query(
            &format!(
                "SELECT n.id FROM digest_items d JOIN notices n ON n.id = d.notice
                 WHERE {IN_WINDOW} ORDER BY n.id LIMIT $4"
            ),
            &[&subscription, &from_ms, &to_ms, &limit],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let total: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM digest_items d JOIN notices n ON n.id = d.notice
                 WHERE {IN_WINDOW}"
            ),
            &[&subscription, &from_ms, &to_ms],
        )
        .map_err(db_err)?
        .get(0);
    let open: i64 = client
        .query_one(
            "SELECT count(*) FROM digest_items d JOIN notices n ON n.id = d.notice
             WHERE d.subscription = $1 AND n.tenant = $2
               AND n.state IN ('affected', 'notified', 'acknowledged')",
            &[&subscription, &i64::from(tenant.0)],
        )
        .map_err(db_err)?
        .get(0);
    Ok(DigestWindow {
        notices,
        total: total.max(0) as u64,
        open: open.max(0) as u64,
    })
}

/// See `crate::service::digest_open`.
pub(super) fn digest_open(
    client: &mut impl GenericClient,
    subscription: &str,
    tenant: TenantIdx,
    limit: usize,
) -> Result<Vec<OpenGroup>, StoreError> {
    let rows = client
        .query(
            "SELECT r.id, r.introduced_by, r.step, r.action, r.waits_for, r.onto, r.advisory, count(DISTINCT n.artifact)
             FROM digest_items d JOIN notices n ON n.id = d.notice
               JOIN notice_roots r ON r.id = n.root
             WHERE d.subscription = $1 AND n.tenant = $2
               AND n.state IN ('affected', 'notified', 'acknowledged')
             GROUP BY r.id ORDER BY r.id LIMIT $3",
            &[
                &subscription,
                &i64::from(tenant.0),
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )
        .map_err(db_err)?;
    let mut out = Vec::new();
    for r in rows {
        let Some(root) = root_from_row(&r, 0, 6)? else {
            continue;
        };
        let n: i64 = r.get(7);
        out.push(OpenGroup {
            root,
            advisory: AdvIdx(index(r.get(6), "root advisory")?),
            open: n.max(0) as u64,
        });
    }
    Ok(out)
}

/// See `crate::service::root_members`.
pub(super) fn root_members(
    client: &mut impl GenericClient,
    root: i64,
) -> Result<Option<RootMembers>, StoreError> {
    let Some(head) = client
        .query_opt(
            "SELECT tenant, advisory FROM notice_roots WHERE id = $1",
            &[&root],
        )
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let members = client
        .query(
            "SELECT id, advisory, artifact, state FROM notices WHERE root = $1 ORDER BY id",
            &[&root],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(crate::RootMember {
                id: r.get(0),
                advisory: AdvIdx(index(r.get(1), "notice advisory")?),
                artifact: ArtIdx(index(r.get(2), "notice artifact")?),
                state: NoticeState::parse(r.get(3)).unwrap_or(NoticeState::Affected),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(RootMembers {
        tenant: TenantIdx(index(head.get(0), "root tenant")?),
        advisory: AdvIdx(index(head.get(1), "root advisory")?),
        members,
    }))
}

/// See `crate::service::root_plans_near`.
pub(super) fn root_plans_near(
    client: &mut impl GenericClient,
    arts: &[ArtIdx],
    adv: Option<AdvIdx>,
) -> Result<Vec<crate::RootPlan>, StoreError> {
    if arts.is_empty() {
        return Ok(Vec::new());
    }
    let arts: Vec<i64> = arts.iter().map(|a| i64::from(a.0)).collect();
    let adv: Option<i64> = adv.map(|a| i64::from(a.0));
    let rows = client
        .query(
            "SELECT DISTINCT tenant, advisory, step, action, waits_for, onto FROM notice_roots
             WHERE (step = ANY($1) OR waits_for = ANY($1) OR onto = ANY($1))
               AND ($2::bigint IS NULL OR advisory = $2)
             ORDER BY tenant, advisory, step, action",
            &[&arts, &adv],
        )
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let action: &str = r.get(3);
        let action = Action::parse(action)
            .ok_or_else(|| StoreError::Corrupt(format!("notice_roots: action {action:?}")))?;
        out.push(crate::RootPlan {
            tenant: TenantIdx(index(r.get(0), "root tenant")?),
            advisory: AdvIdx(index(r.get(1), "root advisory")?),
            step: ArtIdx(index(r.get(2), "root step")?),
            action,
            waits_for: opt_artifact(&r, 4, "root waits_for")?,
            onto: opt_artifact(&r, 5, "root onto")?,
        });
    }
    Ok(out)
}

/// See `crate::service::root_open_counts`.
pub(super) fn root_open_counts(
    client: &mut impl GenericClient,
    roots: &[i64],
) -> Result<Vec<(i64, u64)>, StoreError> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT root, count(DISTINCT artifact) FROM notices WHERE root = ANY($1)
               AND state IN ('affected', 'notified', 'acknowledged') GROUP BY root",
            &[&roots],
        )
        .map_err(db_err)?;
    let counts: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(roots
        .iter()
        .map(|&r| (r, counts.get(&r).copied().unwrap_or(0).max(0) as u64))
        .collect())
}

/// See `crate::service::root_notices_after`.
pub(super) fn root_notices_after(
    client: &mut impl GenericClient,
    root: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredNotice>, StoreError> {
    client
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
                 WHERE n.root = $1 AND n.id > $2 ORDER BY n.id LIMIT $3"
            ),
            &[&root, &after, &(limit.min(i64::MAX as usize) as i64)],
        )
        .map_err(db_err)?
        .iter()
        .map(notice_from_row)
        .collect()
}

pub(super) fn notice_by_id(
    client: &mut impl GenericClient,
    id: i64,
) -> Result<Option<StoredNotice>, StoreError> {
    client
        .query_opt(
            &format!("SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM} WHERE n.id = $1"),
            &[&id],
        )
        .map_err(db_err)?
        .as_ref()
        .map(notice_from_row)
        .transpose()
}

/// Notices by id, oldest first (one query per [`IDS_PER_QUERY_MAX`] ids);
/// ids that do not exist are left out.
pub(super) fn notices_by_ids(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    ids: &[i64],
) -> Result<Vec<StoredNotice>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM} WHERE n.id = ANY($1) ORDER BY n.id")
    });
    let statement = prepared.get(client, SQL.as_str()).map_err(db_err)?;
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let rows = client.query(&statement, &[&chunk]).map_err(db_err)?;
        for r in &rows {
            out.push(notice_from_row(r)?);
        }
    }
    Ok(out)
}

/// Open notices due for a reminder (see `CatalogStore::due_reminders`).
pub(super) fn due_reminders(
    client: &mut Client,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<StoredNotice>, StoreError> {
    client
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
                 WHERE n.open AND n.reminded_at < $1
                 ORDER BY n.reminded_at LIMIT $2"
            ),
            &[&before_ms, &(limit.min(i64::MAX as usize) as i64)],
        )
        .map_err(db_err)?
        .iter()
        .map(notice_from_row)
        .collect()
}

// Every `UPDATE … FROM unnest(…) v WHERE t.id = v.id` below also says
// `t.id = ANY($1)`: the planner then fetches the few rows by primary key
// instead of joining against the whole table (it cannot see how many rows
// an `unnest` gives, and after a fan-out the table holds millions).

/// Marks notices `notified` (those still `affected`), each with its own
/// time, and records the transition in `notice_events`, once per notice
/// however many callers race: the rows are locked in id order first (no
/// deadlock between two markers), and the update only takes rows still
/// `affected` once it holds them.
pub(super) fn mark_notified(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    marks: &[(i64, i64)],
) -> Result<(), Fail> {
    if marks.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = marks.iter().map(|m| m.0).collect();
    let at: Vec<i64> = marks.iter().map(|m| m.1).collect();
    let lock = prepared.get(
        tx,
        "SELECT id FROM notices WHERE id = ANY($1) AND state = 'affected' ORDER BY id FOR UPDATE",
    )?;
    tx.execute(&lock, &[&ids])?;
    let mark = prepared.get(
        tx,
        "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS v(id, at)),
              u AS (UPDATE notices n SET state = 'notified', updated_at = v.at FROM v
                    WHERE n.id = v.id AND n.id = ANY($1) AND n.state = 'affected'
                    RETURNING n.id, n.advisory, v.at)
         INSERT INTO notice_events (notice, advisory, state, at)
         SELECT id, advisory, 'notified', at FROM u",
    )?;
    tx.execute(&mark, &[&ids, &at])?;
    Ok(())
}

/// Writes binary `COPY` rows of `types` into `statement`.
fn copy_rows<'r, I>(
    tx: &mut Transaction<'_>,
    statement: &str,
    types: &[Type],
    rows: I,
) -> Result<(), Fail>
where
    I: IntoIterator<Item = Vec<&'r (dyn ToSql + Sync)>>,
{
    let mut writer = BinaryCopyInWriter::new(tx.copy_in(statement)?, types);
    for row in rows {
        writer.write(&row)?;
    }
    writer.finish()?;
    Ok(())
}

/// A notice's final update after every change an outbox carries for it,
/// applied in order (see [`fold_changes`]).
struct FoldedChange<'a> {
    state: &'static str,
    justification: Option<&'a str>,
    detail: Option<&'a str>,
    at: i64,
    regroup: Option<(i64, Vec<u8>, i64, Option<i64>)>,
    remediated_by: Option<&'a str>,
}

/// What applying `changes` one after another leaves: the last state,
/// justification and time; the last regroup (group, path) and, with it,
/// `reminded_at` moved to that change's time.
fn fold_changes(changes: &[NoticeChange]) -> BTreeMap<i64, FoldedChange<'_>> {
    let mut out: BTreeMap<i64, FoldedChange<'_>> = BTreeMap::new();
    for c in changes {
        let regroup = c
            .regroup
            .as_ref()
            .map(|(g, p, root)| (*g, path_blob(p), c.at_ms, *root));
        let entry = out.entry(c.id).or_insert(FoldedChange {
            state: c.state.as_str(),
            justification: None,
            detail: None,
            at: c.at_ms,
            regroup: None,
            remediated_by: None,
        });
        entry.state = c.state.as_str();
        entry.justification = c.justification.as_deref();
        entry.detail = c.detail.as_deref();
        entry.at = c.at_ms;
        entry.remediated_by = c.remediated_by.as_ref().map(|r| r.doc.as_str());
        if regroup.is_some() {
            entry.regroup = regroup;
        }
    }
    out
}

/// The last value per key, in the order keys first appeared (what a run
/// of `INSERT OR REPLACE` leaves).
fn last_per_key<'a, K: std::hash::Hash + Eq, T>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
) -> Vec<&'a T>
where
    T: 'a,
{
    let mut at: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<&T> = Vec::new();
    for item in items {
        match at.get(&key(item)) {
            Some(&i) => out[i] = item,
            None => {
                at.insert(key(item), out.len());
                out.push(item);
            }
        }
    }
    out
}

/// Writes an outbox (the caller commits), in the order the SQLite backend
/// does.
pub(super) fn write_outbox(
    tx: &mut Transaction<'_>,
    out: &Outbox,
    keys: &SecretKeys,
) -> Result<(), Fail> {
    if out.is_empty() {
        return Ok(());
    }
    if !out.roles.is_empty() {
        let roles = last_per_key(&out.roles, |r| r.0);
        let tenant: Vec<i64> = roles.iter().map(|r| i64::from(r.0.0)).collect();
        let text: Vec<&str> = roles.iter().map(|r| r.1.as_str()).collect();
        let at: Vec<i64> = roles.iter().map(|r| r.2).collect();
        tx.execute(
            "INSERT INTO tenant_roles (tenant, roles, created_at)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
             ON CONFLICT (tenant) DO UPDATE SET roles = excluded.roles, created_at = excluded.created_at",
            &[&tenant, &text, &at],
        )?;
    }
    if !out.tokens.is_empty() {
        let t = &out.tokens;
        let id: Vec<&str> = t.iter().map(|t| t.id.as_str()).collect();
        let tenant: Vec<i64> = t.iter().map(|t| i64::from(t.tenant.0)).collect();
        let hash: Vec<&str> = t.iter().map(|t| t.hash.as_str()).collect();
        let at: Vec<i64> = t.iter().map(|t| t.created_at_ms).collect();
        let minted_by: Vec<Option<&str>> = t.iter().map(|t| t.minted_by.as_deref()).collect();
        tx.execute(
            "INSERT INTO tokens (id, tenant, hash, created_at, minted_by)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[])",
            &[&id, &tenant, &hash, &at, &minted_by],
        )?;
    }
    if !out.revoked_tokens.is_empty() {
        let revoked = last_per_key(&out.revoked_tokens, |r| r.0.clone());
        let id: Vec<&str> = revoked.iter().map(|r| r.0.as_str()).collect();
        let at: Vec<i64> = revoked.iter().map(|r| r.1).collect();
        tx.execute(
            "UPDATE tokens t SET revoked_at = v.at
             FROM unnest($1::text[], $2::bigint[]) AS v(id, at) WHERE t.id = v.id",
            &[&id, &at],
        )?;
    }
    if !out.record_owners.is_empty() {
        let owners = last_per_key(&out.record_owners, |r| r.0);
        let record: Vec<i64> = owners.iter().map(|r| i64::from(r.0.0)).collect();
        let tenant: Vec<i64> = owners.iter().map(|r| i64::from(r.1.0)).collect();
        tx.execute(
            "INSERT INTO record_owners (record, tenant) SELECT * FROM unnest($1::bigint[], $2::bigint[])
             ON CONFLICT (record) DO UPDATE SET tenant = excluded.tenant",
            &[&record, &tenant],
        )?;
    }
    // Reservations and releases of one prefix may alternate: one
    // statement each, in order (they are few).
    for (prefix, owner) in &out.prefixes {
        match owner {
            Some((t, at)) => tx.execute(
                "INSERT INTO id_prefixes (prefix, tenant, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (prefix) DO UPDATE SET tenant = excluded.tenant, created_at = excluded.created_at",
                &[prefix, &i64::from(t.0), at],
            )?,
            None => tx.execute("DELETE FROM id_prefixes WHERE prefix = $1", &[prefix])?,
        };
    }
    if !out.subscriptions.is_empty() {
        let subs = last_per_key(&out.subscriptions, |s| s.id.clone());
        let sealed = subs
            .iter()
            .map(|s| keys.seal(&s.secrets, &s.id))
            .collect::<Result<Vec<_>, _>>()?;
        let id: Vec<&str> = subs.iter().map(|s| s.id.as_str()).collect();
        let tenant: Vec<i64> = subs.iter().map(|s| i64::from(s.tenant.0)).collect();
        let channel: Vec<&str> = subs.iter().map(|s| s.channel.as_str()).collect();
        let filter: Vec<&str> = subs.iter().map(|s| s.filter.as_str()).collect();
        let state: Vec<&str> = subs.iter().map(|s| s.state.to_stored().0).collect();
        let reason: Vec<Option<&str>> = subs.iter().map(|s| s.state.to_stored().1).collect();
        let rate: Vec<i64> = subs.iter().map(|s| i64::from(s.rate_per_s)).collect();
        let at: Vec<i64> = subs.iter().map(|s| s.created_at_ms).collect();
        let grouping: Vec<&str> = subs.iter().map(|s| s.grouping.as_str()).collect();
        let digest: Vec<Option<&str>> = subs.iter().map(|s| s.digest.as_deref()).collect();
        tx.execute(
            "INSERT INTO subscriptions
               (id, tenant, channel, filter, secrets, state, disabled_reason, rate_per_s, created_at,
                grouping, digest)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
               $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])
             ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, channel = excluded.channel,
               filter = excluded.filter, secrets = excluded.secrets, state = excluded.state,
               disabled_reason = excluded.disabled_reason, rate_per_s = excluded.rate_per_s,
               created_at = excluded.created_at, grouping = excluded.grouping,
               digest = excluded.digest",
            &[
                &id, &tenant, &channel, &filter, &sealed, &state, &reason, &rate, &at, &grouping,
                &digest,
            ],
        )?;
    }
    if !out.digest_items.is_empty() {
        // One row per (subscription, notice): the last time wins.
        let items = last_per_key(&out.digest_items, |i| (i.0.clone(), i.1));
        let sub: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
        let notice: Vec<i64> = items.iter().map(|i| i.1).collect();
        let at: Vec<i64> = items.iter().map(|i| i.2).collect();
        tx.execute(
            "INSERT INTO digest_items (subscription, notice, at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (subscription, notice) DO UPDATE SET at = excluded.at",
            &[&sub, &notice, &at],
        )?;
    }
    if !out.watches.is_empty() {
        let tenant: Vec<i64> = out.watches.iter().map(|w| i64::from(w.0.0)).collect();
        let artifact: Vec<i64> = out.watches.iter().map(|w| i64::from(w.1.0)).collect();
        tx.execute(
            "INSERT INTO watches (tenant, artifact) SELECT * FROM unnest($1::bigint[], $2::bigint[])
             ON CONFLICT DO NOTHING",
            &[&tenant, &artifact],
        )?;
    }
    if !out.vex.is_empty() {
        // One row per (tenant, artifact, name): the last statement wins.
        let rows = last_per_key(&out.vex, |v| {
            (v.tenant, v.artifact, v.names[0].clone(), v.packages.clone())
        });
        let tenant: Vec<i64> = rows.iter().map(|v| i64::from(v.tenant.0)).collect();
        let artifact: Vec<i64> = rows.iter().map(|v| i64::from(v.artifact.0)).collect();
        let name: Vec<&str> = rows.iter().map(|v| v.names[0].as_str()).collect();
        let names: Vec<String> = rows.iter().map(|v| VexRow::lines(&v.names)).collect();
        let packages: Vec<String> = rows.iter().map(|v| VexRow::lines(&v.packages)).collect();
        let state: Vec<&str> = rows.iter().map(|v| v.state.as_str()).collect();
        let justification: Vec<Option<&str>> =
            rows.iter().map(|v| v.justification.as_deref()).collect();
        let detail: Vec<Option<&str>> = rows.iter().map(|v| v.detail.as_deref()).collect();
        let at: Vec<i64> = rows.iter().map(|v| v.at_ms).collect();
        let subtree: Vec<bool> = rows.iter().map(|v| v.subtree).collect();
        let ord: Vec<i64> = rows.iter().map(|v| i64::from(v.ord)).collect();
        tx.execute(
            "INSERT INTO vex_statements
               (tenant, artifact, name, names, state, justification, detail, at, packages,
                subtree, ord)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
               $6::text[], $7::text[], $8::bigint[], $9::text[], $10::boolean[], $11::bigint[])
             ON CONFLICT (tenant, artifact, name, packages) DO UPDATE SET names = excluded.names,
               state = excluded.state, justification = excluded.justification,
               detail = excluded.detail, at = excluded.at, subtree = excluded.subtree,
               ord = excluded.ord",
            &[
                &tenant,
                &artifact,
                &name,
                &names,
                &state,
                &justification,
                &detail,
                &at,
                &packages,
                &subtree,
                &ord,
            ],
        )?;
    }
    for (t, a, name, packages) in &out.vex_withdrawn {
        tx.execute(
            "DELETE FROM vex_statements
             WHERE tenant = $1 AND artifact = $2 AND name = $3 AND packages = $4",
            &[
                &i64::from(t.0),
                &i64::from(a.0),
                name,
                &VexRow::lines(packages),
            ],
        )?;
    }
    for p in &out.patches {
        tx.execute(
            "INSERT INTO patch_notices (id, tenant, record, successor, doc, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &p.id,
                &i64::from(p.tenant.0),
                &i64::from(p.record.0),
                &i64::from(p.successor.0),
                &p.doc,
                &p.at_ms,
            ],
        )?;
    }
    if !out.groups.is_empty() {
        let advisory: Vec<i64> = out.groups.iter().map(|g| i64::from(g.advisory.0)).collect();
        copy_rows(
            tx,
            "COPY notice_groups (id, advisory, components) FROM STDIN (FORMAT binary)",
            &[Type::INT8, Type::INT8, Type::TEXT],
            out.groups.iter().zip(&advisory).map(|(g, a)| {
                let row: Vec<&(dyn ToSql + Sync)> = vec![&g.id, a, &g.components];
                row
            }),
        )?;
    }
    if !out.roots.is_empty() {
        let r = &out.roots;
        let id: Vec<i64> = r.iter().map(|r| r.id).collect();
        let tenant: Vec<i64> = r.iter().map(|r| i64::from(r.cause.tenant.0)).collect();
        let advisory: Vec<i64> = r.iter().map(|r| i64::from(r.advisory.0)).collect();
        let intro: Vec<i64> = r
            .iter()
            .map(|r| i64::from(r.cause.introduced_by.0))
            .collect();
        let step: Vec<i64> = r.iter().map(|r| i64::from(r.cause.step.0)).collect();
        let action: Vec<&str> = r.iter().map(|r| r.cause.action.as_str()).collect();
        let at: Vec<i64> = r.iter().map(|r| r.at_ms).collect();
        let waits_for: Vec<Option<i64>> = r
            .iter()
            .map(|r| r.waits_for.map(|a| i64::from(a.0)))
            .collect();
        let onto: Vec<Option<i64>> = r.iter().map(|r| r.onto.map(|a| i64::from(a.0))).collect();
        tx.execute(
            "INSERT INTO notice_roots
               (id, tenant, advisory, introduced_by, step, action, created_at, waits_for, onto)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
               $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])",
            &[
                &id, &tenant, &advisory, &intro, &step, &action, &at, &waits_for, &onto,
            ],
        )?;
    }
    if !out.root_plans.is_empty() {
        // A later plan of one step wins, as applying them in order.
        let ups = last_per_key(&out.root_plans, |o| {
            (o.tenant, o.advisory, o.step, o.action)
        });
        let tenant: Vec<i64> = ups.iter().map(|o| i64::from(o.tenant.0)).collect();
        let advisory: Vec<i64> = ups.iter().map(|o| i64::from(o.advisory.0)).collect();
        let step: Vec<i64> = ups.iter().map(|o| i64::from(o.step.0)).collect();
        let action: Vec<&str> = ups.iter().map(|o| o.action.as_str()).collect();
        let waits_for: Vec<Option<i64>> = ups
            .iter()
            .map(|o| o.waits_for.map(|a| i64::from(a.0)))
            .collect();
        let onto: Vec<Option<i64>> = ups.iter().map(|o| o.onto.map(|a| i64::from(a.0))).collect();
        tx.execute(
            "UPDATE notice_roots r SET waits_for = v.waits_for, onto = v.onto
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[],
                         $6::bigint[])
               AS v(tenant, advisory, step, action, waits_for, onto)
             WHERE r.tenant = v.tenant AND r.advisory = v.advisory AND r.step = v.step
               AND r.action = v.action",
            &[&tenant, &advisory, &step, &action, &waits_for, &onto],
        )?;
    }
    if !out.notices.is_empty() {
        // The creation is the notice row itself (`created_at`): no event
        // row, as in SQLite.
        let cols: Vec<([i64; 3], &str, Vec<u8>)> = out
            .notices
            .iter()
            .map(|n| {
                (
                    [
                        i64::from(n.advisory.0),
                        i64::from(n.artifact.0),
                        i64::from(n.tenant.0),
                    ],
                    n.state.as_str(),
                    path_blob(&n.path),
                )
            })
            .collect();
        copy_rows(
            tx,
            "COPY notices (id, advisory, artifact, tenant, state, grp, path, created_at, updated_at, reminded_at, root)
             FROM STDIN (FORMAT binary)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::BYTEA,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
            ],
            out.notices.iter().zip(&cols).map(|(n, (ids, state, path))| {
                let row: Vec<&(dyn ToSql + Sync)> = vec![
                    &n.id,
                    &ids[0],
                    &ids[1],
                    &ids[2],
                    state,
                    &n.group,
                    path,
                    &n.at_ms,
                    &n.at_ms,
                    &n.at_ms,
                    &n.root,
                ];
                row
            }),
        )?;
    }
    // Existing notices change: lock them in id order first, so that two
    // writers (this one, a queue marking deliveries) never deadlock.
    if !out.notice_changes.is_empty() || !out.reminded.is_empty() || !out.notice_moves.is_empty() {
        let mut ids: Vec<i64> = out
            .notice_changes
            .iter()
            .map(|c| c.id)
            .chain(out.reminded.iter().map(|r| r.0))
            .chain(out.notice_moves.iter().map(|m| m.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        tx.execute(
            "SELECT id FROM notices WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )?;
    }
    if !out.notice_moves.is_empty() {
        // A move sets group, path and root; a change that comes with it (a
        // VEX decision of the notice's new place) sets state, justification
        // and detail and keeps the group (a reopening carries its own group
        // and path and is never moved too), so the order against the
        // changes below does not matter.
        let moves = last_per_key(&out.notice_moves, |m| m.id);
        let id: Vec<i64> = moves.iter().map(|m| m.id).collect();
        let grp: Vec<i64> = moves.iter().map(|m| m.group).collect();
        let path: Vec<Vec<u8>> = moves.iter().map(|m| path_blob(&m.path)).collect();
        let root: Vec<Option<i64>> = moves.iter().map(|m| m.root).collect();
        tx.execute(
            "UPDATE notices n SET grp = v.grp, path = v.path, root = v.root
             FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[])
               AS v(id, grp, path, root)
             WHERE n.id = v.id AND n.id = ANY($1)",
            &[&id, &grp, &path, &root],
        )?;
    }
    if !out.notice_changes.is_empty() {
        let folded = fold_changes(&out.notice_changes);
        let id: Vec<i64> = folded.keys().copied().collect();
        let state: Vec<&str> = folded.values().map(|f| f.state).collect();
        let justification: Vec<Option<&str>> = folded.values().map(|f| f.justification).collect();
        let detail: Vec<Option<&str>> = folded.values().map(|f| f.detail).collect();
        let at: Vec<i64> = folded.values().map(|f| f.at).collect();
        let grp: Vec<Option<i64>> = folded
            .values()
            .map(|f| f.regroup.as_ref().map(|r| r.0))
            .collect();
        let path: Vec<Option<&[u8]>> = folded
            .values()
            .map(|f| f.regroup.as_ref().map(|r| r.1.as_slice()))
            .collect();
        let reminded: Vec<Option<i64>> = folded
            .values()
            .map(|f| f.regroup.as_ref().map(|r| r.2))
            .collect();
        let remediated_by: Vec<Option<&str>> = folded.values().map(|f| f.remediated_by).collect();
        let root: Vec<Option<i64>> = folded
            .values()
            .map(|f| f.regroup.as_ref().and_then(|r| r.3))
            .collect();
        tx.execute(
            "UPDATE notices n SET state = v.state, justification = v.justification, updated_at = v.at,
               grp = coalesce(v.grp, n.grp), path = coalesce(v.path, n.path),
               reminded_at = coalesce(v.reminded_at, n.reminded_at),
               remediated_by = v.remediated_by,
               root = CASE WHEN v.grp IS NULL THEN n.root ELSE v.root END,
               detail = v.detail
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
               $6::bytea[], $7::bigint[], $8::text[], $9::bigint[], $10::text[])
               AS v(id, state, justification, at, grp, path, reminded_at, remediated_by, root, detail)
             WHERE n.id = v.id AND n.id = ANY($1)",
            &[
                &id,
                &state,
                &justification,
                &at,
                &grp,
                &path,
                &reminded,
                &remediated_by,
                &root,
                &detail,
            ],
        )?;
        // Every change is a transition in the history, in order.
        let c = &out.notice_changes;
        let notice: Vec<i64> = c.iter().map(|c| c.id).collect();
        let advisory: Vec<i64> = c.iter().map(|c| i64::from(c.advisory.0)).collect();
        let state: Vec<&str> = c.iter().map(|c| c.state.as_str()).collect();
        let at: Vec<i64> = c.iter().map(|c| c.at_ms).collect();
        let cause: Vec<Option<&str>> = c
            .iter()
            .map(|c| c.remediated_by.as_ref().map(|r| r.cause.as_str()))
            .collect();
        tx.execute(
            "INSERT INTO notice_events (notice, advisory, state, at, cause)
             SELECT notice, advisory, state, at, cause
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[])
               WITH ORDINALITY AS v(notice, advisory, state, at, cause, ord)
             ORDER BY ord",
            &[&notice, &advisory, &state, &at, &cause],
        )?;
    }
    if !out.reminded.is_empty() {
        // Several reminders of one notice in one outbox add up; the last
        // time stays.
        let mut folded: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for &(id, at) in &out.reminded {
            let e = folded.entry(id).or_insert((0, at));
            e.0 += 1;
            e.1 = at;
        }
        let id: Vec<i64> = folded.keys().copied().collect();
        let count: Vec<i64> = folded.values().map(|v| v.0).collect();
        let at: Vec<i64> = folded.values().map(|v| v.1).collect();
        tx.execute(
            "UPDATE notices n SET reminders = n.reminders + v.count, reminded_at = v.at
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, count, at)
             WHERE n.id = v.id AND n.id = ANY($1)",
            &[&id, &count, &at],
        )?;
    }
    if !out.deliveries.is_empty() {
        let d = &out.deliveries;
        let purpose: Vec<&str> = d.iter().map(|d| d.purpose.as_str()).collect();
        copy_rows(
            tx,
            "COPY deliveries (id, subscription, purpose, notices, state, next_at, created_at, last_error)
             FROM STDIN (FORMAT binary)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT8_ARRAY,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
            ],
            d.iter().zip(&purpose).map(|(d, purpose)| {
                let (state, error): (&(dyn ToSql + Sync), &(dyn ToSql + Sync)) = if d.dead {
                    (&"dead", &Some("subscription disabled"))
                } else {
                    (&"pending", &None::<&str>)
                };
                let row: Vec<&(dyn ToSql + Sync)> = vec![
                    &d.id,
                    &d.subscription,
                    purpose,
                    &d.notices,
                    state,
                    &d.next_at_ms,
                    &d.at_ms,
                    error,
                ];
                row
            }),
        )?;
    }
    Ok(())
}

/// Seals every subscription's secrets under the current key (a key was
/// added, or rotated); rows are locked while they are resealed, so two
/// nodes starting together do it once each without losing either's work.
pub(super) fn reseal_secrets(client: &mut Client, keys: &SecretKeys) -> Result<(), StoreError> {
    in_transaction(client, |tx| {
        let rows = tx.query(
            "SELECT id, secrets FROM subscriptions ORDER BY id FOR UPDATE",
            &[],
        )?;
        for r in &rows {
            let id: &str = r.get(0);
            let (plain, reseal) = keys.open(r.get(1), id)?;
            if reseal {
                tx.execute(
                    "UPDATE subscriptions SET secrets = $2 WHERE id = $1",
                    &[&id, &keys.seal(&plain, id)?],
                )?;
            }
        }
        Ok(())
    })
}

pub(super) fn load_service(
    client: &mut impl GenericClient,
    keys: &SecretKeys,
) -> Result<ServiceState, StoreError> {
    let mut state = ServiceState::default();
    fn q(client: &mut impl GenericClient, sql: &str) -> Result<Vec<Row>, StoreError> {
        client.query(sql, &[]).map_err(db_err)
    }
    for r in q(client, "SELECT tenant, roles FROM tenant_roles")? {
        state
            .roles
            .push((TenantIdx(index(r.get(0), "tenant")?), r.get(1)));
    }
    for r in q(
        client,
        "SELECT id, tenant, hash, created_at, revoked_at, minted_by FROM tokens ORDER BY created_at, id",
    )? {
        state.tokens.push(TokenRow {
            id: r.get(0),
            tenant: TenantIdx(index(r.get(1), "token tenant")?),
            hash: r.get(2),
            created_at_ms: r.get(3),
            revoked_at_ms: r.get(4),
            minted_by: r.get(5),
        });
    }
    for r in q(client, "SELECT record, tenant FROM record_owners")? {
        state.record_owners.push((
            AdvIdx(index(r.get(0), "record")?),
            TenantIdx(index(r.get(1), "record owner")?),
        ));
    }
    for r in q(
        client,
        "SELECT prefix, tenant FROM id_prefixes ORDER BY prefix",
    )? {
        state
            .prefixes
            .push((r.get(0), TenantIdx(index(r.get(1), "prefix tenant")?)));
    }
    state.installation = client
        .query_opt("SELECT value FROM meta WHERE key = 'installation'", &[])
        .map_err(db_err)?
        .map(|r| r.get(0))
        .unwrap_or_default();
    for r in q(
        client,
        "SELECT id, tenant, channel, filter, secrets, state, disabled_reason, rate_per_s, created_at,
           grouping, digest
         FROM subscriptions ORDER BY created_at, id",
    )? {
        let id: String = r.get(0);
        let stored_state: &str = r.get(5);
        let reason: Option<&str> = r.get(6);
        let sub_state = SubscriptionState::from_stored(stored_state, reason).ok_or_else(|| {
            StoreError::Corrupt(format!("subscription state {stored_state:?}"))
        })?;
        let secrets = keys.open(r.get(4), &id)?.0;
        state.subscriptions.push(SubscriptionRow {
            tenant: TenantIdx(index(r.get(1), "subscription tenant")?),
            channel: r.get(2),
            filter: r.get(3),
            secrets,
            state: sub_state,
            rate_per_s: index(r.get(7), "rate")?,
            created_at_ms: r.get(8),
            grouping: Grouping::parse(r.get(9)).unwrap_or(Grouping::Artifact),
            digest: r.get(10),
            id,
        });
    }
    for r in q(client, "SELECT tenant, artifact FROM watches")? {
        state.watches.push((
            TenantIdx(index(r.get(0), "watch tenant")?),
            ArtIdx(index(r.get(1), "watched artifact")?),
        ));
    }
    for r in q(
        client,
        "SELECT tenant, artifact, names, state, justification, detail, at, packages,
                subtree, ord
         FROM vex_statements ORDER BY at, ord, tenant, artifact, name, packages",
    )? {
        let st: &str = r.get(3);
        let decision = NoticeState::parse(st)
            .ok_or_else(|| StoreError::Corrupt(format!("VEX statement with state {st:?}")))?;
        state.vex.push(VexRow {
            tenant: TenantIdx(index(r.get(0), "VEX tenant")?),
            artifact: ArtIdx(index(r.get(1), "VEX artifact")?),
            names: VexRow::from_lines(r.get(2)),
            packages: VexRow::from_lines(r.get(7)),
            subtree: r.get(8),
            state: decision,
            justification: r.get(4),
            detail: r.get(5),
            at_ms: r.get(6),
            ord: u32::try_from(r.get::<_, i64>(9))
                .map_err(|_| StoreError::Corrupt("VEX statement order".into()))?,
        });
    }
    fn next(client: &mut impl GenericClient, table: &str) -> Result<i64, StoreError> {
        Ok(client
            .query_one(
                &format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"),
                &[],
            )
            .map_err(db_err)?
            .get(0))
    }
    state.next_notice_id = next(client, "notices")?
        .max(next(client, "patch_notices")?)
        .max(next(client, "notice_roots")?);
    state.next_delivery_id = next(client, "deliveries")?;
    state.next_group_id = next(client, "notice_groups")?;
    Ok(state)
}

/// Ids once each, first occurrence kept, with the time that came with it.
pub(super) fn first_per_id(pairs: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let mut seen = HashSet::new();
    pairs
        .into_iter()
        .filter(|(id, _)| seen.insert(*id))
        .collect()
}

const PATCH_COLUMNS: &str = "id, tenant, record, successor, doc, created_at";

fn patch_from_row(r: &Row) -> Result<PatchRow, StoreError> {
    Ok(PatchRow {
        id: r.get(0),
        tenant: TenantIdx(index(r.get(1), "patch tenant")?),
        record: AdvIdx(index(r.get(2), "patch record")?),
        successor: ArtIdx(index(r.get(3), "patch successor")?),
        doc: r.get(4),
        at_ms: r.get(5),
    })
}

/// Patch notices by id, oldest first; ids that do not exist are left out.
pub(super) fn patches_by_ids(
    client: &mut impl GenericClient,
    ids: &[i64],
) -> Result<Vec<PatchRow>, StoreError> {
    client
        .query(
            &format!("SELECT {PATCH_COLUMNS} FROM patch_notices WHERE id = ANY($1) ORDER BY id"),
            &[&ids],
        )
        .map_err(db_err)?
        .iter()
        .map(patch_from_row)
        .collect()
}

/// Patch notices after a cursor, oldest first, of one tenant or all.
pub(super) fn patches_after(
    client: &mut impl GenericClient,
    tenant: Option<TenantIdx>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<PatchRow>, StoreError> {
    let tenant: Option<i64> = tenant.map(|t| i64::from(t.0));
    client
        .query(
            &format!(
                "SELECT {PATCH_COLUMNS} FROM patch_notices
                 WHERE id > $2 AND ($1::bigint IS NULL OR tenant = $1) ORDER BY id LIMIT $3"
            ),
            &[&tenant, &after_id, &limit],
        )
        .map_err(db_err)?
        .iter()
        .map(patch_from_row)
        .collect()
}
