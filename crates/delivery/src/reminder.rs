//! Reminders: which open notices are due, when a reminder becomes an
//! escalation, and to which subscriptions each goes — a pure policy the
//! engine applies inside its write (it reads the due notices and the
//! subscriptions under its lock, asks [`ReminderPolicy::plan`], and queues
//! what the plan says in the same commit). With the feature `worker`,
//! [`run`] is the loop that asks its host for a round on a schedule.

use patchline_core::TenantIdx;
use patchline_core::notice::Purpose;
use patchline_store::StoredNotice;

/// Due notices reminded per round, at most (the rest wait for the next).
pub const REMINDERS_PER_ROUND: usize = 10_000;

/// When unacknowledged notices are reminded, and when escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderPolicy {
    /// An open notice is reminded this long after its creation or its
    /// last reminder.
    pub interval_ms: i64,
    /// The reminder that would be this many-th (counting this one) goes
    /// to every webhook of the tenant and to the operator instead.
    pub escalate_after: i64,
    /// Notices reminded per round, at most.
    pub limit: usize,
}

/// What to do with one due notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub notice: i64,
    pub advisory: patchline_core::AdvIdx,
    /// [`Purpose::Reminder`] or [`Purpose::Escalation`].
    pub purpose: Purpose,
    /// The subscriptions it is sent to.
    pub subscriptions: Vec<String>,
}

impl ReminderPolicy {
    /// Open notices last reminded (or created) before this are due at
    /// `now_ms`.
    pub fn due_before(&self, now_ms: i64) -> i64 {
        now_ms - self.interval_ms
    }

    /// For each due notice (in order): a reminder to the tenant's active
    /// webhooks, or, once `escalate_after` reminders are reached, an
    /// escalation to the same webhooks and the operator's subscription
    /// (when there is one). `webhooks` answers a tenant's active webhook
    /// subscriptions.
    pub fn plan(
        &self,
        due: &[StoredNotice],
        mut webhooks: impl FnMut(TenantIdx) -> Vec<String>,
        operator: Option<&str>,
    ) -> Vec<Reminder> {
        due.iter()
            .map(|n| {
                let mut subscriptions = webhooks(n.tenant);
                let purpose = if n.reminders + 1 >= self.escalate_after {
                    subscriptions.extend(operator.map(str::to_string));
                    Purpose::Escalation
                } else {
                    Purpose::Reminder
                };
                Reminder {
                    notice: n.id,
                    advisory: n.advisory,
                    purpose,
                    subscriptions,
                }
            })
            .collect()
    }
}

/// What only the process hosting the reminder loop can do.
#[cfg(feature = "worker")]
pub trait RemindHost: Send + Sync + 'static {
    /// Queues, in one write of the engine, the reminders `policy` makes due
    /// at the time of that write; answers how many notices were reminded.
    fn remind(&self, policy: ReminderPolicy) -> impl Future<Output = usize> + Send;
}

/// Reminds unacknowledged notices on `policy`'s schedule (checked every
/// quarter of the interval, between 1 s and 1 min) until `shutdown` turns
/// true; wakes the worker when something was queued.
#[cfg(feature = "worker")]
pub async fn run<H: crate::worker::Host + RemindHost>(
    st: std::sync::Arc<crate::worker::Worker<H>>,
    policy: ReminderPolicy,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let every =
        std::time::Duration::from_millis((policy.interval_ms / 4).clamp(1000, 60_000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let n = st.host.remind(policy).await;
        if n > 0 {
            st.metrics.reminded(n as u64);
            st.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchline_core::notice::NoticeState;
    use patchline_core::{AdvIdx, ArtIdx};

    fn due(id: i64, tenant: u32, reminders: i64) -> StoredNotice {
        StoredNotice {
            id,
            advisory: AdvIdx(7),
            artifact: ArtIdx(1),
            tenant: TenantIdx(tenant),
            state: NoticeState::Affected,
            justification: None,
            detail: None,
            components: "[]".into(),
            path: Vec::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            reminders,
            remediated_by: None,
            root: None,
        }
    }

    #[test]
    fn reminders_escalate_after_the_set_count_to_the_operator_too() {
        let policy = ReminderPolicy {
            interval_ms: 1000,
            escalate_after: 3,
            limit: 10,
        };
        assert_eq!(policy.due_before(5000), 4000);
        let webhooks = |t: TenantIdx| vec![format!("sub_{}", t.0)];
        let plan = policy.plan(
            &[due(1, 1, 0), due(2, 2, 1), due(3, 1, 2)],
            webhooks,
            Some("sub_operator"),
        );
        let got: Vec<(i64, Purpose, Vec<&str>)> = plan
            .iter()
            .map(|r| {
                (
                    r.notice,
                    r.purpose,
                    r.subscriptions.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Purpose::Reminder, vec!["sub_1"]),
                (2, Purpose::Reminder, vec!["sub_2"]),
                (3, Purpose::Escalation, vec!["sub_1", "sub_operator"]),
            ]
        );
        // Without an operator's channel, an escalation goes to the
        // tenant's webhooks only.
        let plan = policy.plan(&[due(3, 1, 5)], webhooks, None);
        assert_eq!(plan[0].purpose, Purpose::Escalation);
        assert_eq!(plan[0].subscriptions, vec!["sub_1".to_string()]);
    }
}
