//! The API's reads of notices and deliveries in PostgreSQL, on their own
//! connection.

use patchline_core::notice::{DeliveryState, Purpose};
use patchline_core::{AdvIdx, TenantIdx};

use super::service::{
    NOTICE_COLUMNS, NOTICE_FROM, first_per_id, mark_notified, notice_by_id, notice_from_row,
    notices_by_ids,
};
use super::{Conn, db_err, in_transaction, index};
use crate::service::{DeliveryInfo, StoredNotice};
use crate::{NoticeReader, StoreError};

/// Read queries of the API (and its `notified` marks).
pub struct PgReader {
    conn: Conn,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("target", &self.conn.target())
            .finish_non_exhaustive()
    }
}

impl PgReader {
    /// Connects to `url` (creating or migrating the schema if this is the
    /// first connection to it).
    pub fn open(url: &str) -> Result<PgReader, StoreError> {
        Ok(PgReader {
            conn: Conn::open(url)?,
        })
    }
}

fn limit_of(limit: usize) -> i64 {
    limit.min(i64::MAX as usize) as i64
}

/// The readers' only writes are `notified` marks, which no answer
/// acknowledges (a notice read and not marked is delivered or reminded
/// again: at least once), so they commit without waiting for the WAL flush,
/// as the SQLite reader commits them with `synchronous = NORMAL`: a stream
/// marking each live event does not pay a flush per event.
const MARK_UNSYNCED: &str = "SET LOCAL synchronous_commit = off";

impl NoticeReader for PgReader {
    /// Notices a tenant may read (its own, and those about the public,
    /// present artifacts it watches), after `after_id`, oldest first.
    /// Filtered in the query, so a page's cursor never moves over notices
    /// the reader may not see.
    fn notices_after(
        &mut self,
        tenant: TenantIdx,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        self.conn
            .client()?
            .query(
                &format!(
                    "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
                     WHERE n.id > $2 AND (n.tenant = $1 OR n.artifact IN (
                         SELECT w.artifact FROM watches w JOIN artifacts a ON a.idx = w.artifact
                         WHERE w.tenant = $1 AND a.visibility = 1 AND NOT a.removed))
                     ORDER BY n.id LIMIT $3"
                ),
                &[&i64::from(tenant.0), &after_id, &limit_of(limit)],
            )
            .map_err(db_err)?
            .iter()
            .map(notice_from_row)
            .collect()
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        notice_by_id(self.conn.client()?, id)
    }

    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        notices_by_ids(self.conn.client()?, ids)
    }

    /// Counts by (artifact kind code, state) of an advisory's notices.
    fn progress_counts(&mut self, adv: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT a.kind, n.state, count(*) FROM notices n JOIN artifacts a ON a.idx = n.artifact
                 WHERE n.advisory = $1 GROUP BY a.kind, n.state",
                &[&i64::from(adv.0)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((index(r.get(0), "artifact kind")?, r.get(1), r.get(2))))
            .collect()
    }

    /// State transitions of an advisory's notices per time bucket.
    fn progress_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT bucket, state, count(*) FROM (
                   SELECT (created_at / $2) * $2 AS bucket, 'affected'::text AS state
                     FROM notices WHERE advisory = $1
                   UNION ALL
                   SELECT (at / $2) * $2 AS bucket, state FROM notice_events WHERE advisory = $1) t
                 GROUP BY bucket, state ORDER BY bucket, state",
                &[&i64::from(adv.0), &bucket_ms.max(1)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((r.get(0), r.get(1), r.get(2))))
            .collect()
    }

    /// A subscription's deliveries, newest first, optionally in one state.
    fn deliveries(
        &mut self,
        subscription: &str,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        let state = state.map(DeliveryState::as_str);
        self.conn
            .client()?
            .query(
                "SELECT id, purpose, notices, state, attempts, next_at, last_status, last_error,
                        created_at, delivered_at
                 FROM deliveries WHERE subscription = $1 AND ($2::text IS NULL OR state = $2)
                 ORDER BY id DESC LIMIT $3",
                &[&subscription, &state, &limit_of(limit)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| {
                let purpose: &str = r.get(1);
                let state: &str = r.get(3);
                Ok(DeliveryInfo {
                    id: r.get(0),
                    purpose: Purpose::parse(purpose).ok_or_else(|| {
                        StoreError::Corrupt(format!("delivery purpose {purpose:?}"))
                    })?,
                    notices: r.get(2),
                    state: DeliveryState::parse(state)
                        .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
                    attempts: r.get(4),
                    next_at_ms: r.get(5),
                    last_status: r.get(6),
                    last_error: r.get(7),
                    created_at_ms: r.get(8),
                    delivered_at_ms: r.get(9),
                })
            })
            .collect()
    }

    /// Queue depth per state, for metrics.
    fn delivery_counts(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn
            .client()?
            .query("SELECT state, count(*) FROM deliveries GROUP BY state", &[])
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((r.get(0), r.get(1))))
            .collect()
    }

    /// Marks notices read through pull or a stream as notified.
    fn mark_notified(&mut self, ids: &[i64], at_ms: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let marks = first_per_id(ids.iter().map(|&id| (id, at_ms)));
        in_transaction(self.conn.client()?, |tx| {
            tx.batch_execute(MARK_UNSYNCED)?;
            mark_notified(tx, &marks)
        })
    }
}
