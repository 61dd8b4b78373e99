//! Delivery work on the bus: jobs published once (ids deduplicated), leased
//! to one node at a time through the shared durable pull consumer, and
//! acknowledged, retried after a delay, given up or kept leased by the node
//! that holds them. A job whose lease runs out goes to some node again.

use crate::{Bus, BusError, HEADER_JOB_ID, Published, check_header_value};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// Most jobs one claim hands out.
pub const CLAIM_MAX: usize = 256;
/// Longest wait of one claim for a first job.
pub const CLAIM_WAIT_MAX: Duration = Duration::from_secs(30);
/// Shortest wait the server accepts for a pull request.
const CLAIM_WAIT_MIN: Duration = Duration::from_millis(10);
/// How long a pull for the jobs ready now may stay at the server. With no
/// job ready it answers at once; at the consumer's lease limit
/// (`max_ack_pending`) it holds the pull until it expires.
const FETCH_EXPIRES: Duration = Duration::from_millis(100);

impl Bus {
    /// Queues job `id`; JetStream has stored it when this returns. The same
    /// id published again within the duplicate window is not queued twice
    /// ([`Published::duplicate`]). Messages should carry ids (of deliveries
    /// in PostgreSQL), not documents.
    pub async fn publish_job(&self, id: &str, payload: &[u8]) -> Result<Published, BusError> {
        check_header_value("job id", id)?;
        self.check_size("job", payload.len())?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_JOB_ID, id);
        self.publish_js(
            "publish job",
            self.inner.prefix.work_subject(),
            id,
            headers,
            payload,
        )
        .await
    }

    /// Leases up to `limit` jobs (at most [`CLAIM_MAX`]) to this node for
    /// [`Bus::lease`]: those ready now, or else the first to become ready
    /// within `wait` (at most [`CLAIM_WAIT_MAX`]) and those ready with it.
    /// Empty when none came in time.
    ///
    /// Dropping the future while it waits leaves the server a pull request
    /// until `wait` ends; a job it hands out then is leased to nobody and
    /// comes back after one lease.
    pub async fn claim_jobs(&self, limit: usize, wait: Duration) -> Result<Vec<Job>, BusError> {
        let limit = limit.min(CLAIM_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut jobs = self.fetch_ready(limit).await?;
        if !jobs.is_empty() {
            return Ok(jobs);
        }
        // Wait for one job only: a pull request for more would keep
        // taking jobs after we stop listening.
        let wait = wait.clamp(CLAIM_WAIT_MIN, CLAIM_WAIT_MAX);
        let consumer = &self.inner.work;
        let timeout = wait + self.inner.config.request_timeout;
        let first = self
            .pull(
                timeout,
                consumer.batch().max_messages(1).expires(wait).messages(),
            )
            .await?;
        if first.is_empty() {
            return Ok(Vec::new());
        }
        for message in first {
            jobs.push(self.job(message)?);
        }
        if limit > jobs.len() {
            jobs.extend(self.fetch_ready(limit - jobs.len()).await?);
        }
        Ok(jobs)
    }

    /// Jobs in the queue: waiting, leased or waiting out a nak delay (a
    /// job leaves it when acked or termed). For metrics and tests.
    pub async fn queued_jobs(&self) -> Result<u64, BusError> {
        let op = "count jobs";
        let js = &self.inner.js;
        let name = self.inner.prefix.work_stream();
        let info = self
            .bounded(op, async {
                let stream = js
                    .get_stream(&name)
                    .await
                    .map_err(|e| self.classify(op, &e))?;
                stream.get_info().await.map_err(|e| self.classify(op, &e))
            })
            .await??;
        Ok(info.state.messages)
    }

    /// The jobs ready now, without waiting.
    async fn fetch_ready(&self, limit: usize) -> Result<Vec<Job>, BusError> {
        let consumer = &self.inner.work;
        let messages = self
            .pull(
                self.inner.config.request_timeout,
                consumer
                    .fetch()
                    .max_messages(limit)
                    .expires(FETCH_EXPIRES)
                    .messages(),
            )
            .await?;
        messages.into_iter().map(|m| self.job(m)).collect()
    }

    /// Reads one pull request's messages until it ends, within `timeout`.
    /// Messages received before an error or the timeout are kept: they are
    /// leased to this node, and dropping them would delay them by a lease.
    async fn pull(
        &self,
        timeout: Duration,
        request: impl Future<
            Output = Result<
                jetstream::consumer::pull::Batch,
                jetstream::consumer::pull::BatchError,
            >,
        >,
    ) -> Result<Vec<jetstream::Message>, BusError> {
        let op = "claim jobs";
        let mut got = Vec::new();
        let read = tokio::time::timeout(timeout, async {
            let mut batch = request.await.map_err(async_nats::Error::from)?;
            while let Some(message) = batch.next().await {
                got.push(message?);
            }
            Ok::<(), async_nats::Error>(())
        })
        .await;
        match read {
            Ok(Ok(())) => Ok(got),
            _ if !got.is_empty() => Ok(got),
            Ok(Err(e)) if at_a_server_limit(e.as_ref()) => Ok(got),
            Ok(Err(e)) => Err(self.classify(op, e.as_ref())),
            Err(_) => Err(BusError::Unavailable {
                op,
                reason: format!("no answer within {} ms", timeout.as_millis()),
            }),
        }
    }

    fn job(&self, message: jetstream::Message) -> Result<Job, BusError> {
        let info = message.info().map_err(|e| BusError::Server {
            op: "claim jobs",
            reason: format!("a job without JetStream metadata: {e}"),
        })?;
        let (stream_seq, delivered) = (info.stream_sequence, info.delivered.max(1) as u64);
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_JOB_ID))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        Ok(Job {
            id,
            payload: message.payload.clone(),
            delivered,
            stream_seq,
            message,
            bus: self.clone(),
        })
    }
}

/// Whether a pull was turned down because the consumer is at one of its
/// limits (409 "Exceeded MaxAckPending" or "MaxWaiting": as many jobs
/// leased, or pulls waiting, as allowed): no job for this node now, which is
/// not a failure.
fn at_a_server_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("exceeded maxackpending") || text.contains("exceeded maxwaiting")
}

/// A job leased to this node. Finish it with [`Job::ack`], [`Job::nak`] or
/// [`Job::term`]; a job dropped without one comes back to some node when
/// its lease runs out.
pub struct Job {
    id: String,
    payload: Bytes,
    delivered: u64,
    stream_seq: u64,
    message: jetstream::Message,
    bus: Bus,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("delivered", &self.delivered)
            .field("stream_seq", &self.stream_seq)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl Job {
    /// The id it was published with.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// How many times it has been handed out, this time included: 1 the
    /// first time, more after a nak or an expired lease.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Its position in the `<prefix>_WORK` stream.
    pub fn stream_seq(&self) -> u64 {
        self.stream_seq
    }

    /// Done: the job leaves the queue. Returns once the server has recorded
    /// it.
    pub async fn ack(self) -> Result<(), BusError> {
        self.confirm("ack job", AckKind::Ack).await
    }

    /// Not now: the job comes back (to some node) after `delay`, no sooner.
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        self.confirm("nak job", AckKind::Nak(Some(delay))).await
    }

    /// Give up: the job leaves the queue and is never handed out again.
    pub async fn term(self) -> Result<(), BusError> {
        self.confirm("term job", AckKind::Term).await
    }

    /// Still working: the lease starts again from now.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        self.confirm("extend job lease", AckKind::Progress).await
    }

    /// Sends `kind` and waits for the server's confirmation.
    async fn confirm(&self, op: &'static str, kind: AckKind) -> Result<(), BusError> {
        self.bus
            .bounded(op, self.message.double_ack_with(kind))
            .await?
            .map_err(|e| self.bus.classify(op, e.as_ref()))
    }
}
