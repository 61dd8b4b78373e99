//! Delivery, apart from the engine: the notice document (one typed,
//! versioned schema for webhooks, streams, pages and the acknowledgement
//! answer) and its rendering for a reader, the stored group document it is
//! rendered from (`GroupDoc`, also versioned), and the delivery view — the
//! names, visibility, record texts and webhook targets that rendering and
//! sending need — which the engine keeps current at every commit, so that
//! the delivery path never takes the engine's lock; the subscriptions and
//! their routing (filters, readers, matching webhooks, batching into
//! messages), which the engine calls inside its write; the reminder policy
//! (which notices are due, escalation, to which subscriptions), which the
//! engine applies inside its write; and (feature `worker`) the webhook
//! worker and the reminder loop, handed an explicit context by their host.
//!
//! The subscription and filter types live here (`routing`: moved out of
//! `patchline-core` and the engine), so this crate is the one place callers
//! name them. The typed enums the store's rows also carry — `Channel`,
//! `SubscriptionState`, `Purpose`, `DeliveryState` — stay in
//! `patchline_core::notice`, below the store.

pub mod digest;
pub mod doc;
pub mod grouped;
pub mod patch;
pub mod reminder;
pub mod routing;
pub mod view;
#[cfg(feature = "worker")]
pub mod worker;

pub use doc::{
    AffectedComponent, GROUP_DOC_VERSION, GroupDoc, GroupEntry, HIDDEN, NOTICE_COMPONENTS_MAX,
    NOTICE_SCHEMA, NoticeBody, NoticeDoc, Reader, RecordText, RemediatedBy, Remediation, may_see,
    message_id, shown_id, take_record_text,
};
pub use grouped::{Entry, GROUP_ARTIFACTS_MAX, GroupMember, GroupedNotice, MemberRecord};
pub use patch::{
    PATCH_BREAKS_MAX, PATCH_CLEARS_MAX, PATCH_DOC_VERSION, PatchDoc, PatchNotice, PatchStep,
    StoredStep,
};
pub use view::{ArtifactFacts, DeliveryView, Names, OPERATOR_SUBSCRIPTION, RecordFacts, Target};
