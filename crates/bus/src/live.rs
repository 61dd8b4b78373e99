//! Live notices for SSE streams, on core NATS: every node publishes the
//! notices it stores and every node hears all of them, to feed the streams
//! its clients hold open. At most once and unacknowledged: a notice lost on
//! the way costs nothing, since a client resumes from PostgreSQL with
//! `Last-Event-ID`, so a stream (disk writes, acks, clean-up) would buy
//! nothing here.

use crate::{Bus, BusError, HEADER_NOTICE_ID, HEADER_TENANT, check_header_value};
use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

/// A notice announced to every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNotice {
    /// The notice's id in PostgreSQL (the SSE event id).
    pub id: i64,
    pub tenant: String,
    /// Opaque to the bus.
    pub payload: Bytes,
}

impl Bus {
    /// Announces a notice (already durable in PostgreSQL) to every node's
    /// subscriptions. Returns once it is queued on the connection; there is
    /// no acknowledgement, and while the bus is down it may be lost.
    pub async fn publish_notice(&self, notice: &LiveNotice) -> Result<(), BusError> {
        check_header_value("tenant", &notice.tenant)?;
        self.check_size("live notice", notice.payload.len())?;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_NOTICE_ID, notice.id.to_string().as_str());
        headers.insert(HEADER_TENANT, notice.tenant.as_str());
        let op = "publish live notice";
        self.bounded(
            op,
            self.inner.client.publish_with_headers(
                self.inner.prefix.live_subject(),
                headers,
                notice.payload.clone(),
            ),
        )
        .await?
        .map_err(|e| self.classify(op, &e))
    }

    /// Hears every live notice of this deployment published from now on, by
    /// any node. The client buffers a bounded number; past that, notices are
    /// dropped (and logged) rather than slowing the connection.
    pub async fn subscribe_notices(&self) -> Result<NoticeSubscription, BusError> {
        let op = "subscribe to live notices";
        let subscriber = self
            .bounded(
                op,
                self.inner
                    .client
                    .subscribe(self.inner.prefix.live_subject()),
            )
            .await?
            .map_err(|e| self.classify(op, &e))?;
        // A flush only empties the socket; the server knows the
        // subscription once it has answered something sent after it on this
        // connection (it reads a connection in order). A request nobody
        // serves is answered at once ("no responders"): after it, a notice
        // published by any node is heard.
        let probe = format!("{}.live-ready", self.inner.prefix);
        match self
            .bounded(op, self.inner.client.request(probe, Bytes::new()))
            .await?
        {
            Ok(_) => {}
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
            Err(e) => return Err(self.classify(op, &e)),
        }
        Ok(NoticeSubscription { subscriber })
    }
}

/// A node's subscription to live notices.
#[derive(Debug)]
pub struct NoticeSubscription {
    subscriber: Subscriber,
}

impl NoticeSubscription {
    /// The next notice; `None` once the connection is closed for good.
    /// Messages on the subject that are not well-formed notices are
    /// skipped.
    pub async fn next(&mut self) -> Option<LiveNotice> {
        loop {
            let message = self.subscriber.next().await?;
            let headers = message.headers.as_ref();
            let id = headers
                .and_then(|h| h.get(HEADER_NOTICE_ID))
                .and_then(|v| v.as_str().parse::<i64>().ok());
            let tenant = headers
                .and_then(|h| h.get(HEADER_TENANT))
                .map(|v| v.as_str().to_string());
            match (id, tenant) {
                (Some(id), Some(tenant)) => {
                    return Some(LiveNotice {
                        id,
                        tenant,
                        payload: message.payload,
                    });
                }
                _ => tracing::warn!(subject = %message.subject, "not a live notice; skipped"),
            }
        }
    }
}
