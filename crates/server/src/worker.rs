//! The delivery worker and the reminder loop of this process
//! ([`patchline_delivery::worker`], [`patchline_delivery::reminder`]),
//! handed the server's settings, clock, queue, delivery view, metrics and
//! wake-up, and what only the server can do (wait until the node has
//! applied the deployment's changes; disable a subscription whose endpoint
//! answered 410 Gone; queue the due reminders in a write of the engine).

use std::sync::Arc;

use patchline_core::notice::DisableReason;
use patchline_delivery::OPERATOR_SUBSCRIPTION;
use patchline_delivery::reminder::{REMINDERS_PER_ROUND, RemindHost, ReminderPolicy};
use patchline_delivery::worker::{Host, Worker, WorkerConfig};
use patchline_engine::EngineError;
use tokio::sync::watch;

use crate::state::AppState;

/// Runs the worker until `shutdown` turns true; then finishes what is in
/// flight.
pub async fn run(st: Arc<AppState>, shutdown: watch::Receiver<bool>) {
    patchline_delivery::worker::run(Arc::new(worker(&st)), shutdown).await
}

/// Reminds unacknowledged notices on the configured schedule until
/// `shutdown` turns true.
pub async fn reminders(st: Arc<AppState>, shutdown: watch::Receiver<bool>) {
    let policy = ReminderPolicy {
        interval_ms: st.config.reminder_interval_ms,
        escalate_after: st.config.escalate_after,
        limit: REMINDERS_PER_ROUND,
    };
    patchline_delivery::reminder::run(Arc::new(worker(&st)), policy, shutdown).await
}

/// The worker's context, from the server's state.
fn worker(st: &Arc<AppState>) -> Worker<Server> {
    let c = &st.config;
    Worker {
        config: WorkerConfig {
            webhook_policy: c.webhook_policy.clone(),
            retry: c.retry.clone(),
            claim_batch_max: c.claim_batch_max,
            inflight_max: c.inflight_max,
            round_gather: c.round_gather,
            round_linger_ms: c.round_linger_ms,
            per_endpoint_inflight_max: c.per_endpoint_inflight_max,
            webhook_timeout_ms: c.webhook_timeout_ms,
            lease_ms: c.lease_ms,
            event_source: c.event_source.clone(),
            shared: c.bus.is_some(),
        },
        clock: c.clock.clone(),
        queues: st.queues.clone(),
        view: st.view.clone(),
        wake: st.wake.clone(),
        metrics: st.metrics.clone(),
        host: Server(st.clone()),
    }
}

/// The server as the worker's host.
#[derive(Debug)]
struct Server(Arc<AppState>);

impl Host for Server {
    async fn caught_up_to(&self, need: u64) -> bool {
        crate::follow::caught_up_to(&self.0, need).await
    }

    async fn endpoint_gone(&self, subscription: String) {
        let (st, sub) = (self.0.clone(), subscription.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut e) = st.engine.lock()
                && e.ensure_fresh().is_ok()
            {
                let _ = e.disable_subscription(&sub, DisableReason::Gone);
                e.end_write();
                st.applied.send_replace(e.applied_seq());
            }
        })
        .await;
        let _ = crate::routes::subscriptions::bury(
            &self.0,
            subscription,
            "the endpoint answered 410 Gone",
        )
        .await;
    }
}

impl RemindHost for Server {
    async fn remind(&self, policy: ReminderPolicy) -> usize {
        let st = self.0.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<usize, EngineError> {
            let Ok(mut e) = st.engine.lock() else {
                return Ok(0);
            };
            e.ensure_fresh()?;
            let operator = e
                .service()
                .subscriptions
                .contains_key(OPERATOR_SUBSCRIPTION)
                .then_some(OPERATOR_SUBSCRIPTION);
            let n = e.schedule_reminders(st.now_ms(), &policy, operator);
            e.end_write();
            // Digests fall due on their own schedules; checked as often.
            let digests = e.schedule_digests(st.now_ms());
            e.end_write();
            st.applied.send_replace(e.applied_seq());
            Ok(n? + digests?)
        })
        .await;
        match done {
            Ok(Ok(n)) => n,
            _ => 0,
        }
    }
}
