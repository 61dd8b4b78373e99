//! The server's shared state and configuration.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use patchline_store::NoticeReader;
use patchline_webhook::retry::Schedule;
use patchline_webhook::ssrf::Policy;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::sse::Hub;

/// Everything `serve` is told, with the defaults a demanding operator
/// expects; every number is a named bound.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where the state lives: SQLite in the data directory (the embedded
    /// default) or a PostgreSQL database (`--store`).
    pub store: StoreBackend,
    /// SHA-256 of `PATCHLINE_ADMIN_TOKEN`.
    pub admin_token_hash: Option<String>,
    /// `PATCHLINE_WEBHOOK_ALLOW`: CIDRs exempt from the private-range check.
    pub webhook_policy: Policy,
    pub retry: Schedule,
    /// Largest request body, in bytes (an artifact may carry an SBOM).
    pub body_max_bytes: usize,
    /// Bytes of request bodies being received at once, over all
    /// connections (counted in MiB, by their declared length).
    pub body_inflight_max_bytes: usize,
    /// Deliveries claimed per worker poll.
    pub claim_batch_max: usize,
    /// Deliveries claimed and not yet attempted to the end, over all
    /// endpoints (each holds a slot from its claim until its attempt ends;
    /// its result is recorded by a later round; at most
    /// `per_endpoint_inflight_max` of them send to one endpoint at once).
    /// The worker claims as many as there are free slots in each round,
    /// so this is also the size a round grows to: 512 keeps a round's
    /// commit cost per delivery low (BENCHMARKS: 256 delivered 20 % less
    /// on PostgreSQL).
    pub inflight_max: usize,
    /// Group commit: a worker round waits for this many results while
    /// attempts are still running, for `round_linger_ms` at most (see
    /// `WorkerConfig`).
    pub round_gather: usize,
    pub round_linger_ms: u64,
    /// Concurrent requests per endpoint.
    pub per_endpoint_inflight_max: usize,
    pub webhook_timeout_ms: u64,
    /// A claimed delivery not finished by then is retried (nodes of a
    /// deployment renew their leases every quarter of it while they live,
    /// so this is how long a dead node's deliveries wait).
    pub lease_ms: i64,
    /// Unacknowledged notices are reminded this often.
    pub reminder_interval_ms: i64,
    /// After this many reminders, escalate to every channel and the
    /// operator.
    pub escalate_after: i64,
    /// The operator's webhook for escalations (`PATCHLINE_OPERATOR_WEBHOOK`).
    pub operator_webhook: Option<String>,
    /// How long a rotated-out secret keeps signing.
    pub secret_overlap_ms: i64,
    /// Server-sent event streams held at once.
    pub streams_max: usize,
    /// Server-sent event streams one tenant may hold at once.
    pub streams_per_tenant_max: usize,
    /// Notices per page of `GET /v1/notices`.
    pub page_max: usize,
    /// Bytes per page of notices (a page ends early past it; `next`
    /// continues).
    pub page_bytes_max: usize,
    /// Largest whole `affected` answer; past it the API answers a
    /// `too_large` error that points to paging.
    pub affected_bytes_max: usize,
    /// Run the delivery workers in this process.
    pub workers: bool,
    /// A request's headers must arrive within this; an idle keep-alive
    /// connection is closed after it too.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this.
    pub body_read_timeout_ms: u64,
    /// A response write that makes no progress for this long closes the
    /// connection (a client that stopped reading, streams included).
    pub write_timeout_ms: u64,
    /// Connections held at once (`None`: the descriptor limit less room
    /// for the database and the webhook clients).
    pub conns_max: Option<usize>,
    /// Conflicting creations (a taken id) a tenant may make per minute
    /// before every creation of its answers 429 for a while.
    pub conflicts_per_min: u32,
    /// CloudEvents `source` of webhook events (`PATCHLINE_EVENT_SOURCE`;
    /// default `/patchline/<installation id>`).
    pub event_source: Option<String>,
    /// Folders `POST /v1/scan` may read (`PATCHLINE_SCAN_ROOTS`); empty:
    /// scanning through the API is off.
    pub scan_roots: Vec<PathBuf>,
    /// Operator keys sealing webhook secrets at rest.
    pub secret_keys: patchline_store::SecretKeys,
    /// Where every timestamp comes from (tests set the time).
    pub clock: Arc<dyn patchline_core::Clock>,
    /// Several nodes share the PostgreSQL store as one deployment, their
    /// committed changes announced on this NATS bus (`--bus`).
    pub bus: Option<BusSettings>,
}

/// The bus of a deployment of several nodes.
#[derive(Clone)]
pub struct BusSettings {
    /// `nats://[user:password@]host:port`.
    pub url: String,
    /// The deployment's name on the bus (`--bus-prefix`): deployments with
    /// different prefixes on one NATS never see each other.
    pub prefix: String,
}

impl std::fmt::Debug for BusSettings {
    // The URL may hold a password: only the prefix is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSettings")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            store: StoreBackend::Embedded,
            admin_token_hash: None,
            webhook_policy: Policy::default(),
            retry: Schedule::default(),
            body_max_bytes: 16 << 20,
            body_inflight_max_bytes: 256 << 20,
            claim_batch_max: 512,
            inflight_max: 512,
            round_gather: 128,
            round_linger_ms: 5,
            per_endpoint_inflight_max: 32,
            webhook_timeout_ms: 10_000,
            lease_ms: 20_000,
            reminder_interval_ms: 24 * 3600 * 1000,
            escalate_after: 3,
            operator_webhook: None,
            secret_overlap_ms: 24 * 3600 * 1000,
            streams_max: 10_000,
            streams_per_tenant_max: 100,
            page_max: 1000,
            page_bytes_max: 8 << 20,
            affected_bytes_max: 64 << 20,
            workers: true,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            write_timeout_ms: 60_000,
            conns_max: None,
            conflicts_per_min: 10,
            event_source: None,
            scan_roots: Vec::new(),
            secret_keys: patchline_store::SecretKeys::none(),
            clock: Arc::new(patchline_core::SystemClock),
            bus: None,
        }
    }
}

/// Where the server keeps its state.
#[derive(Clone, Default)]
pub enum StoreBackend {
    /// SQLite in the data directory, locked for this process.
    #[default]
    Embedded,
    /// A PostgreSQL database (`postgres://…`): held by this node alone, or
    /// shared by the nodes of a deployment when a bus is configured.
    Postgres { url: String },
}

impl std::fmt::Debug for StoreBackend {
    // The URL may hold a password: only its kind is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackend::Embedded => f.write_str("Embedded"),
            StoreBackend::Postgres { .. } => f.write_str("Postgres { url: <redacted> }"),
        }
    }
}

/// The engine the server runs: over the embedded SQLite store or PostgreSQL.
pub type Engine = patchline_engine::Engine<patchline_store::DynStore>;

pub use patchline_delivery::worker::QueueFactory;

/// Shared by every handler and worker.
pub struct AppState {
    pub config: Config,
    /// This node's hold on a PostgreSQL store (none for SQLite, whose data
    /// directory the engine locks).
    pub _node_lock: Option<patchline_store::postgres::NodeLock>,
    /// The single writer. Held briefly; database work runs on blocking
    /// threads.
    pub engine: Arc<Mutex<Engine>>,
    /// What the delivery path reads instead of the engine: names,
    /// visibility, record texts, webhook targets (kept current by the
    /// engine at every commit).
    pub view: Arc<patchline_delivery::DeliveryView>,
    /// Live tokens by hash (kept current by the engine at every commit
    /// that changes them): requests authenticate without the engine.
    pub credentials: Arc<patchline_engine::service::Credentials>,
    /// Reads that need no catalog (pages of notices, progress).
    pub reader: Arc<Mutex<Box<dyn NoticeReader>>>,
    /// Opens a connection to the delivery queue (the workers hold one).
    pub queues: QueueFactory,
    pub hub: Hub,
    /// Wakes the delivery workers when deliveries were queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Bumped at every token revocation: open streams check their token.
    pub revocations: tokio::sync::watch::Sender<u64>,
    /// Turns true when the server stops: open streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Budget of request-body bytes being received (MiB permits).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// VEX exports running on this node (one at a time: each reads every
    /// notice of its tenant).
    pub exports: tokio::sync::Semaphore,
    /// The last change of the deployment's log this node committed or
    /// applied: announced on the bus, so the other nodes catch up at once.
    pub applied: tokio::sync::watch::Sender<u64>,
    /// Asks the node's follower to read the change log now (a read needs
    /// changes the node has not applied yet).
    pub follow_kick: Notify,
    /// Counts the follower's catch-ups (a read waits for one that began
    /// after it).
    pub catch_ups: tokio::sync::watch::Sender<u64>,
    /// A node of a deployment: the slots of its tenants' open streams,
    /// counted over the whole deployment.
    pub stream_slots: Option<Arc<patchline_store::postgres::StreamSlots>>,
    /// A node of a deployment: whether its bus connection is up.
    pub bus_connected: std::sync::atomic::AtomicBool,
    /// Per-tenant budget of conflicting creations (taken ids).
    pub conflicts: Mutex<std::collections::HashMap<patchline_core::TenantIdx, Bucket>>,
}

/// A token bucket: `tokens` refill at `per_min` a minute up to `per_min`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub tokens: f64,
    pub at: std::time::Instant,
}

impl Bucket {
    pub fn full(per_min: u32) -> Bucket {
        Bucket {
            tokens: f64::from(per_min),
            at: std::time::Instant::now(),
        }
    }

    /// Refills, then answers whether a token is left (without taking it).
    pub fn has_token(&mut self, per_min: u32) -> bool {
        let now = std::time::Instant::now();
        let per_s = f64::from(per_min) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * per_s)
            .min(f64::from(per_min));
        self.at = now;
        self.tokens >= 1.0
    }

    /// Seconds until a token is back.
    pub fn wait_s(&self, per_min: u32) -> u64 {
        let per_s = f64::from(per_min.max(1)) / 60.0;
        ((1.0 - self.tokens).max(0.0) / per_s).ceil() as u64
    }
}

impl AppState {
    /// Now, by the configured clock.
    pub fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
