//! Patch notices: a patched successor announced to the tenants it fixes
//! something for. The engine writes one per (tenant, record, root cause)
//! when an artifact that `supersedes` another is published; the store keeps
//! its [`PatchDoc`] as text (artifact and record indexes, so that a name or
//! a visibility changed later shows as it is when the notice is read); the
//! worker, the pull route and the tests render it for a reader as a
//! [`PatchNotice`].

use patchline_core::notice::Severity;
use patchline_core::{AdvIdx, ArtIdx};
use patchline_store::PatchRow;
use serde::{Deserialize, Serialize};

use crate::doc::{Reader, shown_id};
use crate::view::Names;

/// The version of the stored patch document.
pub const PATCH_DOC_VERSION: u32 = 1;

/// Most artifacts one patch notice lists (the rest is counted:
/// `clears_total`; `affected` and `remedy` have them all).
pub const PATCH_CLEARS_MAX: usize = 1000;

/// Most steps of the plan one patch notice carries (`steps_total` counts
/// them all; `remedy` has the whole plan), and most artifacts each lists:
/// a patch notice stays well under a webhook message's size.
pub const PATCH_STEPS_MAX: usize = 100;
/// Most records one patch notice names under `breaks` (`breaks_total`
/// counts them all).
pub const PATCH_BREAKS_MAX: usize = 100;
pub const PATCH_STEP_CLEARS_MAX: usize = 100;

/// One step of the tenant's plan, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredStep {
    pub artifact: u32,
    /// `rebase`, `rebuild` or `relaunch`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<u32>,
    /// At most [`PATCH_CLEARS_MAX`].
    pub clears: Vec<u32>,
    pub clears_total: u64,
}

/// What a patch notice says, as stored (`patch_notices.doc`):
/// `{"v":1, "supersedes", "introduced_by", "clears", "clears_total",
/// "steps", "breaks"}` with artifact and record indexes. Unknown versions
/// (a newer build's) do not read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatchDoc {
    pub v: u32,
    /// The artifact the successor replaces.
    pub supersedes: u32,
    /// Where the record came into the tenant's artifacts (the root cause).
    pub introduced_by: u32,
    /// The tenant's artifacts the successor clears (strictly below what it
    /// supersedes, every chain through it), at most [`PATCH_CLEARS_MAX`].
    pub clears: Vec<u32>,
    pub clears_total: u64,
    /// The tenant's remedy plan for the record, top-down: the first
    /// [`PATCH_STEPS_MAX`] steps.
    pub steps: Vec<StoredStep>,
    pub steps_total: u64,
    /// Records the successor carries that what it supersedes did not (that
    /// the tenant may know of), the first [`PATCH_BREAKS_MAX`].
    pub breaks: Vec<u32>,
    #[serde(default)]
    pub breaks_total: u64,
}

impl PatchDoc {
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_stored(text: &str) -> Option<PatchDoc> {
        let doc: PatchDoc = serde_json::from_str(text).ok()?;
        (doc.v == PATCH_DOC_VERSION).then_some(doc)
    }
}

/// Stores the first `max` of `ids` and their count.
pub fn capped(ids: impl IntoIterator<Item = ArtIdx>, max: usize) -> (Vec<u32>, u64) {
    let mut total = 0u64;
    let mut kept = Vec::new();
    for a in ids {
        if kept.len() < max {
            kept.push(a.0);
        }
        total += 1;
    }
    (kept, total)
}

/// The stored form of the plan: the first [`PATCH_STEPS_MAX`] steps, each
/// with its first [`PATCH_STEP_CLEARS_MAX`] artifacts.
pub fn stored_steps<'a>(
    steps: impl IntoIterator<Item = &'a patchline_core::remedy::Step>,
) -> (Vec<StoredStep>, u64) {
    let mut total = 0u64;
    let mut kept = Vec::new();
    for step in steps {
        total += 1;
        if kept.len() >= PATCH_STEPS_MAX {
            continue;
        }
        let (clears, clears_total) = capped(step.clears.iter().copied(), PATCH_STEP_CLEARS_MAX);
        kept.push(StoredStep {
            artifact: step.artifact.0,
            action: step.action.as_str().to_string(),
            onto: step.onto.map(|a| a.0),
            waits_for: step.waits_for.map(|a| a.0),
            clears,
            clears_total,
        });
    }
    (kept, total)
}

/// One step of the plan as a reader sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatchStep {
    pub artifact: String,
    /// `rebase`, `rebuild` or `relaunch`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    pub clears: Vec<String>,
    pub clears_total: u64,
}

/// A patch notice as its tenant (or an admin) reads it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatchNotice {
    /// From the notices' id space.
    pub notice_id: i64,
    pub tenant: String,
    /// The record the successor fixes for the tenant.
    pub advisory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The patched successor.
    pub successor: String,
    /// What it replaces.
    pub supersedes: String,
    /// Where the record came in (the root cause).
    pub introduced_by: String,
    /// The tenant's artifacts it clears (the first
    /// [`PATCH_CLEARS_MAX`]), and how many in all.
    pub clears: Vec<String>,
    pub clears_total: u64,
    /// The tenant's remedy plan for the record, top-down (the first
    /// [`PATCH_STEPS_MAX`] steps), and how many steps in all.
    pub plan: Vec<PatchStep>,
    pub steps_total: u64,
    /// Records the successor carries that what it replaces did not (a
    /// regression is news too): the first [`PATCH_BREAKS_MAX`] the tenant
    /// may know of, and how many in all.
    pub breaks: Vec<String>,
    pub breaks_total: u64,
    pub created_at: String,
}

impl PatchNotice {
    /// Renders a stored patch notice for `reader`: its tenant and admins
    /// read it, anyone else nothing; ids the reader may not see (made
    /// private since) read `(private)`. `None` too when the document does
    /// not read (a newer build's) or names what this view does not hold.
    pub fn render(row: &PatchRow, names: &Names, reader: Reader) -> Option<PatchNotice> {
        if let Reader::Tenant(t) = reader
            && t != row.tenant
        {
            return None;
        }
        let doc = PatchDoc::from_stored(&row.doc)?;
        let record = names.record(row.record)?;
        names.artifact(row.successor)?;
        let id = |a: u32| shown_id(names, reader, ArtIdx(a));
        let ids = |v: &[u32]| v.iter().map(|&a| id(a)).collect::<Vec<_>>();
        Some(PatchNotice {
            notice_id: row.id,
            tenant: names.tenant(row.tenant).to_string(),
            advisory: record.id.to_string(),
            summary: record.summary.as_deref().map(str::to_string),
            severity: record.severity,
            successor: id(row.successor.0),
            supersedes: id(doc.supersedes),
            introduced_by: id(doc.introduced_by),
            clears: ids(&doc.clears),
            clears_total: doc.clears_total,
            plan: doc
                .steps
                .iter()
                .map(|s| PatchStep {
                    artifact: id(s.artifact),
                    action: s.action.clone(),
                    onto: s.onto.map(id),
                    waits_for: s.waits_for.map(id),
                    clears: ids(&s.clears),
                    clears_total: s.clears_total,
                })
                .collect(),
            steps_total: doc.steps_total,
            breaks: doc
                .breaks
                .iter()
                .filter_map(|&r| names.record(AdvIdx(r)).map(|f| f.id.to_string()))
                .collect(),
            breaks_total: doc.breaks_total,
            created_at: patchline_core::timestamp::format_unix(row.at_ms.div_euclid(1000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_versioned() {
        let doc = PatchDoc {
            v: PATCH_DOC_VERSION,
            supersedes: 1,
            introduced_by: 1,
            clears: vec![2, 3],
            clears_total: 2,
            steps: vec![StoredStep {
                artifact: 2,
                action: "rebase".into(),
                onto: Some(4),
                waits_for: None,
                clears: vec![2, 3],
                clears_total: 2,
            }],
            steps_total: 1,
            breaks: vec![],
            breaks_total: 0,
        };
        let text = doc.to_stored();
        assert!(text.starts_with("{\"v\":1,"), "{text}");
        assert_eq!(PatchDoc::from_stored(&text), Some(doc));
        assert_eq!(
            PatchDoc::from_stored(&text.replace("\"v\":1", "\"v\":2")),
            None
        );
        assert_eq!(PatchDoc::from_stored("[1,2]"), None);
    }

    #[test]
    fn lists_are_capped_and_counted() {
        let (kept, total) = capped((0..2500).map(ArtIdx), PATCH_CLEARS_MAX);
        assert_eq!((kept.len(), total), (PATCH_CLEARS_MAX, 2500));
        assert_eq!(kept[999], 999);
    }
}
