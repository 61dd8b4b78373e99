//! What moves between the nodes of a scale-out deployment, on NATS
//! JetStream. PostgreSQL holds the state and is the only source of truth;
//! the bus carries three things between nodes:
//!
//! 1. **Committed changes** ([`Bus::publish_change`], [`Bus::follow_changes`]):
//!    the catalog change log, stream `<prefix>_CHANGES` (file storage,
//!    limits retention, bounded by age and bytes). Each message carries the
//!    change's sequence in a header and as `Nats-Msg-Id`, so a re-publish
//!    after a crash is deduplicated, and a follower reports the changes it
//!    did not see ([`Change::missed`]) so the node reads those from
//!    PostgreSQL. Everything here can be re-published from PostgreSQL.
//! 2. **Delivery work** ([`Bus::publish_job`], [`Bus::claim_jobs`]): stream
//!    `<prefix>_WORK` with work-queue retention and one durable pull
//!    consumer `<prefix>_WORKERS` shared by every node. A job is leased to
//!    one node for `ack_wait` (the lease); one not acked in time goes to some
//!    node again. [`Job::ack`], [`Job::nak`] (with the retry delay),
//!    [`Job::term`] (give up), [`Job::in_progress`] (extend the lease),
//!    [`Job::delivered`] (how many times it was handed out).
//! 3. **Live notices** ([`Bus::publish_notice`], [`Bus::subscribe_notices`]):
//!    on core NATS, subject `<prefix>.live`, at most once. Losing one is
//!    acceptable (an SSE client resumes from PostgreSQL with
//!    `Last-Event-ID`), so they are neither stored nor acknowledged: no disk
//!    write and no ack round trip per notice, and nothing to clean up.
//!
//! Every stream, consumer and subject name derives from the deployment's
//! [`BusPrefix`] (`--bus-prefix`), so deployments with different prefixes
//! share one NATS server without seeing each other.
//!
//! # Durability: run nats-server with `sync_interval: always`
//!
//! By default JetStream acknowledges a publish once the message is in the
//! server's memory and writes it to disk in the background (fsync every two
//! minutes); a server killed or a machine losing power in between loses
//! writes it had acknowledged (the 2025 Jepsen analysis of NATS 2.12 lost
//! acknowledged writes that way). A job the API acknowledged must survive,
//! so operators must run nats-server 2.10 or later with
//!
//! ```text
//! jetstream {
//!     store_dir: "/var/lib/nats"
//!     sync_interval: always
//! }
//! ```
//!
//! which flushes and fsyncs every write before the acknowledgement. Servers
//! before 2.10 do not know the setting. At connect the bus reads the server's
//! version and, where this connection may see it, the server's sync setting
//! ([`ServerFacts`]), and logs a warning when acknowledged writes are not
//! synced or when it cannot tell.
//!
//! The sync setting is in the server's `VARZ`, which only the system
//! account may ask for. To let the bus check it, export that one request
//! from the system account to the account the nodes use:
//!
//! ```text
//! accounts {
//!     SYS: {
//!         users: [{user: sys, password: "..."}]
//!         exports: [{service: "$SYS.REQ.SERVER.*.VARZ"}]
//!     }
//!     APP: {
//!         jetstream: enabled
//!         users: [{user: patchline, password: "..."}]
//!         imports: [{service: {account: SYS, subject: "$SYS.REQ.SERVER.*.VARZ"}}]
//!     }
//! }
//! system_account: SYS
//! ```
//!
//! (then `--bus nats://patchline:PASSWORD@HOST:4222`). Without it the bus
//! warns that it cannot tell ([`SyncSetting::Unknown`]).
//!
//! # What "unavailable" means
//!
//! A publish that fails with [`BusError::Unavailable`] (timeout, connection
//! down) is *not known* to be stored: the client may still deliver it after
//! reconnecting. Publish again with the same change sequence or job id;
//! deduplication makes that safe within the duplicate window, and the change
//! follower skips copies after it.
//!
//! # Bounds
//!
//! Payloads are capped ([`BusConfig::payload_max_bytes`], lowered to what the
//! server accepts); connecting is bounded by [`BusConfig::connect_timeout`];
//! every publish, acknowledgement and JetStream request by
//! [`BusConfig::request_timeout`]; the change log by age and bytes; the work
//! queue by jobs and bytes (it refuses new jobs when full rather than drop
//! queued ones: [`BusError::Full`]).
//!
//! Stream and consumer creation at start is idempotent: several nodes may
//! start at once. An existing stream must have the same subjects, retention,
//! storage and discard policy, else [`BusError::Incompatible`]; its limits
//! are brought to this node's configuration.

mod changes;
mod error;
mod live;
mod prefix;
mod setup;
mod work;

pub use changes::{Change, ChangeFollower};
pub use error::{BusError, BusErrorKind};
pub use live::{LiveNotice, NoticeSubscription};
pub use prefix::{BusPrefix, PREFIX_MAX_CHARS};
pub use setup::{ServerFacts, SyncSetting};
pub use work::{CLAIM_MAX, CLAIM_WAIT_MAX, Job};

use async_nats::jetstream;
use async_nats::{Client, ServerAddr};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Header holding a change's sequence (also its `Nats-Msg-Id`).
pub const HEADER_CHANGE_SEQ: &str = "Patchline-Change-Seq";
/// Header holding a job's id (also its `Nats-Msg-Id`).
pub const HEADER_JOB_ID: &str = "Patchline-Job-Id";
/// Header holding a live notice's id.
pub const HEADER_NOTICE_ID: &str = "Patchline-Notice-Id";
/// Header holding a live notice's tenant.
pub const HEADER_TENANT: &str = "Patchline-Tenant";

/// Longest job id or tenant carried in a header.
pub const ID_MAX_BYTES: usize = 256;

/// How to reach the bus and what bounds to keep.
#[derive(Clone)]
pub struct BusConfig {
    /// `nats://[user:password@]host:port`, or several separated by commas
    /// (one cluster). A user without password is sent as a token.
    pub url: String,
    pub prefix: BusPrefix,
    /// Longest wait for the first connection.
    pub connect_timeout: Duration,
    /// Longest wait for any publish acknowledgement, job acknowledgement or
    /// JetStream request.
    pub request_timeout: Duration,
    /// How long a claimed job stays leased to one node (the consumer's
    /// `ack_wait`); [`Job::in_progress`] extends it.
    pub lease: Duration,
    /// Largest payload of a change, job or live notice. Lowered at connect
    /// to what the server accepts (its `max_payload`, less room for
    /// headers).
    pub payload_max_bytes: usize,
    /// Changes older than this leave the change log (nodes behind by more
    /// read PostgreSQL).
    pub changes_max_age: Duration,
    /// Bytes the change log keeps at most (the oldest go first).
    pub changes_max_bytes: i64,
    /// Jobs the work queue holds at most; past that, publishing a job fails
    /// with [`BusError::Full`].
    pub work_max_jobs: i64,
    /// Bytes the work queue holds at most (same rule).
    pub work_max_bytes: i64,
    /// How long a change sequence or job id is remembered for
    /// deduplication.
    pub duplicate_window: Duration,
    /// Jobs leased and not yet acknowledged, over all nodes, at most.
    pub max_ack_pending: i64,
    /// Replicas of each stream (1 for a single server; 3 for a cluster).
    pub replicas: usize,
    /// Name this connection gives the server (seen in its monitoring).
    pub client_name: Option<String>,
}

impl BusConfig {
    /// The defaults, for a URL and a prefix.
    pub fn new(url: impl Into<String>, prefix: BusPrefix) -> BusConfig {
        BusConfig {
            url: url.into(),
            prefix,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            payload_max_bytes: 256 * 1024,
            changes_max_age: Duration::from_secs(7 * 24 * 3600),
            changes_max_bytes: 1 << 30,
            work_max_jobs: 1_000_000,
            work_max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(10 * 60),
            max_ack_pending: 10_000,
            replicas: 1,
            client_name: None,
        }
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = parse_urls(&self.url)
            .map(|p| p.display)
            .unwrap_or_else(|_| "(invalid)".to_string());
        f.debug_struct("BusConfig")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("lease", &self.lease)
            .field("payload_max_bytes", &self.payload_max_bytes)
            .field("changes_max_age", &self.changes_max_age)
            .field("changes_max_bytes", &self.changes_max_bytes)
            .field("work_max_jobs", &self.work_max_jobs)
            .field("work_max_bytes", &self.work_max_bytes)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// A connection to one deployment's streams. Cheap to clone; clones share
/// the connection.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    js: jetstream::Context,
    prefix: BusPrefix,
    config: BusConfig,
    /// The URL(s) without credentials, for messages.
    display_url: String,
    /// Credentials of the URL, removed from every message.
    secrets: Vec<String>,
    server: ServerFacts,
    payload_max: usize,
    work: jetstream::consumer::PullConsumer,
    /// Bumped at every (re)connection.
    reconnects: tokio::sync::watch::Receiver<u64>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("url", &self.inner.display_url)
            .field("prefix", &self.inner.prefix)
            .field("server", &self.inner.server)
            .finish()
    }
}

/// Acknowledgement of a publish by JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Position in the stream.
    pub stream_seq: u64,
    /// The message id was seen within the duplicate window: nothing new
    /// was stored, `stream_seq` is the first copy's.
    pub duplicate: bool,
}

impl Bus {
    /// Connects, checks the server, creates (or checks) the deployment's
    /// streams and consumer, and warns when the server may lose
    /// acknowledged writes.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        setup::connect(config).await
    }

    pub fn prefix(&self) -> &BusPrefix {
        &self.inner.prefix
    }

    /// What the server said about itself at connect.
    pub fn server(&self) -> &ServerFacts {
        &self.inner.server
    }

    /// The payload cap in force (the configured one, lowered to what the
    /// server accepts).
    pub fn payload_max_bytes(&self) -> usize {
        self.inner.payload_max
    }

    /// The lease of a claimed job (the consumer's `ack_wait`).
    pub fn lease(&self) -> Duration {
        self.inner.config.lease
    }

    /// Whether the connection to the server is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Shuts the connection down gracefully, for every clone of this bus:
    /// what was published is flushed, subscriptions end (their `next`
    /// answers `None`), and later calls fail.
    pub async fn close(&self) -> Result<(), BusError> {
        let op = "close";
        self.bounded(op, self.inner.client.drain())
            .await?
            .map_err(|e| self.classify(op, &e))
    }

    /// Deletes this deployment's streams (and so its consumer): for tests
    /// and for decommissioning a prefix. Other prefixes are untouched.
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        for name in [
            self.inner.prefix.changes_stream(),
            self.inner.prefix.work_stream(),
        ] {
            let js = &self.inner.js;
            match self
                .bounded("delete stream", js.delete_stream(&name))
                .await?
            {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::context::DeleteStreamErrorKind::JetStream(ref j)
                            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) => {}
                Err(e) => return Err(self.classify("delete stream", &e)),
            }
        }
        Ok(())
    }

    /// Runs `fut` within the request timeout; past it, the bus is
    /// unavailable.
    pub(crate) async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, BusError> {
        bounded(self.inner.config.request_timeout, op, fut).await
    }

    /// Maps a client error to a [`BusError`]: unavailable when the
    /// connection is down or the error is a timeout or a missing responder,
    /// else a refusal; credentials never appear.
    pub(crate) fn classify(&self, op: &'static str, err: &dyn std::error::Error) -> BusError {
        classify(&self.inner.client, &self.inner.secrets, op, err)
    }

    pub(crate) fn redact(&self, message: &str) -> String {
        error::redact(message, &self.inner.secrets)
    }

    pub(crate) fn check_size(&self, what: &'static str, size: usize) -> Result<(), BusError> {
        if size > self.inner.payload_max {
            return Err(BusError::TooLarge {
                what,
                size,
                max: self.inner.payload_max,
            });
        }
        Ok(())
    }
}

pub(crate) async fn bounded<T>(
    timeout: Duration,
    op: &'static str,
    fut: impl Future<Output = T>,
) -> Result<T, BusError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| BusError::Unavailable {
            op,
            reason: format!("no answer within {} ms", timeout.as_millis()),
        })
}

pub(crate) fn classify(
    client: &Client,
    secrets: &[String],
    op: &'static str,
    err: &dyn std::error::Error,
) -> BusError {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let reason = error::redact(&chain, secrets);
    let lower = reason.to_ascii_lowercase();
    let down = client.connection_state() != async_nats::connection::State::Connected;
    if down
        || lower.contains("timed out")
        || lower.contains("no responders")
        || lower.contains("jetstream unavailable")
        || lower.contains("broken pipe")
        || lower.contains("does not exist")
        || lower.contains("no stream found")
    {
        BusError::Unavailable { op, reason }
    } else {
        BusError::Server { op, reason }
    }
}

/// Checks an id or tenant that travels in a header.
pub(crate) fn check_header_value(what: &'static str, value: &str) -> Result<(), BusError> {
    let invalid = |reason: &str| BusError::Invalid {
        what,
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Err(invalid("it is empty"));
    }
    if value.len() > ID_MAX_BYTES {
        return Err(invalid(&format!(
            "it is {} bytes, over {ID_MAX_BYTES}",
            value.len()
        )));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "only printable ASCII without spaces can travel in a header",
        ));
    }
    Ok(())
}

/// Checks a `--bus` value without connecting; answers how it is shown
/// (`nats://host:port`, never a user or password).
pub fn check_url(url: &str) -> Result<String, BusError> {
    parse_urls(url).map(|p| p.display)
}

/// The URLs of a `--bus` value, parsed.
pub(crate) struct ParsedUrls {
    pub addrs: Vec<ServerAddr>,
    pub display: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub(crate) fn parse_urls(url: &str) -> Result<ParsedUrls, BusError> {
    let mut addrs = Vec::new();
    let mut shown = Vec::new();
    let mut creds: Option<(Option<String>, Option<String>)> = None;
    for (i, part) in url.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            return Err(BusError::Config(format!(
                "bus URL number {} is empty",
                i + 1
            )));
        }
        let scheme = if part.contains("://") {
            part.split("://").next().unwrap_or("nats")
        } else {
            "nats"
        };
        if !matches!(scheme, "nats" | "tls") {
            return Err(BusError::Config(format!(
                "bus URL number {} has scheme {scheme:?}: use nats:// or tls://",
                i + 1
            )));
        }
        // Nothing is silently dropped: the client would ignore a path or
        // a query, and read a second `@` as part of the host.
        let rest = part.split_once("://").map_or(part, |x| x.1);
        let (authority, tail) = rest
            .find(['/', '?', '#'])
            .map_or((rest, ""), |at| rest.split_at(at));
        if !matches!(tail, "" | "/") {
            return Err(BusError::Config(format!(
                "bus URL number {} has a path or query: give nats://[USER[:PASSWORD]@]HOST:PORT only",
                i + 1
            )));
        }
        if authority.matches('@').count() > 1 {
            return Err(BusError::Config(format!(
                "bus URL number {} has two '@' before its host: write an '@' of the user or password as %40",
                i + 1
            )));
        }
        let addr: ServerAddr = part.parse().map_err(|_| {
            BusError::Config(format!(
                "bus URL number {} is not a valid nats:// URL",
                i + 1
            ))
        })?;
        shown.push(format!("{scheme}://{}:{}", addr.host(), addr.port()));
        let these = (
            addr.username().map(str::to_string),
            addr.password().map(str::to_string),
        );
        match &creds {
            None => creds = Some(these),
            Some(c) if *c == these => {}
            Some(_) => {
                return Err(BusError::Config(
                    "the bus URLs carry different credentials; give the same to each".into(),
                ));
            }
        }
        addrs.push(addr);
    }
    let (user, password) = creds.unwrap_or((None, None));
    Ok(ParsedUrls {
        addrs,
        display: shown.join(","),
        user: user.map(|u| percent_decode(&u)),
        password: password.map(|p| percent_decode(&p)),
    })
}

/// Decodes `%XX` escapes of URL user information.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let p = parse_urls("nats://alice:s%40cret@127.0.0.1:4222, nats://alice:s%40cret@127.0.0.2")
            .unwrap();
        assert_eq!(p.display, "nats://127.0.0.1:4222,nats://127.0.0.2:4222");
        assert_eq!(p.user.as_deref(), Some("alice"));
        assert_eq!(p.password.as_deref(), Some("s@cret"));
        let config = BusConfig::new(
            "nats://alice:s%40cret@127.0.0.1:4222",
            BusPrefix::new("p").unwrap(),
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("alice") && !shown.contains("cret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        for (url, why) in [
            ("", "empty"),
            ("nats://a:1,", "empty"),
            ("http://127.0.0.1:4222", "scheme"),
            ("nats://a:b@h:1,nats://c:d@h:2", "different credentials"),
            // Found from outside: accepted, and the parts dropped.
            ("nats://u:p@w@127.0.0.1:4222", "two '@'"),
            ("nats://127.0.0.1:4222/path?x=1", "path or query"),
            ("nats://127.0.0.1:4222?x=1", "path or query"),
        ] {
            let err = parse_urls(url).err().expect(url).to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("p@w"), "{err}");
        }
        assert!(parse_urls("nats://127.0.0.1:4222/").is_ok());
    }

    #[test]
    fn header_values_are_checked() {
        assert!(check_header_value("job id", "delivery-42").is_ok());
        for bad in ["", "a b", "a\r\nb", &"x".repeat(ID_MAX_BYTES + 1)] {
            assert!(check_header_value("job id", bad).is_err(), "{bad:?}");
        }
    }
}
