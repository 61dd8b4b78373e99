//! Grouped notices: one entry per root cause instead of one per artifact.
//!
//! A tenant's notices of one record that came in at the same top-most
//! `introduced_by` and ask the same remedy step of the tenant share a root
//! cause (`notice_roots`, made by the engine with the notices). A grouped
//! reader gets one [`GroupedNotice`] per root cause in a message or page:
//! its own `notice_id` (the root's, from the notices' sequence), the step
//! (`action` at `artifact`), where it came in, and the member artifacts
//! (up to [`GROUP_ARTIFACTS_MAX`] listed, the rest counted). The member
//! notices stay tracked one by one underneath (states, acknowledgements,
//! remediation); acknowledging the group acknowledges its open members.
//!
//! Records that alias one vulnerability share root causes (the engine
//! joins a record's new cause to the root of a record that agrees with
//! it), so one entry can hold several records' notices: it lists the
//! records that agree (`records`, the root's own first) and each member
//! artifact once, with its notice of each record.
//!
//! Only the owner's own notices group (and an admin's reading): a watcher
//! reads another tenant's public artifacts one notice each, and a notice
//! written before grouping (no root) is a group of its own, rendered as
//! it always was.

use std::collections::{BTreeMap, HashMap};

use patchline_core::notice::{Grouping, NoticeState, Severity};
use patchline_core::{ArtIdx, Kind};
use patchline_store::StoredNotice;
use serde::Serialize;

use crate::doc::{AffectedComponent, NoticeDoc, Reader};
use crate::view::Names;

/// Most member artifacts one grouped entry lists (the rest are counted in
/// `artifacts_omitted`; the group's page lists them all).
pub const GROUP_ARTIFACTS_MAX: usize = 100;

/// One member of a grouped notice.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupMember {
    pub notice_id: i64,
    pub artifact: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<NoticeState>,
    /// In a group where records agree: this artifact's notice of each
    /// record (the member's own first). Left out otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<MemberRecord>,
}

/// One record's notice on a member artifact of a group where records
/// agree.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberRecord {
    pub advisory: String,
    pub notice_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<NoticeState>,
}

/// The notices of one root cause, as one entry of `data.notices` (or of a
/// page): the fields of a notice (`notice_id`, `advisory`, `artifact`,
/// `kind`, `components`, `path`) with `artifact` the step's artifact and
/// `path` the lineage from where the record came in down to it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupedNotice {
    /// The group's own id (acknowledging it acknowledges its open members).
    pub notice_id: i64,
    /// Always `grouped`.
    pub grouping: Grouping,
    /// The record whose root cause it is.
    pub advisory: String,
    /// The records that agree on it (alias one vulnerability) when more
    /// than one does: `advisory` first, then the records of the members
    /// carried. Left out for one record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// Where the step acts: the artifact to rebuild or rebase, or the
    /// template or replica whose instances are relaunched.
    pub artifact: String,
    /// Its kind; left out when the reader may not see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `rebuild`, `rebase` or `relaunch`.
    pub action: &'static str,
    /// The patched successor to rebase or relaunch onto, once one exists
    /// that the reader may see (and the record does not affect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    /// Without a successor yet: the upstream artifact whose successor the
    /// step needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// The top-most artifact where the record came in.
    pub introduced_by: String,
    /// The affected components of the first member listed.
    pub components: Vec<AffectedComponent>,
    /// From `introduced_by` down to `artifact`.
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failure: bool,
    /// The members this message or page carries (new, reopened or
    /// reminded ones), an artifact once, up to [`GROUP_ARTIFACTS_MAX`].
    pub artifacts: Vec<GroupMember>,
    /// Members carried and not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub artifacts_omitted: usize,
    /// The group's member artifacts with an open notice now (affected,
    /// notified or acknowledged), over every message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts_open: Option<u64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How open a state is, most open first: a member artifact of a group
/// where records agree reads as its most open notice.
fn urgency(state: Option<NoticeState>) -> u8 {
    match state {
        Some(NoticeState::Affected) => 0,
        Some(NoticeState::Notified) => 1,
        Some(NoticeState::Acknowledged) => 2,
        Some(NoticeState::NotAffected) => 3,
        Some(NoticeState::Remediated) => 4,
        None => 5,
    }
}

/// What a step waits for, shown only while no successor to move onto is
/// shown (one the reader may not see, or removed since, is not).
fn waits_for(names: &Names, reader: Reader, root: &patchline_store::StoredRoot) -> Option<String> {
    match plan_id(names, reader, root.onto) {
        Some(_) => None,
        None => plan_id(names, reader, root.waits_for),
    }
}

/// An artifact a step names, when the reader may see it and it is not
/// removed.
fn plan_id(names: &Names, reader: Reader, a: Option<ArtIdx>) -> Option<String> {
    let a = a?;
    let (id, facts) = names.artifact(a)?;
    (crate::may_see(names, reader, a) && !facts.removed).then(|| id.to_string())
}

/// One entry of a message or page: a group, or a notice on its own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Entry {
    Grouped(GroupedNotice),
    Notice(NoticeDoc),
}

impl Entry {
    pub fn notice_id(&self) -> i64 {
        match self {
            Entry::Grouped(g) => g.notice_id,
            Entry::Notice(n) => n.notice_id,
        }
    }
}

/// The root ids the `rows` that `reader` would read grouped belong to
/// (for [`group`]'s open counts), sorted, each once.
pub fn roots_of(rows: &[StoredNotice], reader: Reader) -> Vec<i64> {
    let mut roots: Vec<i64> = rows
        .iter()
        .filter(|n| groups_for(n, reader))
        .filter_map(|n| n.root.map(|r| r.id))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots
}

/// Whether `reader` reads `n` inside its group: the owner's (or an
/// admin's) notice with a root cause.
fn groups_for(n: &StoredNotice, reader: Reader) -> bool {
    n.root.is_some()
        && match reader {
            Reader::Admin => true,
            Reader::Tenant(t) => t == n.tenant,
        }
}

/// Groups rendered notices: `docs` are `rows` rendered for `reader` (the
/// rows it may not read left out, order kept); each root cause becomes one
/// entry at the place of its first member, every other notice stays as it
/// is. `open` gives groups' open members now, where known.
pub fn group(
    rows: &[StoredNotice],
    docs: Vec<NoticeDoc>,
    names: &Names,
    reader: Reader,
    open: &HashMap<i64, u64>,
) -> Vec<Entry> {
    let by_id: HashMap<i64, &StoredNotice> = rows.iter().map(|n| (n.id, n)).collect();
    let mut out: Vec<Entry> = Vec::with_capacity(docs.len());
    // root id -> index of its entry in `out`.
    let mut at: BTreeMap<i64, usize> = BTreeMap::new();
    // (entry, member artifact) -> index in the entry's `artifacts` (None:
    // counted in `artifacts_omitted`).
    let mut listed: HashMap<(usize, String), Option<usize>> = HashMap::new();
    for doc in docs {
        let Some(row) = by_id.get(&doc.notice_id).filter(|n| groups_for(n, reader)) else {
            out.push(Entry::Notice(doc));
            continue;
        };
        let Some(root) = row.root else {
            out.push(Entry::Notice(doc));
            continue;
        };
        let own = MemberRecord {
            advisory: doc.body.advisory.clone(),
            notice_id: doc.notice_id,
            state: doc.state,
        };
        let member = GroupMember {
            notice_id: doc.notice_id,
            artifact: doc.body.artifact.clone(),
            kind: doc.body.kind,
            state: doc.state,
            records: Vec::new(),
        };
        if let Some(&i) = at.get(&root.id) {
            if let Entry::Grouped(g) = &mut out[i] {
                if !g.records.contains(&own.advisory) {
                    g.records.push(own.advisory.clone());
                }
                match listed.get(&(i, member.artifact.clone())) {
                    // Another record's notice on a member already carried:
                    // the member reads as its most open notice.
                    Some(Some(m)) => {
                        let m = &mut g.artifacts[*m];
                        if urgency(own.state) < urgency(m.state) {
                            m.state = own.state;
                        }
                        m.records.push(own);
                    }
                    Some(None) => {}
                    None => {
                        let slot = (g.artifacts.len() < GROUP_ARTIFACTS_MAX).then(|| {
                            g.artifacts.push(GroupMember {
                                records: vec![own],
                                ..member.clone()
                            });
                            g.artifacts.len() - 1
                        });
                        if slot.is_none() {
                            g.artifacts_omitted += 1;
                        }
                        listed.insert((i, member.artifact), slot);
                    }
                }
            }
            continue;
        }
        // The path down to the step's artifact (it is on the member's
        // path: the step sits on the chain from the introduction down).
        let step_at = row.path.iter().position(|&p| ArtIdx(p) == root.step);
        let (artifact, kind, cut) = match (step_at, names.artifact(root.step)) {
            (Some(i), Some((_, facts))) if i < doc.body.path.len() => (
                doc.body.path[i].clone(),
                crate::may_see(names, reader, root.step).then_some(facts.kind),
                i + 1,
            ),
            _ => (
                doc.body.artifact.clone(),
                Some(doc.body.kind),
                doc.body.path.len(),
            ),
        };
        let introduced_by = doc
            .body
            .path
            .first()
            .cloned()
            .unwrap_or_else(|| doc.body.artifact.clone());
        // The root's record first (the members carried may all be of a
        // record that joined it).
        let advisory = names
            .record(root.advisory)
            .map_or_else(|| doc.body.advisory.clone(), |r| r.id.to_string());
        let mut records = vec![advisory.clone()];
        if own.advisory != advisory {
            records.push(own.advisory.clone());
        }
        at.insert(root.id, out.len());
        listed.insert((out.len(), member.artifact.clone()), Some(0));
        out.push(Entry::Grouped(GroupedNotice {
            notice_id: root.id,
            grouping: Grouping::Grouped,
            advisory,
            records,
            artifact,
            kind,
            tenant: doc.body.tenant,
            action: root.action.as_str(),
            onto: plan_id(names, reader, root.onto),
            waits_for: waits_for(names, reader, &root),
            introduced_by,
            components: doc.body.components,
            path: doc.body.path[..cut].to_vec(),
            // The root's record's, whichever record's notices are carried.
            summary: names.record(root.advisory).map_or(doc.body.summary, |r| {
                r.summary.as_deref().map(str::to_string)
            }),
            severity: names
                .record(root.advisory)
                .map_or(doc.body.severity, |r| r.severity),
            failure: doc.body.failure,
            artifacts: vec![GroupMember {
                records: vec![own],
                ..member
            }],
            artifacts_omitted: 0,
            artifacts_open: open.get(&root.id).copied(),
        }));
    }
    // Where one record alone is carried, nothing to say of agreement.
    for entry in &mut out {
        if let Entry::Grouped(g) = entry
            && g.records.len() < 2
        {
            g.records.clear();
            for m in &mut g.artifacts {
                m.records.clear();
            }
        }
    }
    out
}

/// A group still open, as a digest lists it: the root cause and how many
/// of its notices are open.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StillOpen {
    pub notice_id: i64,
    pub advisory: String,
    pub artifact: String,
    pub kind: Option<Kind>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    pub introduced_by: String,
    pub artifacts_open: u64,
}

/// Renders a digest's open groups for `reader` (ids it may not see
/// masked).
pub fn still_open(
    groups: &[patchline_store::OpenGroup],
    names: &Names,
    reader: Reader,
) -> Vec<StillOpen> {
    groups
        .iter()
        .map(|g| StillOpen {
            notice_id: g.root.id,
            advisory: names
                .record(g.advisory)
                .map(|r| r.id.to_string())
                .unwrap_or_default(),
            artifact: crate::shown_id(names, reader, g.root.step),
            kind: crate::may_see(names, reader, g.root.step)
                .then(|| names.artifact(g.root.step).map(|(_, f)| f.kind))
                .flatten(),
            action: g.root.action.as_str(),
            onto: plan_id(names, reader, g.root.onto),
            waits_for: waits_for(names, reader, &g.root),
            introduced_by: crate::shown_id(names, reader, g.root.introduced_by),
            artifacts_open: g.open,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{GroupDoc, GroupEntry};
    use crate::view::{ArtifactFacts, RecordFacts};
    use patchline_core::remedy::Action;
    use patchline_core::{AdvIdx, TenantIdx};
    use patchline_store::StoredRoot;

    /// base (public, tenant 0) <- tpl (tenant 1) <- vm-0.. (tenant 1);
    /// vm-w (tenant 2's, public) under base too.
    fn names() -> Names {
        let mut names = Names::default();
        for (t, n) in ["pub", "acme", "other"].iter().enumerate() {
            names.set_tenant(TenantIdx(t as u32), n);
        }
        let facts = |tenant: u32, kind: Kind, public: bool| ArtifactFacts {
            tenant: TenantIdx(tenant),
            kind,
            public,
            removed: false,
        };
        names.set_artifact(ArtIdx(0), "base", facts(0, Kind::Image, true));
        names.set_artifact(ArtIdx(1), "tpl", facts(1, Kind::Template, false));
        for i in 0..150u32 {
            names.set_artifact(
                ArtIdx(2 + i),
                &format!("vm-{i}"),
                facts(1, Kind::Instance, false),
            );
        }
        names.set_artifact(ArtIdx(200), "vm-w", facts(2, Kind::Instance, true));
        names.set_record(
            AdvIdx(0),
            RecordFacts {
                id: "DSA-1".into(),
                summary: Some("bad".into()),
                severity: None,
            },
        );
        names
    }

    fn notice(
        id: i64,
        tenant: u32,
        path: Vec<u32>,
        root: Option<(i64, u32, Action)>,
    ) -> StoredNotice {
        let components = GroupDoc {
            components: vec![GroupEntry {
                purl: Some("pkg:deb/debian/libssl3@3.0.11".into()),
                introduced_by: 0,
                fixed: Some("3.0.12".into()),
            }],
        }
        .to_stored();
        StoredNotice {
            id,
            advisory: AdvIdx(0),
            artifact: ArtIdx(*path.last().unwrap()),
            tenant: TenantIdx(tenant),
            state: NoticeState::Affected,
            justification: None,
            detail: None,
            components,
            path,
            created_at_ms: 0,
            updated_at_ms: 0,
            reminders: 0,
            remediated_by: None,
            root: root.map(|(id, step, action)| StoredRoot {
                id,
                advisory: AdvIdx(0),
                introduced_by: ArtIdx(0),
                step: ArtIdx(step),
                action,
                waits_for: (action == Action::Rebase).then_some(ArtIdx(0)),
                onto: None,
            }),
        }
    }

    /// Two records that agree share root 9: one entry naming both, each
    /// artifact once with its notice of each record, reading as its most
    /// open notice; summary and severity of the root's record.
    #[test]
    fn records_that_agree_make_one_entry() {
        let mut names = names();
        names.set_record(
            AdvIdx(1),
            RecordFacts {
                id: "DSA-2".into(),
                summary: Some("the other".into()),
                severity: None,
            },
        );
        let mut closed = notice(10, 1, vec![0, 1, 2], Some((9, 1, Action::Rebase)));
        closed.state = NoticeState::Remediated;
        let mut other = notice(20, 1, vec![0, 1, 2], Some((9, 1, Action::Rebase)));
        other.advisory = AdvIdx(1);
        let mut other_vm1 = notice(21, 1, vec![0, 1, 3], Some((9, 1, Action::Rebase)));
        other_vm1.advisory = AdvIdx(1);
        let rows = vec![closed, other, other_vm1];
        let reader = Reader::Tenant(TenantIdx(1));
        let docs = NoticeDoc::render_all(&rows, &names, reader);
        let entries = group(&rows, docs, &names, reader, &HashMap::new());
        assert_eq!(entries.len(), 1, "{entries:#?}");
        let Entry::Grouped(g) = &entries[0] else {
            panic!("a group")
        };
        assert_eq!(
            (g.advisory.as_str(), g.records.clone()),
            ("DSA-1", vec!["DSA-1".to_string(), "DSA-2".to_string()])
        );
        assert_eq!(g.summary.as_deref(), Some("bad"), "the root's record's");
        assert_eq!(g.artifacts.len(), 2);
        let vm0 = &g.artifacts[0];
        assert_eq!((vm0.artifact.as_str(), vm0.notice_id), ("vm-0", 10));
        assert_eq!(
            vm0.state,
            Some(NoticeState::Affected),
            "its most open notice"
        );
        let listed: Vec<(&str, i64)> = vm0
            .records
            .iter()
            .map(|r| (r.advisory.as_str(), r.notice_id))
            .collect();
        assert_eq!(listed, [("DSA-1", 10), ("DSA-2", 20)]);
        assert_eq!(g.artifacts[1].records.len(), 1);
        // One record carried, its root's own: read as before.
        let rows = vec![notice(10, 1, vec![0, 1, 2], Some((9, 1, Action::Rebase)))];
        let docs = NoticeDoc::render_all(&rows, &names, reader);
        let Entry::Grouped(g) = &group(&rows, docs, &names, reader, &HashMap::new())[0] else {
            panic!("a group")
        };
        assert!(g.records.is_empty() && g.artifacts[0].records.is_empty());
    }

    #[test]
    fn one_entry_per_root_cause_with_its_members() {
        let names = names();
        // The template (rebase at tpl) and 150 instances under it: the
        // instances' step is the template's rebase too (the top-most
        // artifact acme owns on their chain).
        let mut rows = vec![notice(10, 1, vec![0, 1], Some((9, 1, Action::Rebase)))];
        for i in 0..150u32 {
            rows.push(notice(
                11 + i64::from(i),
                1,
                vec![0, 1, 2 + i],
                Some((9, 1, Action::Rebase)),
            ));
        }
        // An old notice without a root, and another tenant's public
        // instance (tenant 2) read by acme as a watcher.
        rows.push(notice(500, 1, vec![0, 1, 2], None));
        rows.push(notice(501, 2, vec![0, 200], Some((8, 0, Action::Relaunch))));
        let reader = Reader::Tenant(TenantIdx(1));
        let docs = NoticeDoc::render_all(&rows, &names, reader);
        assert_eq!(
            roots_of(&rows, reader),
            vec![9],
            "only the reader's own groups"
        );
        let open = HashMap::from([(9, 151)]);
        let entries = group(&rows, docs, &names, reader, &open);
        assert_eq!(entries.len(), 3, "{entries:#?}");
        let Entry::Grouped(g) = &entries[0] else {
            panic!("the first entry is the group")
        };
        assert_eq!(g.notice_id, 9);
        assert_eq!(
            (g.artifact.as_str(), g.kind, g.action),
            ("tpl", Some(Kind::Template), "rebase")
        );
        assert_eq!(g.path, vec!["base", "tpl"]);
        assert_eq!(g.introduced_by, "base");
        assert_eq!(g.artifacts.len(), GROUP_ARTIFACTS_MAX);
        assert_eq!(g.artifacts_omitted, 151 - GROUP_ARTIFACTS_MAX);
        assert_eq!(g.artifacts[0].artifact, "tpl");
        assert_eq!(g.artifacts[1].notice_id, 11);
        assert_eq!(g.artifacts_open, Some(151));
        assert_eq!(g.tenant.as_deref(), Some("acme"));
        assert_eq!(
            (g.onto.as_deref(), g.waits_for.as_deref()),
            (None, Some("base"))
        );
        let json = serde_json::to_value(&entries[0]).unwrap();
        for key in [
            "notice_id",
            "advisory",
            "artifact",
            "kind",
            "components",
            "path",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(json["grouping"], "grouped");
        assert!(matches!(&entries[1], Entry::Notice(n) if n.notice_id == 500));
        assert!(matches!(&entries[2], Entry::Notice(n) if n.notice_id == 501 && n.watched));
        // An admin groups every tenant's.
        let docs = NoticeDoc::render_all(&rows, &names, Reader::Admin);
        let entries = group(&rows, docs, &names, Reader::Admin, &HashMap::new());
        assert_eq!(entries.len(), 3);
        assert!(
            matches!(&entries[2], Entry::Grouped(g) if g.notice_id == 8 && g.artifact == "base" && g.action == "relaunch" && g.path == ["base"])
        );
    }
}
