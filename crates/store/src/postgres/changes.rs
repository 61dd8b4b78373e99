//! The change log of a deployment of several nodes on one database.
//!
//! One writer at a time: a node takes the deployment's write lock (a
//! session advisory lock), reads the changes other nodes committed since
//! its own last one and applies them to its catalog, validates and applies
//! its write, and commits the rows with the next change's `seq` in the same
//! transaction. The primary key on `seq` is the fence: a node that lost its
//! lock (its connection was cut) and missed a change cannot commit over
//! it. Between writes a node follows the log (`catch_up`) in one snapshot.
//!
//! A change row lists what it wrote; a follower reads those rows back from
//! their tables (the state after the last change it reads, since it reads
//! every change up to the newest at once) and puts them in its catalog.

use std::collections::BTreeSet;

use ::postgres::GenericClient;
use patchline_core::{AdvIdx, AdvisoryDb, ArtIdx, Catalog, Changes, TenantId, TenantIdx};

use super::{ARTIFACT_COLUMNS, Fail, artifact_row, db_err, index};
use crate::codec;
use crate::service::Outbox;
use crate::{CaughtUp, SecretKeys, StoreError};

/// The deployment's write lock (`pg_advisory_lock`): the bytes spell
/// `plwrite!`.
pub(super) const WRITE_LOCK: i64 = 0x706c_7772_6974_6521;

/// Changes kept in the log: older ones are pruned, and a node that lags
/// further behind reloads whole ([`StoreError::Lagged`]).
pub(super) const KEPT: i64 = 100_000;

/// The log is pruned at every change whose sequence is a multiple of this.
const PRUNE_EVERY: i64 = 1024;

/// The last sequence committed (0 for an empty log).
pub(super) fn last_seq(client: &mut impl GenericClient) -> Result<u64, StoreError> {
    let seq: i64 = client
        .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
        .map_err(db_err)?
        .get(0);
    index(seq, "change sequence")
}

/// Whether a commit must be written to the log: the other nodes apply
/// it (catalog, records, service state) or act on it (new notices for
/// their streams, new deliveries for their workers).
pub(super) fn worth_logging(changes: &Changes, records: &[AdvIdx], outbox: &Outbox) -> bool {
    !changes.is_empty()
        || !records.is_empty()
        || outbox.touches_service()
        || !outbox.readers.is_empty()
        || !outbox.deliveries.is_empty()
}

/// Writes the change row `seq` (inside the commit's transaction): a
/// duplicate `seq` — another node committed a change this one had not
/// applied — aborts the commit.
pub(super) fn write_change(
    tx: &mut impl GenericClient,
    seq: u64,
    at_ms: i64,
    changes: &Changes,
    records: &[AdvIdx],
    outbox: &Outbox,
) -> Result<(), Fail> {
    let artifacts = codec::ids_to_blob(&changes.artifacts, |a| a.0);
    let records = codec::ids_to_blob(records, |r| r.0);
    let readers = encode_readers(&outbox.readers);
    let seq = i64::try_from(seq).map_err(|_| StoreError::Corrupt("change sequence".into()))?;
    let written = tx.execute(
        "INSERT INTO changes (seq, at, artifacts, records, service, readers, deliveries)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING",
        &[
            &seq,
            &at_ms,
            &artifacts,
            &records,
            &outbox.touches_service(),
            &readers,
            &(outbox.deliveries.len() as i64),
        ],
    )?;
    if written != 1 {
        return Err(StoreError::Conflict(format!(
            "another node committed change {seq} first (this node lost the deployment's write lock); nothing was written: try again"
        ))
        .into());
    }
    if seq % PRUNE_EVERY == 0 {
        tx.execute("DELETE FROM changes WHERE seq <= $1", &[&(seq - KEPT)])?;
    }
    Ok(())
}

/// Reads the changes after `after` and applies them to `catalog` and `db`.
/// The caller reads in one snapshot, or holds the write lock.
pub(super) fn read_changes(
    client: &mut impl GenericClient,
    after: u64,
    catalog: &mut Catalog,
    db: &mut AdvisoryDb,
    keys: &SecretKeys,
) -> Result<CaughtUp, StoreError> {
    let after_i = i64::try_from(after).map_err(|_| StoreError::Corrupt("sequence".into()))?;
    // Bounded on both sides: the log never holds more than `KEPT` changes
    // and the ones a prune leaves behind. The planner estimates a
    // one-sided `seq > $1` on a table it has no statistics for as a third
    // of the rows and read the whole log at every catch-up (a node's
    // every write catches up first); a range is estimated small, and read
    // through the primary key.
    let rows = client
        .query(
            "SELECT seq, artifacts, records, service, readers, deliveries
             FROM changes WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            &[&after_i, &after_i.saturating_add(KEPT + PRUNE_EVERY)],
        )
        .map_err(db_err)?;
    let mut caught = CaughtUp {
        seq: after,
        ..CaughtUp::default()
    };
    let Some(first) = rows.first() else {
        return Ok(caught);
    };
    let first: i64 = first.get(0);
    if first != after_i + 1 {
        return Err(StoreError::Lagged {
            applied: after,
            first: index(first, "change sequence")?,
        });
    }
    let mut artifacts = BTreeSet::new();
    let mut records = BTreeSet::new();
    let mut service = false;
    for r in &rows {
        caught.seq = index(r.get::<_, i64>(0), "change sequence")?;
        artifacts.extend(codec::blob_to_u32s(r.get(1))?);
        records.extend(codec::blob_to_u32s(r.get(2))?);
        service |= r.get::<_, bool>(3);
        caught.readers.extend(decode_readers(r.get(4))?);
        caught.deliveries += index::<u64>(r.get(5), "deliveries")?;
    }

    // Everything is read before anything is applied: a connection lost on
    // the way leaves the caller's catalog as it was.
    let tenants_from = catalog.tenants().len();
    let tenants = client
        .query(
            "SELECT idx, id FROM tenants WHERE idx >= $1 ORDER BY idx",
            &[&(tenants_from as i64)],
        )
        .map_err(db_err)?;
    let components_from = catalog.components().len();
    let components = client
        .query(
            "SELECT idx, purl FROM components WHERE idx >= $1 ORDER BY idx",
            &[&(components_from as i64)],
        )
        .map_err(db_err)?;
    let inventories_from = catalog.inventories().len();
    let inventories = client
        .query(
            "SELECT idx, base, added, removed FROM inventories WHERE idx >= $1 ORDER BY idx",
            &[&(inventories_from as i64)],
        )
        .map_err(db_err)?;
    let wanted_artifacts: Vec<i64> = artifacts.iter().map(|&a| i64::from(a)).collect();
    let artifact_rows = client
        .query(
            &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE idx = ANY($1) ORDER BY idx"),
            &[&wanted_artifacts],
        )
        .map_err(db_err)?;
    let wanted_records: Vec<i64> = records.iter().map(|&r| i64::from(r)).collect();
    let record_rows = client
        .query(
            "SELECT idx, id, kind, artifact, body FROM records WHERE idx = ANY($1) ORDER BY idx",
            &[&wanted_records],
        )
        .map_err(db_err)?;
    if service {
        caught.service = Some(super::service::load_service(client, keys)?);
    }

    for r in tenants {
        let idx: i64 = r.get(0);
        let id = TenantId::from_stored(r.get::<_, String>(1))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if i64::from(catalog.load_tenant(id).0) != idx {
            return Err(StoreError::Corrupt(format!("tenant index {idx}")));
        }
    }
    for r in components {
        let idx: i64 = r.get(0);
        let purl: &str = r.get(1);
        let got = catalog
            .components_mut()
            .intern(purl)
            .map_err(|e| StoreError::Corrupt(format!("component {purl}: {}", e.0)))?;
        if i64::from(got.0) != idx {
            return Err(StoreError::Corrupt(format!("component index {idx}")));
        }
    }
    for r in inventories {
        codec::push_inventory(catalog, r.get(0), r.get(1), r.get(2), r.get(3))?;
    }
    if artifact_rows.len() != wanted_artifacts.len() || record_rows.len() != wanted_records.len() {
        return Err(StoreError::Corrupt(
            "the change log names a row that is not stored".into(),
        ));
    }
    let mut nodes = Vec::with_capacity(artifact_rows.len());
    for r in artifact_rows {
        let row = artifact_row(&r);
        let idx = ArtIdx(index(row.idx, "artifact")?);
        nodes.push((idx, row.into_node(catalog.tenants().len())?));
    }
    let changed: Vec<ArtIdx> = nodes.iter().map(|(a, _)| *a).collect();
    catalog
        .restore_nodes(nodes)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for r in record_rows {
        caught.records.push(codec::restore_stored(
            db,
            catalog,
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
        )?);
    }
    caught.changes = Changes {
        tenants: tenants_from..catalog.tenants().len(),
        components: components_from..catalog.components().len(),
        inventories: inventories_from..catalog.inventories().len(),
        artifacts: changed,
    };
    Ok(caught)
}

/// The next free notice, delivery and group ids.
pub(super) fn next_ids(client: &mut impl GenericClient) -> Result<(i64, i64, i64), StoreError> {
    let r = client
        .query_one(
            "SELECT greatest((SELECT coalesce(max(id), 0) FROM notices),
                             (SELECT coalesce(max(id), 0) FROM patch_notices),
                             (SELECT coalesce(max(id), 0) FROM notice_roots)) + 1,
                    (SELECT coalesce(max(id), 0) + 1 FROM deliveries),
                    (SELECT coalesce(max(id), 0) + 1 FROM notice_groups)",
            &[],
        )
        .map_err(db_err)?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// Runs of (tenant, first id, count): a fan-out's notices are numbered by
/// tenant, so a million notices of a thousand tenants are a thousand runs.
fn encode_readers(readers: &[(TenantIdx, i64)]) -> Vec<u8> {
    let mut sorted = readers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut run: Option<(TenantIdx, i64, u32)> = None;
    let flush = |run: (TenantIdx, i64, u32), out: &mut Vec<u8>| {
        out.extend_from_slice(&run.0.0.to_le_bytes());
        out.extend_from_slice(&run.1.to_le_bytes());
        out.extend_from_slice(&run.2.to_le_bytes());
    };
    for (t, id) in sorted {
        match &mut run {
            Some((rt, first, n)) if *rt == t && *first + i64::from(*n) == id && *n < u32::MAX => {
                *n += 1
            }
            _ => {
                if let Some(r) = run.take() {
                    flush(r, &mut out);
                }
                run = Some((t, id, 1));
            }
        }
    }
    if let Some(r) = run {
        flush(r, &mut out);
    }
    out
}

fn decode_readers(blob: &[u8]) -> Result<Vec<(TenantIdx, i64)>, StoreError> {
    if !blob.len().is_multiple_of(16) {
        return Err(StoreError::Corrupt("change log readers".into()));
    }
    let mut out = Vec::new();
    for c in blob.chunks_exact(16) {
        let t = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let first = i64::from_le_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]);
        let n = u32::from_le_bytes([c[12], c[13], c[14], c[15]]);
        out.extend((0..i64::from(n)).map(|k| (TenantIdx(t), first + k)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_round_trip_as_runs() {
        let readers = vec![
            (TenantIdx(2), 10),
            (TenantIdx(1), 5),
            (TenantIdx(1), 6),
            (TenantIdx(1), 7),
            (TenantIdx(2), 11),
            (TenantIdx(1), 9),
            (TenantIdx(1), 6),
        ];
        let blob = encode_readers(&readers);
        // (1, 5..=7), (1, 9), (2, 10..=11)
        assert_eq!(blob.len(), 3 * 16);
        let mut want = readers.clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(decode_readers(&blob).unwrap(), want);
        assert!(decode_readers(&blob[..15]).is_err());
    }
}
