//! Delivery workers: claim due deliveries from the durable queue, render
//! them from the delivery view (CloudEvents 1.0 body, Standard Webhooks
//! headers), send them with bounded concurrency per endpoint and overall
//! and a per-endpoint rate, and record every attempt durably. The queue is
//! visited in rounds: one commit records the results that came in and
//! claims the next deliveries. A delivery's state goes Pending → InFlight
//! (leased) → Delivered | Failed{next_at} | Dead; a lease left by a
//! process that died is void at the next start: at least once.
//!
//! The worker knows nothing of the server it runs in: it is given a
//! [`Worker`] — the settings it reads ([`WorkerConfig`]), the clock, a
//! way to open the queue, the delivery view, a wake-up, its metrics
//! ([`DeliveryMetrics`]) and the two things only its host can do
//! ([`Host`]: wait until the node has applied the deployment's changes,
//! disable a subscription whose endpoint answered 410 Gone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchline_core::notice::{Channel, DeliveryState, Grouping, Purpose};
use patchline_core::{Clock, TenantIdx};
use patchline_store::service::{Claimed, Finished, PatchRow, StoredNotice};
use patchline_store::{DeliveryQueue, OpenGroup, StoreError};
use patchline_webhook::retry::Schedule;
use patchline_webhook::ssrf::Policy;
use patchline_webhook::{Outcome, Secret, Sender, SenderConfig, cloudevents, sign};
use tokio::sync::{Mutex as AsyncMutex, Notify, Semaphore, mpsc, watch};

use crate::{DeliveryView, Entry, NoticeDoc, PatchNotice, Reader};

/// Opens delivery-queue connections of the configured backend.
pub type QueueFactory = Arc<dyn Fn() -> Result<Box<dyn DeliveryQueue>, StoreError> + Send + Sync>;

/// The settings the worker reads (the server's configuration names them
/// the same).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Which webhook addresses may be reached.
    pub webhook_policy: Policy,
    /// When a failed attempt is retried, and when it is given up.
    pub retry: Schedule,
    /// Deliveries claimed per round, at most.
    pub claim_batch_max: usize,
    /// Concurrent webhook requests in flight over all endpoints.
    pub inflight_max: usize,
    /// Group commit: a round waits for this many attempt results while
    /// attempts are still running, …
    pub round_gather: usize,
    /// … for this long at most (milliseconds). A round records results and
    /// claims the next deliveries in one commit; without the wait, each
    /// node of a deployment ran its rounds back to back with whatever had
    /// ended, and three nodes made 2.2× the rounds of one for the same
    /// deliveries (BENCHMARKS.md). 0 turns the wait off.
    pub round_linger_ms: u64,
    /// Concurrent requests per endpoint.
    pub per_endpoint_inflight_max: usize,
    pub webhook_timeout_ms: u64,
    /// A claimed delivery not finished by then is retried.
    pub lease_ms: i64,
    /// CloudEvents `source` of webhook events (default
    /// `/patchline/<installation id>`).
    pub event_source: Option<String>,
    /// A node of a deployment: the queue is shared with other nodes, so
    /// only leases that ran out are put back, leases are renewed while
    /// the node lives, and claimed deliveries wait until the node has
    /// applied the deployment's changes.
    pub shared: bool,
}

/// What the worker and the reminder loop count; the server's Prometheus
/// metrics implement it.
pub trait DeliveryMetrics: Send + Sync {
    /// A webhook attempt ended (any outcome) after `seconds`.
    fn attempt_seconds(&self, seconds: f64);
    /// A delivery answered 2xx; at its first attempt, `latency_s` from the
    /// delivery's creation.
    fn delivered(&self, latency_s: Option<f64>);
    /// An attempt failed and will be retried.
    fn failed(&self);
    /// A delivery was given up (a dead letter).
    fn dead(&self);
    /// An endpoint answered 410 Gone (its subscription is disabled).
    fn gone(&self);
    /// Notices reminded (or escalated) by a reminder round.
    fn reminded(&self, n: u64);
    /// A round committed on the queue (results recorded, deliveries
    /// claimed, or both).
    fn round(&self);
}

/// What only the process hosting the worker can do.
pub trait Host: Send + Sync + 'static {
    /// Whether this node has applied the deployment's change log up to
    /// `need` (after waiting a moment for it); only asked when
    /// [`WorkerConfig::shared`].
    fn caught_up_to(&self, need: u64) -> impl Future<Output = bool> + Send;
    /// The endpoint of `subscription` answered 410 Gone: disable the
    /// subscription and make its pending deliveries dead letters.
    fn endpoint_gone(&self, subscription: String) -> impl Future<Output = ()> + Send;
}

/// Everything the worker needs, handed over explicitly.
pub struct Worker<H> {
    pub config: WorkerConfig,
    /// Where every timestamp comes from (tests set the time).
    pub clock: Arc<dyn Clock>,
    /// Opens the worker's connection to the queue.
    pub queues: QueueFactory,
    /// What rendering and sending read instead of the engine.
    pub view: Arc<DeliveryView>,
    /// Notified when deliveries were queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<dyn DeliveryMetrics>,
    pub host: H,
}

impl<H: std::fmt::Debug> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<H> Worker<H> {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Attempts recorded per group commit, at most.
const FINISH_BATCH_MAX: usize = 512;
/// Pause after a round the queue refused, doubling while it keeps
/// refusing, up to [`ROUND_RETRY_MAX_MS`].
const ROUND_RETRY_MS: u64 = 250;
const ROUND_RETRY_MAX_MS: u64 = 4000;

/// The pause after `failures` refusals in a row (opening the queue, or a
/// round on it), in milliseconds.
fn retry_pause_ms(failures: u32) -> u64 {
    ROUND_RETRY_MS
        .saturating_mul(1 << failures.min(4))
        .min(ROUND_RETRY_MAX_MS)
}

/// Longest sleep when nothing is due (new work wakes the loop earlier).
const IDLE_POLL_MS: u64 = 1000;

/// A token bucket per endpoint.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per endpoint (URL origin): its concurrency slots and its rate bucket.
type Endpoints = AsyncMutex<HashMap<String, (Arc<Semaphore>, Bucket)>>;

/// What a send needs of its subscription, from the delivery view.
struct Target {
    url: url::Url,
    secrets: Vec<Secret>,
    tenant: TenantIdx,
    active: bool,
    rate_per_s: u32,
    installation: String,
    /// The operator's escalation channel reads every notice (as an admin),
    /// private artifacts included.
    operator: bool,
    grouping: Grouping,
}

fn xorshift(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs until `shutdown` turns true; then finishes what is in flight.
pub async fn run<H: Host>(st: Arc<Worker<H>>, mut shutdown: watch::Receiver<bool>) {
    let sender = match Sender::new(SenderConfig {
        timeout_ms: st.config.webhook_timeout_ms,
        connect_timeout_ms: st.config.webhook_timeout_ms.min(5000),
        user_agent: format!("patchline/{}", env!("CARGO_PKG_VERSION")),
        policy: st.config.webhook_policy.clone(),
        idle_per_host: st.config.per_endpoint_inflight_max,
    }) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; deliveries stop");
            return;
        }
    };
    // The store may be down when the worker starts (or just after the
    // node did): it tries again, with a growing pause, until the queue
    // opens or the service stops; deliveries wait meanwhile, never stop.
    let mut tries: u32 = 0;
    let queue = loop {
        let open = st.queues.clone();
        match tokio::task::spawn_blocking(move || open()).await {
            Ok(Ok(q)) => break Arc::new(std::sync::Mutex::new(q)),
            Ok(Err(e)) => {
                tries += 1;
                let pause = retry_pause_ms(tries);
                tracing::error!(
                    error = %e,
                    retry_in_ms = pause,
                    "cannot open the delivery queue; deliveries wait until it opens"
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            Err(_) => {
                tracing::error!("opening the delivery queue panicked; deliveries stop");
                return;
            }
        }
    };
    // Alone on its store, a node voids every lease at start: the process
    // that held them is gone. Nodes of a deployment share the queue: only
    // leases that ran out are put back (their node died), now and every
    // quarter of a lease while the node runs.
    let shared = st.config.shared;
    {
        let q = queue.clone();
        let before = if shared { st.now_ms() } else { i64::MAX };
        let _ = tokio::task::spawn_blocking(move || {
            q.lock().ok().map(|mut q| q.release_expired(before).is_ok())
        })
        .await;
    }
    // Deliveries this node holds leases on (claimed, result not yet
    // recorded): a node of a deployment renews them while it lives.
    let leased: Leased = Arc::default();
    // The sweep renews this node's leases until the worker has recorded
    // its last results, not only until the stop: a drain that waits on
    // slow endpoints longer than a lease would otherwise let another node
    // send what this one is still sending.
    let (sweep_stop, sweep_stopped) = watch::channel(false);
    if shared {
        tokio::spawn(sweep_leases(
            st.clone(),
            queue.clone(),
            leased.clone(),
            sweep_stopped,
        ));
    }
    // Each attempt sends its result here when it ends (and frees its slot).
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(st.config.inflight_max.max(1) * 2);
    let inflight = Arc::new(Semaphore::new(st.config.inflight_max));
    let endpoints: Arc<Endpoints> = Arc::default();
    let mut rng = (st.now_ms() as u64) | 1;
    let mut results: Vec<Finished> = Vec::new();
    // Rounds that failed in a row (the queue unreachable or locked).
    let mut failed_rounds: u32 = 0;
    // One round: record the results that came in and claim what there is
    // room for, in one commit on the worker's connection. While a round
    // commits, the next results gather: the group grows with the load.
    let linger = Duration::from_millis(st.config.round_linger_ms);
    loop {
        let stopping = *shutdown.borrow();
        while results.len() < FINISH_BATCH_MAX {
            match done_rx.try_recv() {
                Ok(f) => results.push(f),
                Err(_) => break,
            }
        }
        // Group commit, bounded: while attempts are still running and
        // fewer than `round_gather` results are in, the round waits a
        // little for more (what has not ended yet cannot join it).
        let running = st
            .config
            .inflight_max
            .saturating_sub(inflight.available_permits());
        let gather = st.config.round_gather.min(FINISH_BATCH_MAX);
        if !stopping && !results.is_empty() && results.len() < gather && running > 0 {
            let deadline = tokio::time::Instant::now() + linger;
            let target = gather.min(results.len() + running);
            while results.len() < target {
                match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                    Ok(Some(f)) => results.push(f),
                    _ => break,
                }
            }
        }
        let room = if stopping {
            0
        } else {
            inflight.available_permits().min(st.config.claim_batch_max)
        };
        if stopping && failed_rounds >= 3 {
            tracing::error!(
                results = results.len(),
                "stopping with delivery attempts the queue would not record; a restart sends them again"
            );
            break;
        }
        if stopping && results.is_empty() {
            break;
        }
        let claimed = if room == 0 && results.is_empty() {
            Vec::new()
        } else {
            let q = queue.clone();
            let lease = st.config.lease_ms;
            let now = st.now_ms();
            let batch = std::mem::take(&mut results);
            let view = st.view.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let claimed = round(&q, &batch, now, lease, room, shared, &view);
                (claimed, batch)
            })
            .await;
            match outcome {
                Ok((Some((claimed, need)), recorded)) => {
                    failed_rounds = 0;
                    st.metrics.round();
                    if shared {
                        let mut held = leased.lock().unwrap_or_else(|e| e.into_inner());
                        for f in &recorded {
                            held.remove(&f.id);
                        }
                        held.extend(claimed.iter().map(|(c, _)| c.id));
                    }
                    // A node of a deployment renders what it claimed once
                    // its view holds every change committed before the
                    // claim (another node's notices, subscriptions,
                    // visibility); a node too far behind gives the
                    // deliveries back for a moment.
                    if shared && !claimed.is_empty() && !st.host.caught_up_to(need).await {
                        tracing::warn!(
                            need,
                            "this node has not applied the deployment's latest changes; its claimed deliveries are retried shortly"
                        );
                        results.extend(claimed.into_iter().map(|(c, _)| Finished {
                            id: c.id,
                            claim: c.claim,
                            state: DeliveryState::Failed,
                            status: None,
                            error: Some("the node was behind the deployment's change log".into()),
                            next_at_ms: st.now_ms() + 1000,
                            at_ms: st.now_ms(),
                            notices: Vec::new(),
                        }));
                        continue;
                    }
                    claimed
                }
                Ok((None, batch)) => {
                    // Nothing of the round was committed: its results are
                    // kept and recorded by a later round (their deliveries
                    // stay leased to this process meanwhile), after a pause
                    // that grows while the queue keeps failing.
                    failed_rounds += 1;
                    let pause = retry_pause_ms(failed_rounds);
                    tracing::error!(
                        results = batch.len(),
                        retry_in_ms = pause,
                        "could not record delivery attempts; keeping them for the next round"
                    );
                    results = batch;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(_) => {
                    tracing::error!(
                        "the queue's round panicked; its results are lost until a restart sends them again"
                    );
                    Vec::new()
                }
            }
        };
        if claimed.is_empty() {
            if stopping {
                continue;
            }
            // Nothing to send now: wait for a result, new work, the next
            // due time or the end.
            let wait = if room == 0 {
                Duration::from_millis(IDLE_POLL_MS)
            } else {
                let q = queue.clone();
                let next = tokio::task::spawn_blocking(move || {
                    q.lock().ok().and_then(|mut q| q.next_due().ok().flatten())
                })
                .await
                .ok()
                .flatten();
                match next {
                    Some(t) => {
                        Duration::from_millis((t - st.now_ms()).clamp(1, IDLE_POLL_MS as i64) as u64)
                    }
                    None => Duration::from_millis(IDLE_POLL_MS),
                }
            };
            tokio::select! {
                f = done_rx.recv() => if let Some(f) = f { results.push(f) },
                _ = st.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for (c, rows) in claimed {
            let Ok(permit) = inflight.clone().acquire_owned().await else {
                break;
            };
            let random = xorshift(&mut rng);
            let (st, sender, done, endpoints) = (
                st.clone(),
                sender.clone(),
                done_tx.clone(),
                endpoints.clone(),
            );
            tokio::spawn(async move {
                let finished = attempt(&st, &sender, &endpoints, c, rows, random).await;
                drop(permit);
                let _ = done.send(finished).await;
            });
        }
    }
    // Let in-flight attempts finish (bounded by the request time-out),
    // recording what they learn as it comes (every DRAIN_RECORD_MS): an
    // attempt that ended is recorded at once, not when the slowest one
    // does, so nothing already sent waits on a hung endpoint.
    drop(done_tx);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(st.config.webhook_timeout_ms + 1000);
    let mut open = true;
    while open {
        let tick = tokio::time::sleep(Duration::from_millis(DRAIN_RECORD_MS));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                f = done_rx.recv() => match f {
                    Some(f) => results.push(f),
                    None => { open = false; break }
                },
                _ = &mut tick => break,
                _ = tokio::time::sleep_until(deadline) => { open = false; break }
            }
        }
        if results.is_empty() {
            continue;
        }
        let (q, view) = (queue.clone(), st.view.clone());
        let batch = std::mem::take(&mut results);
        match tokio::task::spawn_blocking(move || {
            let ok = round(&q, &batch, 0, 0, 0, false, &view).is_some();
            (ok, batch)
        })
        .await
        {
            Ok((true, _)) => {}
            Ok((false, batch)) => results = batch,
            Err(_) => {
                tracing::error!("recording delivery attempts panicked; a restart sends them again")
            }
        }
    }
    if !results.is_empty() {
        tracing::error!(
            results = results.len(),
            "could not record the last delivery attempts; a restart sends them again"
        );
    }
    let _ = sweep_stop.send(true);
}

/// How often a stopping worker records the attempts that ended.
const DRAIN_RECORD_MS: u64 = 250;

/// What a claimed delivery carries: notices (with, for a grouped
/// subscription, its groups' open members now), or (purpose `patch`)
/// patch notices.
#[derive(Debug)]
enum Rows {
    Notices(Vec<StoredNotice>, HashMap<i64, u64>),
    Patches(Vec<PatchRow>),
    /// A digest: its notices, their groups' open counts, and the
    /// subscription's groups still open (the first [`DIGEST_OPEN_MAX`],
    /// one more read to tell whether there are more).
    Digest(Vec<StoredNotice>, HashMap<i64, u64>, Vec<OpenGroup>),
}

/// Most groups still open one digest lists.
pub const DIGEST_OPEN_MAX: usize = 100;

/// A claimed delivery with the rows it carries (`None`: they could not be
/// read; it is retried).
type ClaimedRows = (Claimed, Option<Rows>);

/// One round on the queue: records `results`, claims up to `room` due
/// deliveries and reads the notices they carry, in one visit (and one
/// commit); the attempts then never wait for the queue's connection.
/// `None` when the queue failed (nothing of the round is committed).
/// With `shared` (a node of a deployment), also the last change of the
/// deployment's log, read after the claim: what the node must have applied
/// before it renders them.
fn round(
    queue: &std::sync::Mutex<Box<dyn DeliveryQueue>>,
    results: &[Finished],
    now_ms: i64,
    lease_ms: i64,
    room: usize,
    shared: bool,
    view: &DeliveryView,
) -> Option<(Vec<ClaimedRows>, u64)> {
    let mut q = queue.lock().ok()?;
    let claimed = q.finish_and_claim(results, now_ms, lease_ms, room).ok()?;
    let need = if shared && !claimed.is_empty() {
        q.log_seq().ok()?
    } else {
        0
    };
    Some((with_notices(&mut **q, claimed, view)?, need))
}

/// Pairs claimed deliveries with the rows they carry (one read of the
/// notices, one of the patch notices, and for grouped subscriptions one
/// count of their groups' open members).
fn with_notices(
    q: &mut dyn DeliveryQueue,
    claimed: Vec<Claimed>,
    view: &DeliveryView,
) -> Option<Vec<ClaimedRows>> {
    if claimed.is_empty() {
        return Some(Vec::new());
    }
    let ids = |patch: bool| {
        let mut ids: Vec<i64> = claimed
            .iter()
            .filter(|c| (c.purpose == Purpose::Patch) == patch)
            .flat_map(|c| c.notices.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let (notice_ids, patch_ids) = (ids(false), ids(true));
    // Rows by id, read once (nothing to read: none); a failed read leaves
    // each delivery without its rows: it is retried.
    fn by_id<T>(
        ids: &[i64],
        read: impl FnOnce(&[i64]) -> Result<Vec<T>, StoreError>,
        id_of: impl Fn(&T) -> i64,
    ) -> Option<HashMap<i64, T>> {
        if ids.is_empty() {
            return Some(HashMap::new());
        }
        read(ids)
            .ok()
            .map(|rows| rows.into_iter().map(|r| (id_of(&r), r)).collect())
    }
    let notices = by_id(&notice_ids, |ids| q.notices(ids), |r: &StoredNotice| r.id);
    let patches = by_id(&patch_ids, |ids| q.patches(ids), |r: &PatchRow| r.id);
    // Open members of the groups grouped subscriptions will read (a
    // failed count leaves them out of the messages, nothing else).
    let targets = view.targets();
    let grouped = |c: &Claimed| {
        !matches!(c.purpose, Purpose::Patch | Purpose::Digest)
            && targets
                .get(&c.subscription)
                .is_some_and(|t| t.grouping == Grouping::Grouped)
    };
    // A digest's groups still open, per digest delivery (a failed read
    // leaves the delivery without its rows: it is retried).
    let mut still: HashMap<i64, Vec<OpenGroup>> = HashMap::new();
    for c in claimed.iter().filter(|c| c.purpose == Purpose::Digest) {
        let Some(t) = targets.get(&c.subscription) else {
            continue;
        };
        if let Ok(groups) = q.digest_open(&c.subscription, t.tenant, DIGEST_OPEN_MAX + 1) {
            still.insert(c.id, groups);
        }
    }
    let mut roots: Vec<i64> = match &notices {
        Some(rows) => claimed
            .iter()
            .filter(|c| grouped(c))
            .flat_map(|c| c.notices.iter().filter_map(|id| rows.get(id)?.root))
            .map(|r| r.id)
            .collect(),
        None => Vec::new(),
    };
    roots.sort_unstable();
    roots.dedup();
    let open: HashMap<i64, u64> = if roots.is_empty() {
        HashMap::new()
    } else {
        q.root_open_counts(&roots)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    };
    fn pick<T: Clone>(rows: &HashMap<i64, T>, ids: &[i64]) -> Vec<T> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted
            .iter()
            .filter_map(|id| rows.get(id).cloned())
            .collect()
    }
    Some(
        claimed
            .into_iter()
            .map(|c| {
                let mine = if c.purpose == Purpose::Patch {
                    patches
                        .as_ref()
                        .map(|rows| Rows::Patches(pick(rows, &c.notices)))
                } else {
                    notices.as_ref().and_then(|rows| {
                        let mine = pick(rows, &c.notices);
                        let counts = if grouped(&c) {
                            mine.iter()
                                .filter_map(|n| n.root)
                                .filter_map(|r| Some((r.id, *open.get(&r.id)?)))
                                .collect()
                        } else {
                            HashMap::new()
                        };
                        if c.purpose == Purpose::Digest {
                            // A digest counts what it speaks of: the open
                            // notices kept for its subscription, per group
                            // (the same numbers as its `still_open`).
                            let groups = still.remove(&c.id)?;
                            let counts = groups.iter().map(|g| (g.root.id, g.open)).collect();
                            Some(Rows::Digest(mine, counts, groups))
                        } else {
                            Some(Rows::Notices(mine, counts))
                        }
                    })
                };
                (c, mine)
            })
            .collect(),
    )
}

/// What a send needs, from the delivery view (no engine lock).
fn target<H>(st: &Worker<H>, subscription: &str) -> Option<Target> {
    let s = st.view.target(subscription)?;
    let Channel::Webhook { url } = &s.channel else {
        return None;
    };
    Some(Target {
        url: url::Url::parse(url).ok()?,
        secrets: s
            .signing_secrets(st.now_ms())
            .into_iter()
            .filter_map(|x| Secret::parse(x).ok())
            .collect(),
        tenant: s.tenant,
        active: s.state.is_active(),
        rate_per_s: s.rate_per_s,
        installation: st.view.installation(),
        operator: s.operator,
        grouping: s.grouping,
    })
}

/// Renders and sends one delivery; answers what the queue must record.
async fn attempt<H: Host>(
    st: &Worker<H>,
    sender: &Sender,
    endpoints: &Endpoints,
    c: Claimed,
    rows: Option<Rows>,
    random: f64,
) -> Finished {
    let now = st.now_ms();
    let dead = |error: &str| Finished {
        id: c.id,
        claim: c.claim,
        state: DeliveryState::Dead,
        status: None,
        error: Some(error.to_string()),
        next_at_ms: now,
        at_ms: now,
        notices: Vec::new(),
    };
    let Some(target) = target(st, &c.subscription) else {
        return dead("subscription gone");
    };
    if !target.active {
        return dead("subscription disabled");
    }
    // Body: the notices as their subscriber sees them, rendered from the
    // delivery view (no engine lock on this path).
    let reader = if target.operator {
        Reader::Admin
    } else {
        Reader::Tenant(target.tenant)
    };
    let Some(rows) = rows else {
        return Finished {
            id: c.id,
            claim: c.claim,
            state: DeliveryState::Failed,
            status: None,
            error: Some("could not read the notices".into()),
            next_at_ms: now + 1000,
            at_ms: now,
            notices: Vec::new(),
        };
    };
    let mut records = std::collections::BTreeMap::new();
    let mut digest: Option<(Vec<crate::grouped::StillOpen>, bool)> = None;
    let (docs, patches) = match rows {
        Rows::Digest(rows, open, mut groups) => {
            let names = st.view.names();
            let mut docs = NoticeDoc::render_all(&rows, &names, reader);
            records = crate::take_record_text(&mut docs);
            let more = groups.len() > DIGEST_OPEN_MAX;
            groups.truncate(DIGEST_OPEN_MAX);
            digest = Some((crate::grouped::still_open(&groups, &names, reader), more));
            (
                crate::grouped::group(&rows, docs, &names, reader, &open),
                Vec::new(),
            )
        }
        Rows::Notices(rows, open) => {
            let names = st.view.names();
            let mut docs = NoticeDoc::render_all(&rows, &names, reader);
            // The record's text once per message, not in each notice.
            records = crate::take_record_text(&mut docs);
            let entries = if target.grouping == Grouping::Grouped {
                crate::grouped::group(&rows, docs, &names, reader, &open)
            } else {
                docs.into_iter().map(Entry::Notice).collect()
            };
            (entries, Vec::new())
        }
        Rows::Patches(rows) => {
            let names = st.view.names();
            let patches: Vec<PatchNotice> = rows
                .iter()
                .filter_map(|r| PatchNotice::render(r, &names, reader))
                .collect();
            (Vec::new(), patches)
        }
    };
    if docs.is_empty() && patches.is_empty() && digest.as_ref().is_none_or(|d| d.0.is_empty()) {
        // Every notice of it became invisible to the subscriber (a watched
        // artifact made private, ...): nothing to send.
        return Finished {
            id: c.id,
            claim: c.claim,
            state: DeliveryState::Delivered,
            status: None,
            error: Some("nothing left that the subscriber may see".into()),
            next_at_ms: now,
            at_ms: now,
            notices: Vec::new(),
        };
    }
    let msg_id = crate::message_id(&target.installation, c.id);
    let ty = c.purpose.event_type();
    // The event's time is when the delivery was made, not this attempt's:
    // a retry carries the same `webhook-id` and the same body (only the
    // `webhook-timestamp` header and the signature are the attempt's).
    let time = patchline_core::timestamp::format_unix(c.created_at_ms / 1000);
    let source = st
        .config
        .event_source
        .clone()
        .unwrap_or_else(|| format!("/patchline/{}", target.installation));
    #[derive(serde::Serialize)]
    struct Data<'a> {
        purpose: Purpose,
        records: &'a std::collections::BTreeMap<String, crate::RecordText>,
        notices: &'a [Entry],
    }
    #[derive(serde::Serialize)]
    struct PatchData<'a> {
        purpose: Purpose,
        patches: &'a [PatchNotice],
    }
    #[derive(serde::Serialize)]
    struct DigestData<'a> {
        purpose: Purpose,
        records: &'a std::collections::BTreeMap<String, crate::RecordText>,
        /// New and changed since the last digest, grouped by root cause.
        notices: &'a [Entry],
        /// The subscription's groups with open notices now.
        still_open: &'a [crate::grouped::StillOpen],
        /// More groups are open than listed.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        still_open_more: bool,
    }
    let body = if let Some((still_open, more)) = &digest {
        let data = DigestData {
            purpose: c.purpose,
            records: &records,
            notices: &docs,
            still_open,
            still_open_more: *more,
        };
        cloudevents::to_vec(&msg_id, &source, ty, &time, &data).unwrap_or_default()
    } else if c.purpose == Purpose::Patch {
        let data = PatchData {
            purpose: c.purpose,
            patches: &patches,
        };
        cloudevents::to_vec(&msg_id, &source, ty, &time, &data).unwrap_or_default()
    } else {
        let data = Data {
            purpose: c.purpose,
            records: &records,
            notices: &docs,
        };
        cloudevents::to_vec(&msg_id, &source, ty, &time, &data).unwrap_or_default()
    };
    let timestamp = now / 1000;
    let secrets: Vec<&Secret> = target.secrets.iter().collect();
    let signature = sign::header_value(&secrets, &msg_id, timestamp, &body);
    // Per-endpoint concurrency and rate.
    let key = target.url.origin().ascii_serialization();
    let permit = {
        let mut map = endpoints.lock().await;
        let entry = map.entry(key.clone()).or_insert_with(|| {
            (
                Arc::new(Semaphore::new(st.config.per_endpoint_inflight_max)),
                Bucket {
                    tokens: target.rate_per_s as f64,
                    last: Instant::now(),
                },
            )
        });
        let rate = target.rate_per_s.max(1) as f64;
        let elapsed = entry.1.last.elapsed().as_secs_f64();
        entry.1.tokens = (entry.1.tokens + elapsed * rate).min(rate);
        entry.1.last = Instant::now();
        entry.1.tokens -= 1.0;
        let wait = if entry.1.tokens < 0.0 {
            Some(Duration::from_secs_f64(-entry.1.tokens / rate))
        } else {
            None
        };
        (entry.0.clone(), wait)
    };
    if let Some(wait) = permit.1 {
        tokio::time::sleep(wait).await;
    }
    let Ok(_slot) = permit.0.acquire_owned().await else {
        return dead("endpoint closed");
    };
    let headers = [
        (patchline_webhook::HEADER_ID, msg_id.clone()),
        (patchline_webhook::HEADER_TIMESTAMP, timestamp.to_string()),
        (patchline_webhook::HEADER_SIGNATURE, signature),
        ("content-type", "application/cloudevents+json".to_string()),
    ];
    let result = sender.post(&target.url, &headers, body).await;
    if let Some(detail) = &result.detail {
        // What the tenant is told is `error`; the detail (which may name
        // internal addresses) stays in the operator's log.
        tracing::warn!(subscription = %c.subscription, delivery = c.id, %detail, "webhook refused by policy");
    }
    let at = st.now_ms();
    st.metrics
        .attempt_seconds(result.duration_ms as f64 / 1000.0);
    let retry_at = |after: Option<Duration>| -> Option<i64> {
        let attempts_done = c.attempts + 1;
        let scheduled = st.config.retry.next_delay(attempts_done, random)?;
        let delay = after.map_or(scheduled, |a| a.max(scheduled));
        Some(at + delay.as_millis() as i64)
    };
    let (state, next_at) = match result.outcome {
        Outcome::Delivered => {
            st.metrics.delivered(
                (c.attempts == 0).then(|| (at - c.created_at_ms).max(0) as f64 / 1000.0),
            );
            (DeliveryState::Delivered, at)
        }
        Outcome::Gone => {
            st.metrics.gone();
            tracing::warn!(subscription = %c.subscription, "the endpoint answered 410 Gone: subscription disabled, its pending deliveries are dead letters");
            st.host.endpoint_gone(c.subscription.clone()).await;
            (DeliveryState::Dead, at)
        }
        Outcome::Retry { after } => match retry_at(after) {
            Some(t) => (DeliveryState::Failed, t),
            None => (DeliveryState::Dead, at),
        },
        Outcome::Failed => match retry_at(None) {
            Some(t) => (DeliveryState::Failed, t),
            None => (DeliveryState::Dead, at),
        },
    };
    match state {
        DeliveryState::Failed => st.metrics.failed(),
        DeliveryState::Dead => st.metrics.dead(),
        _ => {}
    }
    Finished {
        id: c.id,
        claim: c.claim,
        state,
        status: result.status,
        error: result.error,
        next_at_ms: next_at,
        at_ms: at,
        // A delivered message marks its notices `notified`; a patch
        // notice has no state.
        notices: if state == DeliveryState::Delivered && c.purpose != Purpose::Patch {
            c.notices
        } else {
            Vec::new()
        },
    }
}

/// The deliveries a node holds leases on.
type Leased = Arc<std::sync::Mutex<std::collections::HashSet<i64>>>;

/// Every quarter of a lease: renews the leases this node holds (it is
/// alive: an attempt waiting for its endpoint's rate or a slot is not
/// taken over), then puts back deliveries whose lease ran out (a node of
/// the deployment died holding them).
async fn sweep_leases<H: Host>(
    st: Arc<Worker<H>>,
    queue: Arc<std::sync::Mutex<Box<dyn DeliveryQueue>>>,
    leased: Leased,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_millis((st.config.lease_ms / 4).clamp(250, 15_000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let q = queue.clone();
        let now = st.now_ms();
        let mine: Vec<i64> = leased
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let until = now + st.config.lease_ms;
        let released = tokio::task::spawn_blocking(move || {
            let mut q = q.lock().ok()?;
            if let Err(e) = q.renew(&mine, until) {
                tracing::warn!(error = %e, "could not renew this node's delivery leases");
            }
            q.release_expired(now).ok()
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
        if released > 0 {
            tracing::warn!(
                released,
                "deliveries whose lease ran out (their node stopped) are queued again"
            );
            st.wake.notify_one();
        }
    }
}
