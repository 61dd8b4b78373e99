//! The row forms every backend shares: how an artifact, an inventory and a
//! record become column values and how they are read back, so that SQLite
//! and PostgreSQL store the same things the same way and load them with
//! the same checks.

use std::collections::BTreeMap;

use patchline_core::advisory::Failure;
use patchline_core::catalog::Node;
use patchline_core::inventory::{ComponentId, InvId, InvObj};
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    AdvIdx, Advisory, AdvisoryDb, AdvisoryId, ArtIdx, ArtifactId, Catalog, Kind, Record, Relation,
    TenantIdx, Visibility,
};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How a failure is stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct FailureBody {
    summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
    modified: String,
    #[serde(default)]
    withdrawn: bool,
}

/// Component ids as little-endian `u32`s (an inventory's added or removed
/// list).
pub(crate) fn ids_to_blob<T: Copy>(ids: &[T], get: impl Fn(T) -> u32) -> Vec<u8> {
    ids.iter().flat_map(|&i| get(i).to_le_bytes()).collect()
}

pub(crate) fn blob_to_ids(blob: &[u8]) -> Result<Vec<ComponentId>, StoreError> {
    Ok(blob_to_u32s(blob)?.into_iter().map(ComponentId).collect())
}

/// Little-endian `u32`s (indexes) back from a blob.
pub(crate) fn blob_to_u32s(blob: &[u8]) -> Result<Vec<u32>, StoreError> {
    if !blob.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt("index blob length".into()));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Appends a stored inventory to the catalog, checking that it lands at
/// its stored index and that its base comes before it.
pub(crate) fn push_inventory(
    catalog: &mut Catalog,
    idx: i64,
    base: Option<i64>,
    added: &[u8],
    removed: &[u8],
) -> Result<(), StoreError> {
    let added = blob_to_ids(added)?;
    let removed = blob_to_ids(removed)?;
    let inventories = catalog.inventories_mut();
    let depth = match base {
        Some(b) if b >= 0 && (b as usize) < inventories.len() => {
            inventories.get(InvId(b as u32)).depth + 1
        }
        Some(_) => return Err(StoreError::Corrupt(format!("inventory {idx} base"))),
        None => 0,
    };
    let got = inventories.push(InvObj {
        base: base.map(|b| InvId(b as u32)),
        added: added.into(),
        removed: removed.into(),
        depth,
    });
    if i64::from(got.0) != idx {
        return Err(StoreError::Corrupt(format!("inventory index {idx}")));
    }
    Ok(())
}

/// An artifact as column values.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactRow {
    pub idx: i64,
    pub id: String,
    pub kind: i64,
    pub tenant: i64,
    pub parent: Option<i64>,
    pub relation: Option<i64>,
    /// 1 for public, 0 for private.
    pub visibility: i64,
    pub name: Option<String>,
    /// JSON object, `None` when there are no labels.
    pub labels: Option<String>,
    pub inventory: Option<i64>,
    /// JSON list of record ids, `None` when there are none.
    pub fixes: Option<String>,
    /// JSON list of inventory warnings, `None` when there are none.
    pub warnings: Option<String>,
    pub removed: bool,
    /// Index of the artifact this one supersedes.
    pub supersedes: Option<i64>,
}

impl ArtifactRow {
    pub(crate) fn of(catalog: &Catalog, a: ArtIdx) -> Result<ArtifactRow, StoreError> {
        let n = catalog.node(a);
        let labels = (!n.labels.is_empty())
            .then(|| serde_json::to_string(&n.labels))
            .transpose()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let fixes = (!n.fixes.is_empty())
            .then(|| serde_json::to_string(&n.fixes))
            .transpose()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let warnings = (!n.warnings.is_empty())
            .then(|| serde_json::to_string(&n.warnings))
            .transpose()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(ArtifactRow {
            idx: i64::from(a.0),
            id: n.id.as_str().to_string(),
            kind: i64::from(n.kind.code()),
            tenant: i64::from(n.tenant.0),
            parent: n.parent.map(|p| i64::from(p.0)),
            relation: n.relation.map(|r| i64::from(r.code())),
            visibility: i64::from(n.visibility == Visibility::Public),
            name: n.name.as_deref().map(str::to_string),
            labels,
            inventory: n.inventory.map(|i| i64::from(i.0)),
            fixes,
            warnings,
            removed: n.removed,
            supersedes: n.supersedes.map(|s| i64::from(s.0)),
        })
    }

    /// The node this row stores; `tenants` is how many tenants are loaded.
    pub(crate) fn into_node(self, tenants: usize) -> Result<Node, StoreError> {
        let idx = self.idx;
        let corrupt = |what: &str| StoreError::Corrupt(format!("artifact {idx}: {what}"));
        let small = |v: i64, what: &str| u8::try_from(v).map_err(|_| corrupt(what));
        let index = |v: i64, what: &str| u32::try_from(v).map_err(|_| corrupt(what));
        let kind = Kind::from_code(small(self.kind, "kind")?).ok_or_else(|| corrupt("kind"))?;
        let relation = match self.relation {
            Some(code) => Some(
                Relation::from_code(small(code, "relation")?).ok_or_else(|| corrupt("relation"))?,
            ),
            None => None,
        };
        let visibility = match self.visibility {
            0 => Visibility::Private,
            _ => Visibility::Public,
        };
        let labels: BTreeMap<String, String> = match self.labels {
            Some(text) => serde_json::from_str(&text).map_err(|_| corrupt("labels"))?,
            None => BTreeMap::new(),
        };
        let fixes: Vec<AdvisoryId> = match self.fixes {
            Some(text) => serde_json::from_str::<Vec<String>>(&text)
                .map_err(|_| corrupt("fixes"))?
                .into_iter()
                .map(AdvisoryId::from_stored)
                .collect::<Result<_, _>>()
                .map_err(|_| corrupt("fixes"))?,
            None => Vec::new(),
        };
        let warnings: Vec<Box<str>> = match self.warnings {
            Some(text) => serde_json::from_str(&text).map_err(|_| corrupt("warnings"))?,
            None => Vec::new(),
        };
        let tenant = index(self.tenant, "tenant")?;
        if tenant as usize >= tenants {
            return Err(corrupt("tenant"));
        }
        let parent = self.parent.map(|p| index(p, "parent")).transpose()?;
        let inventory = self.inventory.map(|i| index(i, "inventory")).transpose()?;
        let supersedes = self
            .supersedes
            .map(|s| index(s, "supersedes"))
            .transpose()?;
        Ok(Node {
            id: ArtifactId::from_stored(self.id).map_err(|_| corrupt("id"))?,
            kind,
            tenant: TenantIdx(tenant),
            parent: parent.map(ArtIdx),
            relation,
            visibility,
            name: self.name.map(Into::into),
            labels,
            inventory: inventory.map(InvId),
            fixes: fixes.into(),
            supersedes: supersedes.map(ArtIdx),
            warnings: warnings.into(),
            removed: self.removed,
        })
    }
}

/// A record (advisory or failure) as column values.
#[derive(Debug, Clone)]
pub(crate) struct RecordRow {
    pub idx: i64,
    pub id: String,
    /// `advisory` or `failure`.
    pub kind: &'static str,
    pub modified: String,
    /// The failed artifact (failures only).
    pub artifact: Option<i64>,
    /// The OSV JSON of an advisory, a [`FailureBody`] of a failure.
    pub body: String,
}

impl RecordRow {
    pub(crate) fn of(db: &AdvisoryDb, r: AdvIdx) -> Result<RecordRow, StoreError> {
        let record = db.get(r);
        let (kind, modified, artifact, body) = match record {
            Record::Advisory(a) => (
                "advisory",
                a.osv.modified.clone(),
                None,
                serde_json::to_string(&a.osv),
            ),
            Record::Failure(f) => (
                "failure",
                f.modified_text.clone(),
                Some(i64::from(f.artifact.0)),
                serde_json::to_string(&FailureBody {
                    summary: f.summary.clone(),
                    details: f.details.clone(),
                    severity: f.severity.clone(),
                    modified: f.modified_text.clone(),
                    withdrawn: f.withdrawn,
                }),
            ),
        };
        Ok(RecordRow {
            idx: i64::from(r.0),
            id: record.id().as_str().to_string(),
            kind,
            modified,
            artifact,
            body: body.map_err(|e| StoreError::Database(e.to_string()))?,
        })
    }
}

/// Publishes a stored record into `db`, checking that it lands at its
/// stored index.
pub(crate) fn publish_stored(
    db: &mut AdvisoryDb,
    catalog: &Catalog,
    idx: i64,
    id: String,
    kind: &str,
    artifact: Option<i64>,
    body: &str,
) -> Result<(), StoreError> {
    let record = record_of(catalog, id, kind, artifact, body)?;
    let id = record.id().to_string();
    let published = db
        .publish(record)
        .map_err(|e| StoreError::Corrupt(format!("record {id}: {e}")))?;
    if i64::from(published.idx().0) != idx {
        return Err(StoreError::Corrupt(format!("record {id}: index {idx}")));
    }
    Ok(())
}

/// Puts a stored record at its index, replacing what is there (a
/// follower catching up with another node's commit).
pub(crate) fn restore_stored(
    db: &mut AdvisoryDb,
    catalog: &Catalog,
    idx: i64,
    id: String,
    kind: &str,
    artifact: Option<i64>,
    body: &str,
) -> Result<AdvIdx, StoreError> {
    let record = record_of(catalog, id, kind, artifact, body)?;
    let adv = AdvIdx(crate::postgres::index(idx, "record")?);
    db.restore(adv, record).map_err(StoreError::Corrupt)?;
    Ok(adv)
}

/// A stored record's row as the record it is.
fn record_of(
    catalog: &Catalog,
    id: String,
    kind: &str,
    artifact: Option<i64>,
    body: &str,
) -> Result<Record, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("record {id}: {what}"));
    let record = match kind {
        "advisory" => {
            let osv = patchline_formats::osv::parse_json(body.as_bytes())
                .map_err(|e| corrupt(e.to_string()))?;
            Record::Advisory(Advisory::compile_stored(osv).map_err(|e| corrupt(e.to_string()))?)
        }
        _ => {
            let b: FailureBody = serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))?;
            let artifact = artifact
                .and_then(|a| u32::try_from(a).ok())
                .filter(|&a| (a as usize) < catalog.len())
                .ok_or_else(|| corrupt("artifact".into()))?;
            Record::Failure(Failure {
                id: AdvisoryId::from_stored(id.clone()).map_err(|e| corrupt(e.to_string()))?,
                artifact: ArtIdx(artifact),
                summary: b.summary,
                details: b.details,
                severity: b.severity,
                modified: parse_rfc3339(&b.modified).ok_or_else(|| corrupt("modified".into()))?,
                modified_text: b.modified,
                withdrawn: b.withdrawn,
            })
        }
    };
    Ok(record)
}
