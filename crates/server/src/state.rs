//! The server's shared state and configuration.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use patchline_engine::Engine;
use patchline_store::{DeliveryQueue, NoticeReader, StoreError};
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
    /// SHA-256 of `PATCHLINE_ADMIN_TOKEN`.
    pub admin_token_hash: Option<String>,
    /// `PATCHLINE_WEBHOOK_ALLOW`: CIDRs exempt from the private-range check.
    pub webhook_policy: Policy,
    pub retry: Schedule,
    /// Largest request body, in bytes (an artifact may carry an SBOM).
    pub body_max_bytes: usize,
    /// Deliveries claimed per worker poll.
    pub claim_batch_max: usize,
    /// Concurrent webhook requests in flight over all endpoints.
    pub inflight_max: usize,
    /// Concurrent requests per endpoint.
    pub per_endpoint_inflight_max: usize,
    pub webhook_timeout_ms: u64,
    /// A claimed delivery not finished by then is retried.
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
    /// Notices per page of `GET /v1/notices`.
    pub page_max: usize,
    /// Run the delivery workers in this process.
    pub workers: bool,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            admin_token_hash: None,
            webhook_policy: Policy::default(),
            retry: Schedule::default(),
            body_max_bytes: 16 << 20,
            claim_batch_max: 512,
            inflight_max: 256,
            per_endpoint_inflight_max: 32,
            webhook_timeout_ms: 10_000,
            lease_ms: 60_000,
            reminder_interval_ms: 24 * 3600 * 1000,
            escalate_after: 3,
            operator_webhook: None,
            secret_overlap_ms: 24 * 3600 * 1000,
            streams_max: 20_000,
            page_max: 1000,
            workers: true,
        }
    }
}

/// Opens delivery-queue connections of the configured backend.
pub type QueueFactory = Arc<dyn Fn() -> Result<Box<dyn DeliveryQueue>, StoreError> + Send + Sync>;

/// Shared by every handler and worker.
pub struct AppState {
    pub config: Config,
    /// The single writer. Held briefly; database work runs on blocking
    /// threads.
    pub engine: Arc<Mutex<Engine>>,
    /// Reads that need no catalog (pages of notices, progress).
    pub reader: Arc<Mutex<Box<dyn NoticeReader>>>,
    /// Opens a connection to the delivery queue (the workers hold one).
    pub queues: QueueFactory,
    pub hub: Hub,
    /// Wakes the delivery workers when deliveries were queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
