//! The notice document: one typed schema for a notice as webhooks, streams
//! and pages carry it, rendered from a stored notice and the delivery view
//! for one reader (its owner, a watcher of a public artifact, an admin);
//! and the stored group document ([`GroupDoc`]), the typed, versioned form
//! in which the store keeps what the notices of a group share, written by
//! the engine and read back by every rendering.

use std::collections::{BTreeMap, HashMap};

use patchline_core::notice::{NoticeState, RemediationCause, Severity};
use patchline_core::{ArtIdx, TenantIdx};
use patchline_store::StoredNotice;
use serde::{Deserialize, Serialize};

use crate::view::Names;

/// The version of the notice document (`schema` of webhook events).
pub const NOTICE_SCHEMA: u32 = 1;

/// Most components one rendered notice lists (the rest is counted in
/// `components_omitted`; `affected` has them all).
pub const NOTICE_COMPONENTS_MAX: usize = 1000;

/// Placeholder for an id the reader may not see (another tenant's private
/// artifact on a lineage path).
pub const HIDDEN: &str = "(private)";

/// Who reads a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Admin,
    Tenant(TenantIdx),
}

/// The version of the stored group document ([`GroupDoc`]).
pub const GROUP_DOC_VERSION: u32 = 1;

/// One stored component of a notice group: the shared part of the notices
/// of one record about artifacts with the same affected components.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupEntry {
    /// None for a failure (an artifact, not a component, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// The artifact index where it came in.
    pub introduced_by: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// What the notices of one group share — the affected components, where
/// each came in, the fix — as `notice_groups.components` stores it (the
/// store keeps the text and never reads it): `{"v":1,"components":[…]}`.
/// Rows written before the document had a version hold the bare list; they
/// read as the same components. Unknown versions (a newer build's) do not
/// read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDoc {
    pub components: Vec<GroupEntry>,
}

#[derive(Serialize)]
struct GroupDocOut<'a> {
    v: u32,
    components: &'a [GroupEntry],
}

/// The versioned form, read straight into its fields (an untagged enum of
/// both forms made serde buffer every document into a tree of its values
/// before trying each form: a tenth of a signed delivery's rendering).
#[derive(Deserialize)]
struct GroupDocIn {
    v: u32,
    components: Vec<GroupEntry>,
}

impl GroupDoc {
    /// The stored text.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&GroupDocOut {
            v: GROUP_DOC_VERSION,
            components: &self.components,
        })
        .unwrap_or_default()
    }

    /// Reads a stored text of this version or of before versions; `None`
    /// for anything else.
    pub fn from_stored(text: &str) -> Option<GroupDoc> {
        // A JSON document's first character says which form it is.
        if text.trim_start().starts_with('[') {
            let components: Vec<GroupEntry> = serde_json::from_str(text).ok()?;
            return Some(GroupDoc { components });
        }
        let doc: GroupDocIn = serde_json::from_str(text).ok()?;
        (doc.v == GROUP_DOC_VERSION).then_some(GroupDoc {
            components: doc.components,
        })
    }
}

/// One affected component of an artifact.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AffectedComponent {
    pub purl: String,
    pub introduced_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// What a notice says about its record and artifact.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeBody {
    pub advisory: String,
    pub artifact: String,
    pub kind: patchline_core::Kind,
    /// The owner; not shown to watchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub components: Vec<AffectedComponent>,
    pub path: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_by: Option<String>,
    /// The record's summary: once per page or message where notices travel
    /// together (see [`take_record_text`]), in the notice otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failure: bool,
    /// Components left out past [`NOTICE_COMPONENTS_MAX`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub components_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A notice as a reader sees it: the body, its id and state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeDoc {
    pub notice_id: i64,
    #[serde(flatten)]
    pub body: NoticeBody,
    /// The owner's remediation state; watchers do not see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NoticeState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The owner's words with the decision (acknowledged, not affected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Read by a tenant that watches the (public) artifact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watched: bool,
    /// With `remediated`: the step that did it, when known (the owner's
    /// business: watchers do not see it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediated_by: Option<Remediation>,
    pub created_at: String,
    pub updated_at: String,
}

/// What remediated a notice, as stored (`notices.remediated_by`, kept by
/// the store as given): `{"cause", "action", "artifact", "onto"?}` with
/// artifact indexes. `action` is the change the artifact (or the one above
/// it that changed) went through: `rebase`, `relaunch`, `rebuild`,
/// `remove`, or `record` (the record changed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemediatedBy {
    pub cause: RemediationCause,
    pub action: String,
    pub artifact: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<u32>,
}

impl RemediatedBy {
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What remediated a notice, as its owner reads it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Remediation {
    /// `successor` (moved onto a patched successor), `rebase` (onto
    /// something else), `rebuild`, `removal` or `record`.
    pub cause: RemediationCause,
    /// `rebase`, `relaunch`, `rebuild`, `remove` or `record`.
    pub action: String,
    /// The artifact that changed (the notice's own, or one above it).
    pub artifact: String,
    /// Its new parent, for a rebase or a relaunch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
}

/// A record's text, given once per page or message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordText {
    pub summary: Option<String>,
}

/// Moves each record's summary out of its notices into one map entry per
/// record (text is rendered once per page or message, not per notice).
pub fn take_record_text(docs: &mut [NoticeDoc]) -> BTreeMap<String, RecordText> {
    let mut records = BTreeMap::new();
    for d in docs {
        let summary = d.body.summary.take();
        records
            .entry(d.body.advisory.clone())
            .or_insert(RecordText { summary });
    }
    records
}

/// The message id of delivery `delivery` of installation `installation`
/// (Standard Webhooks `webhook-id`: unique across installations, the same
/// on every retry).
pub fn message_id(installation: &str, delivery: i64) -> String {
    format!("msg_{installation}_{delivery}")
}

fn rfc3339_ms(ms: i64) -> String {
    patchline_core::timestamp::format_unix(ms.div_euclid(1000))
}

/// Whether `reader` may see the id of artifact `a` (its own, a public one;
/// admins everything).
pub fn may_see(names: &Names, reader: Reader, a: ArtIdx) -> bool {
    match (reader, names.artifact(a)) {
        (Reader::Admin, Some(_)) => true,
        (Reader::Tenant(t), Some((_, f))) => f.public || f.tenant == t,
        (_, None) => false,
    }
}

/// The id of `a` as `reader` may see it: itself, or [`HIDDEN`].
pub fn shown_id(names: &Names, reader: Reader, a: ArtIdx) -> String {
    match names.artifact(a) {
        Some((id, _)) if may_see(names, reader, a) => id.to_string(),
        _ => HIDDEN.to_string(),
    }
}

impl NoticeDoc {
    /// Renders a stored notice for `reader`, or nothing when the reader
    /// may not read it: the owner (and admins) read the whole notice; a
    /// watcher reads a public artifact's notice without the owner's name,
    /// state, justification or last change; anyone else reads nothing (the
    /// artifact was made private, or removed, after it was watched). Ids on
    /// the path the reader may not see read `(private)`.
    pub fn render(n: &StoredNotice, names: &Names, reader: Reader) -> Option<NoticeDoc> {
        let group = GroupDoc::from_stored(&n.components)?;
        Self::render_entries(n, &group.components, names, reader)
    }

    /// Renders many notices, parsing each group's components once.
    pub fn render_all(rows: &[StoredNotice], names: &Names, reader: Reader) -> Vec<NoticeDoc> {
        let mut parsed: HashMap<&str, Option<GroupDoc>> = HashMap::new();
        rows.iter()
            .filter_map(|n| {
                let group = parsed
                    .entry(n.components.as_str())
                    .or_insert_with(|| GroupDoc::from_stored(&n.components))
                    .as_ref()?;
                Self::render_entries(n, &group.components, names, reader)
            })
            .collect()
    }

    fn render_entries(
        n: &StoredNotice,
        entries: &[GroupEntry],
        names: &Names,
        reader: Reader,
    ) -> Option<NoticeDoc> {
        let (artifact, facts) = names.artifact(n.artifact)?;
        let watched = match reader {
            Reader::Admin => false,
            Reader::Tenant(t) if facts.tenant == t => false,
            Reader::Tenant(_) if facts.public && !facts.removed => true,
            Reader::Tenant(_) => return None,
        };
        let name = |idx: u32| shown_id(names, reader, ArtIdx(idx));
        let mut components = Vec::new();
        let mut introduced_by = None;
        let mut failure = false;
        for e in entries {
            match &e.purl {
                Some(purl) => components.push(AffectedComponent {
                    purl: purl.clone(),
                    introduced_by: name(e.introduced_by),
                    fixed: e.fixed.clone(),
                }),
                None => {
                    failure = true;
                    introduced_by = Some(name(e.introduced_by));
                }
            }
        }
        let (advisory, summary, severity) = match names.record(n.advisory) {
            Some(r) => (
                r.id.to_string(),
                r.summary.as_deref().map(str::to_string),
                r.severity,
            ),
            None => (String::new(), None, None),
        };
        let components_omitted = components.len().saturating_sub(NOTICE_COMPONENTS_MAX);
        components.truncate(NOTICE_COMPONENTS_MAX);
        Some(NoticeDoc {
            notice_id: n.id,
            body: NoticeBody {
                advisory,
                artifact: artifact.to_string(),
                kind: facts.kind,
                tenant: (!watched).then(|| names.tenant(facts.tenant).to_string()),
                components,
                path: n.path.iter().map(|&i| name(i)).collect(),
                introduced_by,
                summary,
                severity,
                failure,
                components_omitted,
            },
            state: (!watched).then_some(n.state),
            justification: if watched {
                None
            } else {
                n.justification.clone()
            },
            detail: if watched { None } else { n.detail.clone() },
            watched,
            remediated_by: if watched || n.state != NoticeState::Remediated {
                None
            } else {
                n.remediated_by
                    .as_deref()
                    .and_then(|text| serde_json::from_str::<RemediatedBy>(text).ok())
                    .map(|r| Remediation {
                        cause: r.cause,
                        action: r.action,
                        artifact: name(r.artifact),
                        onto: r.onto.map(name),
                    })
            },
            created_at: rfc3339_ms(n.created_at_ms),
            // When the owner last acted is the owner's business too.
            updated_at: rfc3339_ms(if watched {
                n.created_at_ms
            } else {
                n.updated_at_ms
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{ArtifactFacts, RecordFacts};
    use patchline_core::{AdvIdx, Kind};

    const UNVERSIONED: &str = r#"[{"purl":"pkg:deb/debian/libssl3@3.0.11","introduced_by":0,"fixed":"3.0.12"},{"introduced_by":1}]"#;

    fn stored(components: &str) -> StoredNotice {
        StoredNotice {
            id: 7,
            advisory: AdvIdx(0),
            artifact: ArtIdx(1),
            tenant: TenantIdx(0),
            state: NoticeState::Affected,
            justification: None,
            detail: None,
            components: components.to_string(),
            path: vec![0, 1],
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_000,
            reminders: 0,
            remediated_by: None,
            root: None,
        }
    }

    fn names() -> Names {
        let mut names = Names::default();
        names.set_tenant(TenantIdx(0), "acme");
        for (i, id) in ["base", "vm"].into_iter().enumerate() {
            names.set_artifact(
                ArtIdx(i as u32),
                id,
                ArtifactFacts {
                    tenant: TenantIdx(0),
                    kind: Kind::Instance,
                    public: false,
                    removed: false,
                },
            );
        }
        names.set_record(
            AdvIdx(0),
            RecordFacts {
                id: "DSA-1".into(),
                summary: None,
                severity: None,
            },
        );
        names
    }

    #[test]
    fn the_group_document_is_versioned_and_old_rows_still_read() {
        let old = GroupDoc::from_stored(UNVERSIONED).expect("an unversioned row reads");
        assert_eq!(old.components.len(), 2);
        assert_eq!(old.components[0].fixed.as_deref(), Some("3.0.12"));
        assert_eq!(old.components[1].purl, None);
        let text = old.to_stored();
        assert!(text.starts_with(r#"{"v":1,"components":["#), "{text}");
        assert_eq!(GroupDoc::from_stored(&text), Some(old));
        assert_eq!(
            GroupDoc::from_stored(r#"{"v":2,"components":[]}"#),
            None,
            "a newer build's document does not read"
        );
        assert_eq!(GroupDoc::from_stored("not json"), None);
    }

    #[test]
    fn old_and_versioned_rows_render_the_same_notice() {
        let names = names();
        let versioned = GroupDoc::from_stored(UNVERSIONED).unwrap().to_stored();
        let (old, new) = (stored(UNVERSIONED), stored(&versioned));
        for reader in [Reader::Admin, Reader::Tenant(TenantIdx(0))] {
            let a = NoticeDoc::render(&old, &names, reader).expect("the old row renders");
            let b = NoticeDoc::render(&new, &names, reader).expect("the new row renders");
            assert_eq!(a, b);
            assert_eq!(a.body.components.len(), 1);
            assert_eq!(a.body.introduced_by.as_deref(), Some("vm"));
            let all = NoticeDoc::render_all(&[old.clone(), new.clone()], &names, reader);
            assert_eq!(all, vec![a.clone(), a]);
        }
    }
}
