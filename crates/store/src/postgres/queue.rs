//! The delivery queue in PostgreSQL. Claims lock the due rows they take
//! with `FOR UPDATE SKIP LOCKED`, so workers on one node or many claim
//! disjoint deliveries without waiting for each other; a lease marks what
//! is in flight, and a lease that ran out (its worker or node died) is
//! claimed again by any node.
//!
//! A claim writes the lease (`lease_until`) and makes the row due again
//! when the lease runs out (`next_at` = `lease_until`): the row keeps its
//! state (`pending` or `failed`), and a delivery is in flight while it
//! holds a lease — the reads show it as `in_flight` ([`SHOWN_STATE`]).
//! So the due index lists what is due: a claim never reads a row another
//! claim holds. When a claim wrote only the lease (a HOT update, schema
//! 11), every claim stepped over every leased row at the head of the
//! index, on every node: three nodes with 512 in flight each read 1,536
//! rows a claim, and the deployment's claims cost more with each node
//! (BENCHMARKS.md, "Three nodes against one"). If a node dies, its rows
//! are due at their lease's end and any node claims them.

use ::postgres::Transaction;
use patchline_core::notice::{DeliveryState, Purpose};

use super::service::{first_per_id, mark_notified, notices_by_ids};
use super::{Conn, Fail, Prepared, db_err, in_transaction, index};
use crate::service::{Claimed, Finished, PatchRow, StoredNotice};
use crate::{DeliveryQueue, StoreError};

/// The state a read shows for a row: a queued row that holds a lease is in
/// flight (a claim does not change `state`, see the module's notes).
pub(super) const SHOWN_STATE: &str =
    "CASE WHEN state IN ('pending', 'failed') AND lease_until IS NOT NULL
     THEN 'in_flight' ELSE state END";

/// The delivery queue on its own connection.
pub struct PgQueue {
    conn: Conn,
    /// The queue's statements, prepared once per session.
    prepared: Prepared,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue")
            .field("target", &self.conn.target())
            .finish_non_exhaustive()
    }
}

impl PgQueue {
    /// Connects to `url` (creating or migrating the schema if this is the
    /// first connection to it).
    pub fn open(url: &str) -> Result<PgQueue, StoreError> {
        Ok(PgQueue {
            conn: Conn::open(url)?,
            prepared: Prepared::default(),
        })
    }

    /// The live connection and the statements prepared on it.
    fn session(&mut self) -> Result<(&mut ::postgres::Client, &mut Prepared), StoreError> {
        self.conn.client()?;
        self.prepared.for_session(self.conn.session());
        Ok((self.conn.client()?, &mut self.prepared))
    }
}

/// Leases up to `limit` due deliveries, oldest due first, skipping rows
/// another worker holds (the caller commits).
fn claim_rows(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, Fail> {
    let limit = limit.min(i64::MAX as usize) as i64;
    // A leased row is due when its lease runs out (the claim sets both);
    // the lease test is the guard: a row whose lease still runs is never
    // claimed, whatever its `next_at` says.
    // The rows are found by the array of their ids, through the primary
    // key: joined with a CTE of ids instead, PostgreSQL hashed the CTE and
    // read the whole table for every claim.
    let claim = prepared.get(
        tx,
        "UPDATE deliveries SET lease_until = $2, next_at = $2, claims = claims + 1
         WHERE id = ANY(ARRAY(
           SELECT id FROM deliveries
           WHERE state IN ('pending', 'failed') AND next_at <= $1
             AND (lease_until IS NULL OR lease_until < $1)
           ORDER BY next_at, id LIMIT $3
           FOR UPDATE SKIP LOCKED))
         RETURNING id, subscription, purpose, notices, attempts, created_at, claims",
    )?;
    let rows = tx.query(&claim, &[&now_ms, &now_ms.saturating_add(lease_ms), &limit])?;
    let mut claimed = rows
        .iter()
        .map(|r| {
            let purpose: &str = r.get(2);
            Ok(Claimed {
                id: r.get(0),
                subscription: r.get(1),
                purpose: Purpose::parse(purpose)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery purpose {purpose:?}")))?,
                notices: r.get(3),
                attempts: index(r.get(4), "attempts")?,
                created_at_ms: r.get(5),
                claim: r.get(6),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Writes attempt results (the caller commits): each delivery's new state,
/// and the notices delivered become `notified` (once each, with the time of
/// their first delivery in the group).
fn record_results(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    results: &[Finished],
) -> Result<(), Fail> {
    if results.is_empty() {
        return Ok(());
    }
    // Several results for one delivery apply in order: the last one's
    // values, every attempt counted.
    let mut folded: std::collections::BTreeMap<i64, (&Finished, i64)> = Default::default();
    for f in results {
        let e = folded.entry(f.id).or_insert((f, 0));
        e.0 = f;
        e.1 += 1;
    }
    let id: Vec<i64> = folded.keys().copied().collect();
    let state: Vec<&str> = folded.values().map(|(f, _)| f.state.as_str()).collect();
    let status: Vec<Option<i64>> = folded
        .values()
        .map(|(f, _)| f.status.map(i64::from))
        .collect();
    let error: Vec<Option<&str>> = folded.values().map(|(f, _)| f.error.as_deref()).collect();
    let next_at: Vec<i64> = folded.values().map(|(f, _)| f.next_at_ms).collect();
    let at: Vec<i64> = folded.values().map(|(f, _)| f.at_ms).collect();
    let count: Vec<i64> = folded.values().map(|(_, n)| *n).collect();
    let claim: Vec<i64> = folded.values().map(|(f, _)| f.claim).collect();
    // The rows are leased to this worker: only `bury` (a subscription
    // disabled or deleted) may write them meanwhile. It locks them in
    // another order, so the two can deadlock; PostgreSQL then ends one of
    // them, and each is run again (`in_transaction`).
    //
    // A result is recorded only under the claim it was made under: a node
    // that stalled past its lease (frozen, swapping, a long drain) finds
    // its deliveries claimed again by another node, whose result stands —
    // the late one would turn a `delivered` row back into `failed` or
    // `dead` and send it once more. Claim 0 is a result made without a
    // claim (tools and tests), recorded as it is.
    let record = prepared.get(
        tx,
        "UPDATE deliveries d SET state = v.state, attempts = d.attempts + v.count,
           last_status = v.status, last_error = v.error, next_at = v.next_at, lease_until = NULL,
           delivered_at = CASE WHEN v.state = 'delivered' THEN v.at ELSE d.delivered_at END
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
           $6::bigint[], $7::bigint[], $8::bigint[])
           AS v(id, state, status, error, next_at, at, count, claim)
         WHERE d.id = v.id AND d.id = ANY($1) AND (v.claim = 0 OR d.claims = v.claim)",
    )?;
    tx.execute(
        &record,
        &[&id, &state, &status, &error, &next_at, &at, &count, &claim],
    )?;
    let delivered = first_per_id(
        results
            .iter()
            .filter(|f| f.state == DeliveryState::Delivered)
            .flat_map(|f| f.notices.iter().map(move |&n| (n, f.at_ms))),
    );
    mark_notified(tx, prepared, &delivered)
}

/// A claim is acknowledged to no one: if a crash forgets it, the delivery
/// is due again and sent again (at least once), which is what happens to
/// a remembered lease whose worker died too. So a claim alone commits
/// without waiting for the WAL flush (`synchronous_commit = off` for that
/// transaction only), as the SQLite queue commits its claims without an
/// fsync; results, which are acknowledged, always commit durably.
const CLAIM_UNSYNCED: &str = "SET LOCAL synchronous_commit = off";

impl DeliveryQueue for PgQueue {
    fn log_seq(&mut self) -> Result<u64, StoreError> {
        super::changes::last_seq(self.conn.client()?)
    }

    /// Puts back deliveries whose lease expired (a worker or a node died
    /// mid-attempt): at-least-once, the receiver may see them twice. A
    /// claim takes such a row anyway; putting it back shows it as pending
    /// again and dates it for `next_due`. Leased rows were due when they
    /// were claimed, so only due rows are looked at. A row a worker is
    /// finishing right now is skipped (its result clears the lease
    /// anyway), so nodes releasing at once never wait on it.
    fn release_expired(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        in_transaction(self.conn.client()?, |tx| {
            Ok(tx.execute(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id = ANY(ARRAY(SELECT id FROM deliveries
                                      WHERE state IN ('pending', 'failed') AND next_at <= $1
                                        AND lease_until < $1
                                      ORDER BY id FOR UPDATE SKIP LOCKED))",
                &[&now_ms],
            )? as usize)
        })
    }

    fn renew(&mut self, ids: &[i64], until_ms: i64) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self
            .conn
            .client()?
            .execute(
                "UPDATE deliveries SET lease_until = $2, next_at = $2
                 WHERE id = ANY($1) AND state IN ('pending', 'failed') AND lease_until IS NOT NULL",
                &[&ids, &until_ms],
            )
            .map_err(db_err)? as usize)
    }

    fn claim(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (client, prepared) = self.session()?;
        in_transaction(client, |tx| {
            tx.batch_execute(CLAIM_UNSYNCED)?;
            claim_rows(tx, prepared, now_ms, lease_ms, limit)
        })
    }

    /// Records attempts, in one transaction (group commit).
    fn finish(&mut self, results: &[Finished]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let (client, prepared) = self.session()?;
        in_transaction(client, |tx| record_results(tx, prepared, results))
    }

    /// Records attempts and claims the next due deliveries in one
    /// transaction (one durable commit a round).
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
        let (client, prepared) = self.session()?;
        in_transaction(client, |tx| {
            record_results(tx, prepared, results)?;
            if limit == 0 {
                return Ok(Vec::new());
            }
            claim_rows(tx, prepared, now_ms, lease_ms, limit)
        })
    }

    /// Dead deliveries of a subscription become pending again.
    fn replay(&mut self, subscription: &str, now_ms: i64) -> Result<usize, StoreError> {
        in_transaction(self.conn.client()?, |tx| {
            Ok(tx.execute(
                "UPDATE deliveries SET state = 'pending', next_at = $2, attempts = 0
                 WHERE subscription = $1 AND state = 'dead'",
                &[&subscription, &now_ms],
            )? as usize)
        })
    }

    /// Pending work of a disabled subscription goes to the dead letters.
    /// Run again if PostgreSQL picks it as a deadlock's victim (it locks
    /// a subscription's rows in whatever order it finds them).
    fn bury(&mut self, subscription: &str, reason: &str) -> Result<usize, StoreError> {
        in_transaction(self.conn.client()?, |tx| {
            Ok(tx.execute(
                "UPDATE deliveries SET state = 'dead', last_error = $2, lease_until = NULL
                 WHERE subscription = $1 AND state IN ('pending', 'failed', 'in_flight')",
                &[&subscription, &reason],
            )? as usize)
        })
    }

    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        let (client, prepared) = self.session()?;
        notices_by_ids(client, prepared, ids)
    }

    fn patches(&mut self, ids: &[i64]) -> Result<Vec<PatchRow>, StoreError> {
        super::service::patches_by_ids(self.conn.client()?, ids)
    }

    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError> {
        super::service::root_open_counts(self.conn.client()?, roots)
    }

    fn digest_open(
        &mut self,
        subscription: &str,
        tenant: patchline_core::TenantIdx,
        limit: usize,
    ) -> Result<Vec<crate::OpenGroup>, StoreError> {
        super::service::digest_open(self.conn.client()?, subscription, tenant, limit)
    }

    /// The earliest time something becomes due, if anything is queued and
    /// not leased, as on SQLite (a lease that runs out is found by a later
    /// round, or put back by `release_expired`). Asked only when a claim
    /// found nothing, so stepping over leased rows here costs no round.
    fn next_due(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .client()?
            .query_opt(
                "SELECT next_at FROM deliveries
                 WHERE state IN ('pending', 'failed') AND lease_until IS NULL
                 ORDER BY next_at LIMIT 1",
                &[],
            )
            .map(|r| r.map(|r| r.get(0)))
            .map_err(db_err)
    }
}
