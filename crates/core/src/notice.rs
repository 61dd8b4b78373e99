//! Notices and subscriptions as values: the remediation states of
//! CONTRACT.md §3, severity levels, subscription channels and states, and
//! the delivery states of the push workers. Pure: persistence is the
//! store's; subscription filters and routing are `patchline-delivery`'s.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Remediation state of one (advisory or failure, artifact).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Recorded, not yet delivered anywhere.
    Affected,
    /// Delivered to at least one channel (or read through pull/stream).
    Notified,
    /// The tenant said it saw it.
    Acknowledged,
    /// The artifact no longer carries it (re-inventoried, removed, fixed
    /// upstream of it, or the advisory changed).
    Remediated,
    /// The tenant states it does not apply (VEX style), with a
    /// justification (`patchline_formats::vex::Justification`) or a detail.
    NotAffected,
}

impl NoticeState {
    pub const ALL: [NoticeState; 5] = [
        NoticeState::Affected,
        NoticeState::Notified,
        NoticeState::Acknowledged,
        NoticeState::Remediated,
        NoticeState::NotAffected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Affected => "affected",
            NoticeState::Notified => "notified",
            NoticeState::Acknowledged => "acknowledged",
            NoticeState::Remediated => "remediated",
            NoticeState::NotAffected => "not_affected",
        }
    }

    pub fn parse(text: &str) -> Option<NoticeState> {
        NoticeState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Still asks for action: reminders go out for these.
    pub fn is_open(self) -> bool {
        matches!(self, NoticeState::Affected | NoticeState::Notified)
    }

    /// Closed by the tenant or by the system.
    pub fn is_closed(self) -> bool {
        matches!(self, NoticeState::Remediated | NoticeState::NotAffected)
    }
}

impl fmt::Display for NoticeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a notice was remediated, as progress counts it: the artifact (or
/// one above it) moved onto a patched successor, was rebased or relaunched
/// onto something else, was changed itself (rebuilt), was removed; or the
/// record changed (fixed ranges, withdrawn).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationCause {
    Successor,
    Rebase,
    Rebuild,
    Removal,
    Record,
}

impl RemediationCause {
    pub const ALL: [RemediationCause; 5] = [
        RemediationCause::Successor,
        RemediationCause::Rebase,
        RemediationCause::Rebuild,
        RemediationCause::Removal,
        RemediationCause::Record,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RemediationCause::Successor => "successor",
            RemediationCause::Rebase => "rebase",
            RemediationCause::Rebuild => "rebuild",
            RemediationCause::Removal => "removal",
            RemediationCause::Record => "record",
        }
    }

    pub fn parse(text: &str) -> Option<RemediationCause> {
        RemediationCause::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// Severity levels, ordered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a level word as feeds spell it (`HIGH`, `moderate`,
    /// `important`, `negligible`...).
    pub fn parse_word(text: &str) -> Option<Severity> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "negligible" | "unimportant" | "informational" => Some(Severity::None),
            "low" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" | "important" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The CVSS qualitative rating of a base score.
    pub fn from_score(score: f64) -> Severity {
        if score <= 0.0 {
            Severity::None
        } else if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else if score < 9.0 {
            Severity::High
        } else {
            Severity::Critical
        }
    }
}

/// Where a subscription delivers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Channel {
    Webhook {
        url: String,
    },
    /// Server-sent events on `GET /v1/notices/stream`.
    Sse,
    /// `GET /v1/notices` with a cursor.
    Pull,
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Sse => "sse",
            Channel::Pull => "pull",
        }
    }
}

/// States of one push delivery (a batch of notices to one subscription).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    /// Failed, retried at `next_at`.
    Failed,
    /// Gave up (schedule exhausted or endpoint gone): visible, replayable.
    Dead,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::InFlight,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How a reader's notices travel: one entry per root cause (the notices
/// of one record, top-most `introduced_by` and remedy step, with their
/// artifacts listed), one per (record, artifact), or (subscriptions only)
/// a digest on a schedule instead of a message per change.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    #[default]
    Grouped,
    Artifact,
    Digest,
}

impl Grouping {
    pub const ALL: [Grouping; 3] = [Grouping::Grouped, Grouping::Artifact, Grouping::Digest];

    pub fn as_str(self) -> &'static str {
        match self {
            Grouping::Grouped => "grouped",
            Grouping::Artifact => "artifact",
            Grouping::Digest => "digest",
        }
    }

    pub fn parse(text: &str) -> Option<Grouping> {
        Grouping::ALL.into_iter().find(|g| g.as_str() == text)
    }
}

/// Why a delivery was queued: a new (or reopened) notice, a reminder of an
/// unacknowledged one, or an escalation after too many reminders.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Notice,
    Reminder,
    Escalation,
    /// A patched successor announced: the delivery carries patch notices,
    /// not notices.
    Patch,
    /// A digest subscription's scheduled message: the notices new or
    /// changed since its last one, and what is still open.
    Digest,
}

impl Purpose {
    pub const ALL: [Purpose; 5] = [
        Purpose::Notice,
        Purpose::Reminder,
        Purpose::Escalation,
        Purpose::Patch,
        Purpose::Digest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Notice => "notice",
            Purpose::Reminder => "reminder",
            Purpose::Escalation => "escalation",
            Purpose::Patch => "patch",
            Purpose::Digest => "digest",
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The CloudEvents `type` of a message sent for this purpose.
    pub fn event_type(self) -> &'static str {
        match self {
            Purpose::Notice => "dev.patchline.notice",
            Purpose::Reminder => "dev.patchline.notice.reminder",
            Purpose::Escalation => "dev.patchline.notice.escalation",
            Purpose::Patch => "dev.patchline.patch",
            Purpose::Digest => "dev.patchline.digest",
        }
    }
}

/// Why a subscription stopped receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisableReason {
    /// The endpoint answered 410 Gone: disabled until its owner enables it.
    Gone,
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisableReason::Gone => "the endpoint answered 410 Gone",
        }
    }

    pub fn parse(text: &str) -> Option<DisableReason> {
        (text == DisableReason::Gone.as_str()).then_some(DisableReason::Gone)
    }
}

/// Where a subscription stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    Active,
    /// Kept, and what it misses goes to its dead letters (enable + replay
    /// fills the gap).
    Disabled(DisableReason),
    /// Deleted by its owner: gone from every list and index.
    Deleted,
}

impl SubscriptionState {
    /// The stored form: (state, reason).
    pub fn to_stored(self) -> (&'static str, Option<&'static str>) {
        match self {
            SubscriptionState::Active => ("active", None),
            SubscriptionState::Disabled(r) => ("disabled", Some(r.as_str())),
            SubscriptionState::Deleted => ("deleted", None),
        }
    }

    /// Reads the stored form, including the one of older versions (a
    /// deletion stored as disabled "deleted by its owner").
    pub fn from_stored(state: &str, reason: Option<&str>) -> Option<SubscriptionState> {
        match (state, reason) {
            ("active", _) => Some(SubscriptionState::Active),
            ("deleted", _) | ("disabled", Some("deleted by its owner")) => {
                Some(SubscriptionState::Deleted)
            }
            ("disabled", Some(r)) => Some(SubscriptionState::Disabled(
                DisableReason::parse(r).unwrap_or(DisableReason::Gone),
            )),
            ("disabled", None) => Some(SubscriptionState::Disabled(DisableReason::Gone)),
            _ => None,
        }
    }

    pub fn is_active(self) -> bool {
        self == SubscriptionState::Active
    }

    pub fn is_deleted(self) -> bool {
        self == SubscriptionState::Deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_states_round_trip_through_their_stored_form() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        for s in [
            SubscriptionState::Active,
            SubscriptionState::Disabled(DisableReason::Gone),
            SubscriptionState::Deleted,
        ] {
            let (state, reason) = s.to_stored();
            assert_eq!(SubscriptionState::from_stored(state, reason), Some(s));
        }
        assert_eq!(
            SubscriptionState::from_stored("disabled", Some("deleted by its owner")),
            Some(SubscriptionState::Deleted),
            "older versions stored a deletion this way"
        );
        assert_eq!(SubscriptionState::from_stored("bogus", None), None);
    }
}
