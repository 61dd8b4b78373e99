//! Following the deployment: with several nodes on one PostgreSQL
//! database (`--bus`), each node applies the changes the others commit.
//!
//! PostgreSQL's change log is the source of truth; the bus only says when
//! to look. A node announces each change it commits (its sequence, on the
//! `<prefix>_CHANGES` stream) and follows the others' announcements; on
//! each, and every [`POLL_MS`] whatever the bus does, it catches up from
//! the log ([`patchline_engine::Engine::catch_up`]). Losing the bus costs
//! latency (up to one poll), never a change. What came in is handed over
//! like a local write's: new notices to this node's event streams,
//! deliveries to its workers, a changed token set to the open streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use patchline_bus::{Bus, BusConfig, BusPrefix};
use patchline_core::TenantIdx;
use tokio::sync::{mpsc, watch};

use crate::state::{AppState, BusSettings};

/// How often a node reads the change log without being told to (the bus
/// down, or an announcement lost): the bound on how stale a node is.
pub const POLL_MS: u64 = 500;

/// Longest pause between two attempts to reach the bus.
const BUS_RETRY_MAX_MS: u64 = 5_000;

/// Catch-ups that failed, logged once per this many.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Hands what an engine call produced to the rest of the node: notices to
/// the streams (this node's and, through the change log, the others'),
/// deliveries queued here or elsewhere to the workers, a changed token or
/// subscription set to the open streams. Called on a blocking thread,
/// under the engine's lock, so that live notices go out in id order.
pub fn hand_over(st: &AppState, created: &[(TenantIdx, i64)], remote: u64, service: bool) {
    if !created.is_empty() {
        st.metrics
            .notices_created_total
            .fetch_add(created.len() as u64, Ordering::Relaxed);
        st.wake.notify_one();
        crate::routes::push_live(st, created);
    }
    if remote > 0 {
        st.wake.notify_one();
    }
    if service {
        // Open streams check their token again (one may be revoked).
        st.revocations.send_modify(|v| *v += 1);
    }
}

/// Applies what the other nodes committed since the last look, and hands
/// it over.
pub async fn catch_up(st: &Arc<AppState>) {
    let st2 = st.clone();
    let _ = tokio::task::spawn_blocking(move || {
        {
            let Ok(mut e) = st2.engine.lock() else {
                return;
            };
            match e.catch_up() {
                Ok(_) => {
                    FAILED.store(0, Ordering::Relaxed);
                    st2.catch_ups.send_modify(|n| *n += 1);
                }
                Err(err) => {
                    if FAILED.fetch_add(1, Ordering::Relaxed).is_multiple_of(20) {
                        tracing::warn!(error = %err, "cannot read the deployment's change log; trying again");
                    }
                    return;
                }
            }
            st2.applied.send_if_modified(|seq| {
                let now = e.applied_seq();
                std::mem::replace(seq, now) != now
            });
            let (created, remote, service) = (
                e.take_created(),
                e.take_remote_deliveries(),
                e.take_remote_service(),
            );
            // Under the engine's lock: live notices go out in id order.
            hand_over(&st2, &created, remote, service);
        };
    })
    .await;
}

/// Longest wait for this node to apply the changes a read depends on.
pub const CATCH_UP_WAIT_MS: u64 = 5_000;

/// Waits until this node has applied the deployment's changes up to
/// `need` (asking its follower to look at once); `false` after
/// [`CATCH_UP_WAIT_MS`].
pub async fn caught_up_to(st: &AppState, need: u64) -> bool {
    let mut applied = st.applied.subscribe();
    if *applied.borrow_and_update() >= need {
        return true;
    }
    st.follow_kick.notify_one();
    tokio::time::timeout(
        Duration::from_millis(CATCH_UP_WAIT_MS),
        applied.wait_for(|seq| *seq >= need),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// Follows the deployment until the server stops.
pub async fn run(st: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let Some(settings) = st.config.bus.clone() else {
        return;
    };
    let (kick_tx, mut kick_rx) = mpsc::channel::<()>(1);
    let bus_task = tokio::spawn(bus_loop(st.clone(), settings, kick_tx, stop.clone()));
    loop {
        tokio::select! {
            _ = kick_rx.recv() => {}
            _ = st.follow_kick.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
            _ = stop.changed() => break,
        }
        catch_up(&st).await;
    }
    let _ = bus_task.await;
}

/// Connects to the bus (again, after it is lost), announces this node's
/// changes and wakes the follower on the others'.
async fn bus_loop(
    st: Arc<AppState>,
    settings: BusSettings,
    kick: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let prefix = match BusPrefix::new(&settings.prefix) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "the bus prefix is not valid; following the change log in PostgreSQL only");
            return;
        }
    };
    let mut pause = 250;
    loop {
        let mut config = BusConfig::new(settings.url.clone(), prefix.clone());
        config.client_name = Some("patchline".into());
        let bus = tokio::select! {
            bus = Bus::connect(config) => bus,
            _ = stop.changed() => return,
        };
        match bus {
            Ok(bus) => {
                pause = 250;
                // (The bus warns about its server's sync setting itself.)
                tracing::info!(prefix = %prefix.as_str(), "following the deployment on the bus");
                let stopped = attached(&st, &bus, &kick, &mut stop).await;
                st.bus_connected.store(false, Ordering::Relaxed);
                let _ = bus.close().await;
                if stopped {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause, "cannot reach the bus; following the change log in PostgreSQL every {POLL_MS} ms meanwhile");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(BUS_RETRY_MAX_MS);
    }
}

/// Announces and follows on one connection; `true` when the server
/// stops, `false` when the connection is lost for good.
async fn attached(
    st: &Arc<AppState>,
    bus: &Bus,
    kick: &mpsc::Sender<()>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut applied = st.applied.subscribe();
    let mut announced = *applied.borrow_and_update();
    let mut follower = bus.follow_changes(announced + 1);
    // The connection's state is looked at every half second, so a lost bus
    // shows in `/readyz` within that (found from outside: 45 s).
    let mut look = tokio::time::interval(Duration::from_millis(POLL_MS));
    // Announcements refused in a row.
    let mut failed = 0u32;
    loop {
        st.bus_connected
            .store(bus.is_connected() && failed == 0, Ordering::Relaxed);
        tokio::select! {
            _ = look.tick() => {}
            changed = applied.changed() => {
                if changed.is_err() {
                    return true;
                }
                let seq = *applied.borrow_and_update();
                if seq > announced {
                    // A copy of a sequence another node announced is
                    // dropped by the bus; a lost announcement costs one
                    // poll.
                    match bus.publish_change(seq, b"").await {
                        Ok(_) => failed = 0,
                        Err(e) => {
                            tracing::debug!(error = %e, seq, "could not announce a change");
                            failed += 1;
                            // Connected but refused (the server lost its
                            // streams, found from outside): connect again,
                            // which makes them again.
                            if !bus.is_connected() || failed >= 3 {
                                tracing::warn!(error = %e, "the bus refuses this node's announcements; connecting again");
                                return false;
                            }
                        }
                    }
                    announced = seq;
                }
            }
            next = follower.next() => match next {
                Ok(_) => {
                    let _ = kick.try_send(());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "change follower interrupted");
                    tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
                }
            },
            _ = stop.changed() => return true,
        }
    }
}
