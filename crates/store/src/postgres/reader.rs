//! The API's reads of notices and deliveries in PostgreSQL, on their own
//! connection.

use patchline_core::notice::{DeliveryState, Purpose};
use patchline_core::{AdvIdx, TenantIdx};

use super::queue::SHOWN_STATE;
use super::service::{
    NOTICE_COLUMNS, NOTICE_FROM, first_per_id, mark_notified, notice_by_id, notice_from_row,
    notices_by_ids,
};
use super::{Conn, Prepared, in_transaction, index};
use crate::service::{DeliveryInfo, PatchRow, StoredNotice};
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

/// A tenant's readable notices after a cursor (`$1` tenant, `$2` after,
/// `$3` limit). The two kinds are read apart, each through its own index
/// (the tenant's notices by `(tenant, id)`, the watched artifacts' by
/// `artifact`), the first `limit` of each, then merged: the first `limit`
/// of the union are among them. One `tenant = $1 OR artifact IN (…)`
/// filter instead walked the whole table in id order whenever the tenant
/// had few notices after the cursor: 38 ms a call on 29,000 notices, so a
/// new server-sent event stream of a tenant without notices (which makes
/// this call) cost a scan of every notice.
fn notices_after_sql() -> String {
    format!(
        "SELECT {NOTICE_COLUMNS} FROM {NOTICE_FROM}
         WHERE n.id IN (
             (SELECT o.id FROM notices o WHERE o.tenant = $1 AND o.id > $2
              ORDER BY o.id LIMIT $3)
             UNION
             (SELECT v.id FROM notices v WHERE v.id > $2 AND v.artifact IN (
                  SELECT w.artifact FROM watches w JOIN artifacts a ON a.idx = w.artifact
                  WHERE w.tenant = $1 AND a.visibility = 1 AND NOT a.removed)
              ORDER BY v.id LIMIT $3))
         ORDER BY n.id LIMIT $3"
    )
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
    fn log_seq(&mut self) -> Result<u64, StoreError> {
        self.conn.read(super::changes::last_seq)
    }

    /// Notices a tenant may read (its own, and those about the public,
    /// present artifacts it watches), after `after_id`, oldest first.
    /// Filtered in the query, so a page's cursor never moves over notices
    /// the reader may not see.
    /// (See [`notices_after_sql`].)
    fn notices_after(
        &mut self,
        tenant: TenantIdx,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        self.conn
            .query(
                &notices_after_sql(),
                &[&i64::from(tenant.0), &after_id, &limit_of(limit)],
            )?
            .iter()
            .map(notice_from_row)
            .collect()
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        self.conn.read(|c| notice_by_id(c, id))
    }

    fn notices(&mut self, ids: &[i64]) -> Result<Vec<StoredNotice>, StoreError> {
        self.conn
            .read(|c| notices_by_ids(c, &mut Prepared::default(), ids))
    }

    fn root_open_counts(&mut self, roots: &[i64]) -> Result<Vec<(i64, u64)>, StoreError> {
        self.conn
            .read(|c| super::service::root_open_counts(c, roots))
    }

    fn root_notices_after(
        &mut self,
        root: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        self.conn
            .read(|c| super::service::root_notices_after(c, root, after_id, limit))
    }

    fn patches_after(
        &mut self,
        tenant: Option<TenantIdx>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PatchRow>, StoreError> {
        self.conn
            .read(|c| super::service::patches_after(c, tenant, after_id, limit_of(limit)))
    }

    /// Counts by (artifact kind code, state) of an advisory's notices.
    fn progress_counts(&mut self, adv: AdvIdx) -> Result<Vec<(u8, String, i64)>, StoreError> {
        self.conn
            .query(
                "SELECT a.kind, n.state, count(*) FROM notices n JOIN artifacts a ON a.idx = n.artifact
                 WHERE n.advisory = $1 GROUP BY a.kind, n.state",
                &[&i64::from(adv.0)],
            )?
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
            .query(
                "SELECT bucket, state, count(*) FROM (
                   SELECT (created_at / $2) * $2 AS bucket, 'affected'::text AS state
                     FROM notices WHERE advisory = $1
                   UNION ALL
                   SELECT (at / $2) * $2 AS bucket, state FROM notice_events WHERE advisory = $1) t
                 GROUP BY bucket, state ORDER BY bucket, state",
                &[&i64::from(adv.0), &bucket_ms.max(1)],
            )?
            .iter()
            .map(|r| Ok((r.get(0), r.get(1), r.get(2))))
            .collect()
    }

    fn remediation_counts(&mut self, adv: AdvIdx) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn
            .query(
                "SELECT coalesce(remediated_by::jsonb ->> 'cause', 'unknown') AS cause, count(*)
                 FROM notices WHERE advisory = $1 AND state = 'remediated'
                 GROUP BY cause ORDER BY cause",
                &[&i64::from(adv.0)],
            )?
            .iter()
            .map(|r| Ok((r.get(0), r.get(1))))
            .collect()
    }

    fn remediation_history(
        &mut self,
        adv: AdvIdx,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        self.conn
            .query(
                "SELECT (at / $2) * $2 AS bucket, cause, count(*) FROM notice_events
                 WHERE advisory = $1 AND state = 'remediated' AND cause IS NOT NULL
                 GROUP BY bucket, cause ORDER BY bucket, cause",
                &[&i64::from(adv.0), &bucket_ms.max(1)],
            )?
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
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT id, purpose, notices, {SHOWN_STATE}, attempts, next_at, last_status,
                        last_error, created_at, delivered_at
                 FROM deliveries WHERE subscription = $1 AND ($2::text IS NULL OR {SHOWN_STATE} = $2)
                 ORDER BY id DESC LIMIT $3"
            )
        });
        self.conn
            .query(SQL.as_str(), &[&subscription, &state, &limit_of(limit)])?
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
            .query(
                &format!("SELECT {SHOWN_STATE} AS s, count(*) FROM deliveries GROUP BY s"),
                &[],
            )?
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
            mark_notified(tx, &mut Prepared::default(), &marks)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchline_testkit::postgres::TestDb;

    /// A tenant without notices among many of another tenant's: the page
    /// comes through the indexes, not by filtering every notice (what the
    /// single `tenant = $1 OR …` filter did: every row read and dropped).
    #[test]
    fn notices_after_reads_through_the_indexes() {
        let Some(db) = TestDb::create("notices_after_reads_through_the_indexes") else {
            return;
        };
        let mut reader = PgReader::open(&db.url).unwrap();
        let mut client = db.client();
        client
            .batch_execute(
                "INSERT INTO notice_groups (id, advisory, components) VALUES (1, 0, '[]');
                 INSERT INTO notices (id, advisory, artifact, tenant, state, grp, path,
                                      created_at, updated_at, reminded_at)
                 SELECT g, 0, g, 1, 'affected', 1, '\\x', 0, 0, 0
                 FROM generate_series(1, 20000) g;
                 ANALYZE notices, notice_groups, watches, artifacts",
            )
            .unwrap();
        assert!(
            reader
                .notices_after(TenantIdx(2), 0, 1000)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            reader.notices_after(TenantIdx(1), 19_990, 5).unwrap().len(),
            5
        );
        let plan: Vec<String> = client
            .query(
                &format!(
                    "EXPLAIN (ANALYZE, COSTS OFF) {}",
                    notices_after_sql()
                        .replace("$1", "2")
                        .replace("$2", "0")
                        .replace("$3", "1000")
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let removed: i64 = plan
            .iter()
            .filter_map(|l| l.trim().strip_prefix("Rows Removed by Filter: "))
            .map(|n| n.trim().parse::<i64>().unwrap())
            .sum();
        assert!(removed < 100, "{}", plan.join("\n"));
    }
}
