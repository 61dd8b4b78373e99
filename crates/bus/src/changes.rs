//! The committed-changes log on the bus: publishing a change under its
//! sequence (deduplicated), and following the log from a sequence, in
//! order, across reconnects, with the changes it did not see reported so
//! the caller reads them from PostgreSQL.

use crate::{Bus, BusError, HEADER_CHANGE_SEQ, Published};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::ops::Range;
use std::time::Duration;

/// Longest pause between two attempts to re-open a broken follower.
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One committed change, as a follower hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The change's sequence (PostgreSQL's).
    pub seq: u64,
    pub payload: Bytes,
    /// Its position in the `<prefix>_CHANGES` stream.
    pub stream_seq: u64,
    /// Sequences between the previous change handed out (or the follower's
    /// start) and this one that the bus does not have (never published,
    /// aged out, or published out of order): read them from PostgreSQL
    /// before applying this one. Empty when nothing was missed.
    pub missed: Range<u64>,
}

impl Bus {
    /// Publishes committed change `seq`; JetStream has stored it when this
    /// returns. Re-publishing the same `seq` (after a crash) within the
    /// duplicate window stores nothing new ([`Published::duplicate`]); a
    /// follower skips later copies in any case.
    pub async fn publish_change(&self, seq: u64, payload: &[u8]) -> Result<Published, BusError> {
        self.check_size("change", payload.len())?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_CHANGE_SEQ, seq.to_string().as_str());
        self.publish_js(
            "publish change",
            self.inner.prefix.changes_subject(),
            &seq.to_string(),
            headers,
            payload,
        )
        .await
    }

    /// A follower of the change log that hands out changes from sequence
    /// `from` on, in order: first those the stream holds (catch-up), then
    /// new ones as they are published (live tail). It opens lazily, on the
    /// first [`ChangeFollower::next`].
    pub fn follow_changes(&self, from: u64) -> ChangeFollower {
        ChangeFollower {
            reconnects: Some(self.inner.reconnects.clone()),
            bus: self.clone(),
            next_seq: from,
            resume_at: None,
            messages: None,
            failures: 0,
        }
    }

    /// Publishes on a JetStream subject with a message id and waits for the
    /// stream's acknowledgement, all within the request timeout.
    pub(crate) async fn publish_js(
        &self,
        op: &'static str,
        subject: String,
        msg_id: &str,
        headers: HeaderMap,
        payload: &[u8],
    ) -> Result<Published, BusError> {
        let message = jetstream::message::PublishMessage::build()
            .headers(headers)
            .message_id(msg_id)
            .payload(Bytes::copy_from_slice(payload));
        let stream = if subject == self.inner.prefix.work_subject() {
            self.inner.prefix.work_stream()
        } else {
            self.inner.prefix.changes_stream()
        };
        let js = &self.inner.js;
        let acked = self
            .bounded(op, async {
                let pending = js.send_publish(subject, message).await?;
                pending.await
            })
            .await?;
        match acked {
            Ok(ack) => Ok(Published {
                stream_seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(e) => Err(self.publish_error(op, stream, payload.len(), &e)),
        }
    }

    fn publish_error(
        &self,
        op: &'static str,
        stream: String,
        size: usize,
        e: &jetstream::context::PublishError,
    ) -> BusError {
        use jetstream::context::PublishErrorKind as K;
        let server = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .cloned();
        match (e.kind(), server) {
            (K::TimedOut | K::BrokenPipe | K::StreamNotFound, _) => BusError::Unavailable {
                op,
                reason: self.redact(&e.to_string()),
            },
            (K::MaxPayloadExceeded, _) => BusError::TooLarge {
                what: "message",
                size,
                max: self.inner.payload_max,
            },
            (_, Some(j))
                if j.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED
                    || j.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED =>
            {
                BusError::Full {
                    stream,
                    reason: self.redact(&j.to_string()),
                }
            }
            _ => self.classify(op, e),
        }
    }
}

/// Follows `<prefix>_CHANGES` from a sequence. Not shared between tasks;
/// open one per reader.
pub struct ChangeFollower {
    bus: Bus,
    /// The change sequence expected next.
    next_seq: u64,
    /// The stream position to re-open at after a break (the one after the
    /// last message seen); `None` until the first open.
    resume_at: Option<u64>,
    messages: Option<consumer::pull::Ordered>,
    /// Breaks in a row, for the re-open backoff.
    failures: u32,
    /// Changes when the connection comes back: the server may have lost
    /// the follower's ephemeral consumer (a restart), so re-open at once.
    reconnects: Option<tokio::sync::watch::Receiver<u64>>,
}

impl std::fmt::Debug for ChangeFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFollower")
            .field("prefix", &self.bus.inner.prefix)
            .field("next_seq", &self.next_seq)
            .field("resume_at", &self.resume_at)
            .field("open", &self.messages.is_some())
            .finish()
    }
}

impl ChangeFollower {
    /// The change sequence this follower hands out next (or reports as
    /// missed).
    pub fn next_expected(&self) -> u64 {
        self.next_seq
    }

    /// The next change at or after [`Self::next_expected`], waiting for one
    /// to be published (also while the bus is down: bound it with a
    /// timeout). Copies and changes older than the expected one are
    /// skipped. After a reconnection or a broken consumer it re-opens where
    /// it stopped; when re-opening fails it answers
    /// [`BusError::Unavailable`] and stays usable, the next call trying
    /// again. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Change, BusError> {
        loop {
            if self.messages.is_none() {
                if self.failures > 0 {
                    let pause = Duration::from_millis(100 * u64::from(self.failures))
                        .min(REOPEN_BACKOFF_MAX);
                    tokio::time::sleep(pause).await;
                }
                self.failures += 1;
                self.messages = Some(self.open().await?);
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            let next = match self.reconnects.as_mut() {
                Some(reconnects) => tokio::select! {
                    next = messages.next() => next,
                    changed = reconnects.changed() => {
                        if changed.is_ok() {
                            tracing::info!("bus reconnected; re-opening the change follower");
                            self.messages = None;
                        } else {
                            // The connection is gone for good; the
                            // consumer's own errors end the follower.
                            self.reconnects = None;
                        }
                        continue;
                    }
                },
                None => messages.next().await,
            };
            match next {
                Some(Ok(message)) => {
                    self.failures = 0;
                    let stream_seq = match message.info() {
                        Ok(info) => info.stream_sequence,
                        Err(e) => {
                            tracing::warn!(error = %e, "change without JetStream metadata; re-opening");
                            self.messages = None;
                            continue;
                        }
                    };
                    self.resume_at = Some(stream_seq + 1);
                    let Some(seq) = change_seq(message.headers.as_ref()) else {
                        tracing::warn!(
                            stream_seq,
                            "message without a change sequence on the change log; skipped"
                        );
                        continue;
                    };
                    if seq < self.next_seq {
                        continue;
                    }
                    let missed = self.next_seq..seq;
                    self.next_seq = seq + 1;
                    return Ok(Change {
                        seq,
                        payload: message.payload.clone(),
                        stream_seq,
                        missed,
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %self.bus.redact(&e.to_string()), "change follower broke; re-opening");
                    self.messages = None;
                }
                None => self.messages = None,
            }
        }
    }

    /// An ordered consumer (ephemeral, flow-controlled, recreated by the
    /// client on a missed heartbeat) from where this follower stands.
    async fn open(&mut self) -> Result<consumer::pull::Ordered, BusError> {
        if let Some(reconnects) = self.reconnects.as_mut() {
            reconnects.borrow_and_update();
        }
        let bus = &self.bus;
        let js = &bus.inner.js;
        let name = bus.inner.prefix.changes_stream();
        let stream = bus
            .bounded("open change log", js.get_stream(&name))
            .await?
            .map_err(|e| bus.classify("open change log", &e))?;
        let start = match self.resume_at {
            Some(at) => at,
            None => {
                let at = find_start(bus, &stream, self.next_seq).await?;
                self.resume_at = Some(at);
                at
            }
        };
        let consumer = bus
            .bounded(
                "open change log",
                stream.create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: bus.inner.prefix.changes_subject(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ..Default::default()
                }),
            )
            .await?
            .map_err(|e| bus.classify("open change log", &e))?;
        bus.bounded("open change log", consumer.messages())
            .await?
            .map_err(|e| bus.classify("open change log", &e))
    }
}

/// The change sequence a message carries, if it is one of ours.
fn change_seq(headers: Option<&HeaderMap>) -> Option<u64> {
    headers?.get(HEADER_CHANGE_SEQ)?.as_str().parse().ok()
}

/// The first stream position holding a change at or after `from`, by
/// binary search over the stream (changes are published in sequence order
/// by the catalog's single writer; a change published out of order is at
/// worst reported as missed). The position after the last message when
/// none is.
async fn find_start(bus: &Bus, stream: &stream::Stream, from: u64) -> Result<u64, BusError> {
    let op = "find a change";
    let info = bus
        .bounded(op, stream.get_info())
        .await?
        .map_err(|e| bus.classify(op, &e))?;
    let state = info.state;
    let end = state.last_sequence + 1;
    if state.messages == 0 || from == 0 {
        return Ok(if state.messages == 0 {
            end
        } else {
            state.first_sequence
        });
    }
    let subject = bus.inner.prefix.changes_subject();
    let (mut lo, mut hi) = (state.first_sequence, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let got = bus
            .bounded(
                op,
                stream.direct_get_next_for_subject(subject.clone(), Some(mid)),
            )
            .await?;
        match got {
            Ok(message) if message.sequence < hi => {
                let seq = change_seq(Some(&message.headers)).unwrap_or(0);
                if seq >= from {
                    hi = mid;
                } else {
                    lo = message.sequence + 1;
                }
            }
            // Nothing at or after `mid` below `hi`.
            Ok(_) => hi = mid,
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => hi = mid,
            Err(e) => return Err(bus.classify(op, &e)),
        }
    }
    Ok(lo)
}
