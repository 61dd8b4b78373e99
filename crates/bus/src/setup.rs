//! Start of a node on the bus: the bounded connection, what the server says
//! about itself (version, payload limit, whether it syncs writes before
//! acknowledging them), and the idempotent creation and check of the
//! deployment's streams and consumer.

use crate::{Bus, BusConfig, BusError, Inner, classify, error::redact, parse_urls};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions, Event};
use std::sync::Arc;
use std::time::Duration;

/// Room left for headers in every message: the payload cap is the server's
/// `max_payload` less this.
pub(crate) const HEADER_ROOM_BYTES: usize = 4096;

/// Creation attempts when several nodes create the same stream at once.
const CREATE_ATTEMPTS_MAX: usize = 5;

/// Longest wait for the server's own report of its sync setting.
const SYNC_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the server fsyncs a write before acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSetting {
    /// `sync_interval: always`: an acknowledged write is on disk.
    Always,
    /// Background fsync at this interval: a crash of the server's host can
    /// lose writes acknowledged within it.
    Interval(Duration),
    /// The server is older than 2.10, which has no `sync_interval: always`.
    TooOld,
    /// This connection may not read the server's configuration (it needs
    /// the system account's `VARZ`); check the server's configuration.
    Unknown,
}

/// What the server said about itself at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    pub server_name: String,
    /// Largest message the server accepts, headers included.
    pub max_payload: usize,
    pub sync: SyncSetting,
}

impl ServerFacts {
    /// The warning to log at start, if acknowledged writes may be lost.
    pub fn durability_warning(&self) -> Option<String> {
        let v = &self.version;
        match self.sync {
            SyncSetting::Always => None,
            SyncSetting::TooOld => Some(format!(
                "nats-server {v} acknowledges JetStream writes before they are on disk and cannot be told otherwise: \
                 a crash of its host can lose acknowledged announcements and delivery jobs (patchline re-reads them from \
                 PostgreSQL: a delay, never a lost change). Run nats-server 2.10 or later with \
                 `jetstream {{ sync_interval: always }}`"
            )),
            SyncSetting::Interval(d) => Some(format!(
                "nats-server {v} syncs JetStream writes to disk every {} ms, after acknowledging them: a crash of its \
                 host can lose acknowledged announcements and delivery jobs (patchline re-reads them from PostgreSQL: \
                 a delay, never a lost change). Set `jetstream {{ sync_interval: always }}`",
                d.as_millis()
            )),
            SyncSetting::Unknown => Some(format!(
                "cannot read the sync setting of nats-server {v} from this connection: make sure it runs with \
                 `jetstream {{ sync_interval: always }}`, or acknowledged announcements and delivery jobs can be lost \
                 in a crash (patchline re-reads them from PostgreSQL: a delay, never a lost change)"
            )),
        }
    }
}

/// `(major, minor, patch)` of a version such as `2.10.22` or `v2.11.0-beta`.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

pub(crate) async fn connect(config: BusConfig) -> Result<Bus, BusError> {
    let parsed = parse_urls(&config.url)?;
    let secrets: Vec<String> = [&parsed.user, &parsed.password]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if config.payload_max_bytes == 0 {
        return Err(BusError::Config(
            "payload_max_bytes must be positive".into(),
        ));
    }
    if config.lease < Duration::from_millis(100) {
        return Err(BusError::Config("the lease must be at least 100 ms".into()));
    }

    // Counts (re)connections, so followers re-open their consumers at once
    // after the server comes back instead of waiting for missed heartbeats.
    let (reconnects_tx, reconnects) = tokio::sync::watch::channel(0u64);
    let reconnects_tx = Arc::new(reconnects_tx);
    let mut options = ConnectOptions::new()
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .ping_interval(Duration::from_secs(10))
        // Reconnect for ever, quickly at first, at most every 2 s: a node
        // keeps serving from PostgreSQL while the bus is down.
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(100).min(2_000))
        })
        .event_callback({
            let shown = parsed.display.clone();
            let reconnects = reconnects_tx.clone();
            move |event| {
                let shown = shown.clone();
                let reconnects = reconnects.clone();
                async move {
                    match event {
                        Event::Connected => {
                            reconnects.send_modify(|n| *n += 1);
                            tracing::info!(bus = %shown, "bus connected");
                        }
                        Event::Disconnected => {
                            tracing::warn!(bus = %shown, "bus disconnected; reconnecting")
                        }
                        Event::SlowConsumer(sid) => tracing::warn!(
                            bus = %shown, subscription = sid,
                            "bus subscription too slow: messages dropped"
                        ),
                        other => tracing::info!(bus = %shown, event = %other, "bus event"),
                    }
                }
            }
        });
    if let Some(name) = &config.client_name {
        options = options.name(name);
    }
    match (&parsed.user, &parsed.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        (Some(token), None) => options = options.token(token.clone()),
        _ => {}
    }

    let unavailable = |reason: String| BusError::Unavailable {
        op: "connect",
        reason: format!("{}: {}", parsed.display, redact(&reason, &secrets)),
    };
    let client = match tokio::time::timeout(
        config.connect_timeout,
        options.connect(parsed.addrs.clone()),
    )
    .await
    {
        Err(_) => {
            return Err(unavailable(format!(
                "no connection within {} ms",
                config.connect_timeout.as_millis()
            )));
        }
        Ok(Err(e)) => {
            let auth = matches!(
                e.kind(),
                async_nats::ConnectErrorKind::Authentication
                    | async_nats::ConnectErrorKind::AuthorizationViolation
            );
            let reason = redact(&e.to_string(), &secrets);
            if auth {
                return Err(BusError::Config(format!(
                    "the bus at {} refused the credentials: {reason}",
                    parsed.display
                )));
            }
            return Err(unavailable(reason));
        }
        Ok(Ok(client)) => client,
    };

    let info = client.server_info();
    if !info.jetstream {
        return Err(BusError::Config(format!(
            "the NATS server at {} (version {}) runs without JetStream; start it with JetStream enabled",
            parsed.display, info.version
        )));
    }
    let server_max = info.max_payload.saturating_sub(HEADER_ROOM_BYTES);
    let payload_max = config.payload_max_bytes.min(server_max);
    if payload_max < 1024 {
        return Err(BusError::Config(format!(
            "the NATS server at {} accepts messages of {} bytes only",
            parsed.display, info.max_payload
        )));
    }
    if payload_max < config.payload_max_bytes {
        tracing::warn!(
            configured = config.payload_max_bytes,
            server_max_payload = info.max_payload,
            "bus payload cap lowered to what the server accepts: {payload_max} bytes"
        );
    }

    let sync = match parse_version(&info.version) {
        Some(v) if v < (2, 10, 0) => SyncSetting::TooOld,
        _ => probe_sync(&client, &info.server_id).await,
    };
    let server = ServerFacts {
        version: info.version.clone(),
        server_name: info.server_name.clone(),
        max_payload: info.max_payload,
        sync,
    };
    match server.durability_warning() {
        Some(w) => tracing::warn!(bus = %parsed.display, "{w}"),
        None => tracing::info!(
            bus = %parsed.display, version = %server.version,
            "nats-server syncs every JetStream write before acknowledging it"
        ),
    }

    let js = jetstream::ContextBuilder::new()
        .timeout(config.request_timeout)
        .build(client.clone());
    let prefix = config.prefix.clone();
    let setup = Setup {
        client: &client,
        js: &js,
        secrets: &secrets,
        timeout: config.request_timeout,
    };
    setup
        .ensure_stream(changes_config(&config, payload_max))
        .await?;
    let work_stream = setup
        .ensure_stream(work_config(&config, payload_max))
        .await?;
    let work = setup.ensure_consumer(&work_stream, &config).await?;

    Ok(Bus {
        inner: Arc::new(Inner {
            client,
            js,
            prefix,
            config,
            display_url: parsed.display,
            secrets,
            server,
            payload_max,
            work,
            reconnects,
        }),
    })
}

/// Asks the server for its `VARZ` (system account only) and reads its
/// JetStream sync setting.
async fn probe_sync(client: &Client, server_id: &str) -> SyncSetting {
    let subject = format!("$SYS.REQ.SERVER.{server_id}.VARZ");
    let reply =
        tokio::time::timeout(SYNC_PROBE_TIMEOUT, client.request(subject, "{}".into())).await;
    let Ok(Ok(message)) = reply else {
        return SyncSetting::Unknown;
    };
    sync_from_varz(&message.payload)
}

pub(crate) fn sync_from_varz(payload: &[u8]) -> SyncSetting {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return SyncSetting::Unknown;
    };
    let Some(config) = doc.pointer("/data/jetstream/config") else {
        return SyncSetting::Unknown;
    };
    if config.get("sync_always").and_then(|v| v.as_bool()) == Some(true) {
        return SyncSetting::Always;
    }
    // Go's default when unset: two minutes.
    let ns = config
        .get("sync_interval")
        .and_then(|v| v.as_u64())
        .unwrap_or(120_000_000_000);
    SyncSetting::Interval(Duration::from_nanos(ns))
}

fn changes_config(config: &BusConfig, payload_max: usize) -> stream::Config {
    stream::Config {
        name: config.prefix.changes_stream(),
        description: Some("patchline committed changes (re-publishable from PostgreSQL)".into()),
        subjects: vec![config.prefix.changes_subject()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_age: config.changes_max_age,
        max_bytes: config.changes_max_bytes,
        max_messages: -1,
        max_message_size: message_size_max(payload_max),
        duplicate_window: config.duplicate_window.min(config.changes_max_age),
        num_replicas: config.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

fn work_config(config: &BusConfig, payload_max: usize) -> stream::Config {
    stream::Config {
        name: config.prefix.work_stream(),
        description: Some("patchline delivery work".into()),
        subjects: vec![config.prefix.work_subject()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        // Refuse new work when full; never drop queued work.
        discard: stream::DiscardPolicy::New,
        max_age: Duration::ZERO,
        max_bytes: config.work_max_bytes,
        max_messages: config.work_max_jobs,
        max_message_size: message_size_max(payload_max),
        duplicate_window: config.duplicate_window,
        num_replicas: config.replicas,
        ..Default::default()
    }
}

fn message_size_max(payload_max: usize) -> i32 {
    i32::try_from(payload_max + HEADER_ROOM_BYTES).unwrap_or(i32::MAX)
}

fn consumer_config(config: &BusConfig) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(config.prefix.work_consumer()),
        name: Some(config.prefix.work_consumer()),
        description: Some("patchline delivery workers (every node)".into()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.lease,
        // The caller decides when to give up (Job::term) from
        // Job::delivered; the server never drops a job on its own.
        max_deliver: -1,
        max_ack_pending: config.max_ack_pending,
        num_replicas: config.replicas,
        ..Default::default()
    }
}

struct Setup<'a> {
    client: &'a Client,
    js: &'a jetstream::Context,
    secrets: &'a [String],
    timeout: Duration,
}

impl Setup<'_> {
    fn classify(&self, op: &'static str, e: &dyn std::error::Error) -> BusError {
        classify(self.client, self.secrets, op, e)
    }

    /// Creates the stream, or checks an existing one and brings its limits
    /// to `want`. Several nodes may do this at once.
    async fn ensure_stream(&self, want: stream::Config) -> Result<stream::Stream, BusError> {
        for _ in 0..CREATE_ATTEMPTS_MAX {
            let got =
                crate::bounded(self.timeout, "read stream", self.js.get_stream(&want.name)).await?;
            match got {
                Ok(mut existing) => {
                    let info = crate::bounded(self.timeout, "read stream", existing.info())
                        .await?
                        .map_err(|e| self.classify("read stream", &e))?
                        .clone();
                    check_stream(&info.config, &want)?;
                    if !same_limits(&info.config, &want) {
                        tracing::info!(stream = %want.name, "updating the stream's limits");
                        crate::bounded(self.timeout, "update stream", self.js.update_stream(&want))
                            .await?
                            .map_err(|e| self.stream_error("update stream", &want.name, &e))?;
                    }
                    return Ok(existing);
                }
                Err(e) if is_code(e.kind(), jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                    let created =
                        crate::bounded(self.timeout, "create stream", self.js.create_stream(&want))
                            .await?;
                    match created {
                        Ok(stream) => return Ok(stream),
                        // Another node created it between our read and our
                        // create, with another configuration: read it again.
                        Err(e)
                            if create_code(&e) == Some(jetstream::ErrorCode::STREAM_NAME_EXIST) =>
                        {
                            continue;
                        }
                        Err(e) => return Err(self.stream_error("create stream", &want.name, &e)),
                    }
                }
                Err(e) => return Err(self.classify("read stream", &e)),
            }
        }
        Err(BusError::Server {
            op: "create stream",
            reason: format!(
                "{} kept changing while it was created ({CREATE_ATTEMPTS_MAX} attempts)",
                want.name
            ),
        })
    }

    fn stream_error(
        &self,
        op: &'static str,
        name: &str,
        e: &jetstream::context::CreateStreamError,
    ) -> BusError {
        if let jetstream::context::CreateStreamErrorKind::JetStream(j) = e.kind()
            && j.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP
        {
            return BusError::Incompatible {
                name: name.to_string(),
                detail: format!(
                    "another stream on this server holds its subjects ({})",
                    redact(&j.to_string(), self.secrets)
                ),
            };
        }
        self.classify(op, e)
    }

    /// Creates the shared durable consumer, or updates its lease and limits;
    /// identical concurrent creations succeed.
    async fn ensure_consumer(
        &self,
        stream: &stream::Stream,
        config: &BusConfig,
    ) -> Result<consumer::PullConsumer, BusError> {
        let want = consumer_config(config);
        let name = config.prefix.work_consumer();
        let created = crate::bounded(
            self.timeout,
            "create consumer",
            stream.create_consumer(want.clone()),
        )
        .await?;
        let mut consumer = match created {
            Ok(c) => c,
            Err(e) => {
                if let stream::ConsumerErrorKind::JetStream(j) = e.kind() {
                    return Err(BusError::Incompatible {
                        name,
                        detail: redact(&j.to_string(), self.secrets),
                    });
                }
                return Err(self.classify("create consumer", &e));
            }
        };
        let info = crate::bounded(self.timeout, "read consumer", consumer.info())
            .await?
            .map_err(|e| self.classify("read consumer", &e))?;
        let have = &info.config;
        if have.ack_policy != consumer::AckPolicy::Explicit
            || have.deliver_subject.is_some()
            || !have.filter_subject.is_empty()
        {
            return Err(BusError::Incompatible {
                name,
                detail: "not an explicit-ack pull consumer of every job".into(),
            });
        }
        Ok(consumer)
    }
}

fn is_code(kind: jetstream::context::GetStreamErrorKind, code: jetstream::ErrorCode) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == code)
}

fn create_code(e: &jetstream::context::CreateStreamError) -> Option<jetstream::ErrorCode> {
    match e.kind() {
        jetstream::context::CreateStreamErrorKind::JetStream(j) => Some(j.error_code()),
        _ => None,
    }
}

/// The properties an existing stream must share with ours: the others
/// cannot be changed in place, and using it otherwise would lose work or
/// mix deployments.
fn check_stream(have: &stream::Config, want: &stream::Config) -> Result<(), BusError> {
    let mismatch = |what: &str, found: String, needed: String| BusError::Incompatible {
        name: want.name.clone(),
        detail: format!("its {what} is {found}, this node needs {needed}"),
    };
    let mut have_subjects = have.subjects.clone();
    have_subjects.sort();
    let mut want_subjects = want.subjects.clone();
    want_subjects.sort();
    if have_subjects != want_subjects {
        return Err(mismatch(
            "subjects",
            format!("{have_subjects:?}"),
            format!("{want_subjects:?}"),
        ));
    }
    if have.retention != want.retention {
        return Err(mismatch(
            "retention",
            format!("{:?}", have.retention),
            format!("{:?}", want.retention),
        ));
    }
    if have.storage != want.storage {
        return Err(mismatch(
            "storage",
            format!("{:?}", have.storage),
            format!("{:?}", want.storage),
        ));
    }
    if have.discard != want.discard {
        return Err(mismatch(
            "discard policy",
            format!("{:?}", have.discard),
            format!("{:?}", want.discard),
        ));
    }
    Ok(())
}

fn same_limits(have: &stream::Config, want: &stream::Config) -> bool {
    have.max_age == want.max_age
        && have.max_bytes == want.max_bytes
        && have.max_messages == want.max_messages
        && have.max_message_size == want.max_message_size
        && have.duplicate_window == want.duplicate_window
        && have.num_replicas == want.num_replicas
        && have.allow_direct == want.allow_direct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("v2.11.0-beta.2"), Some((2, 11, 0)));
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
        assert_eq!(parse_version("dev"), None);
        assert!(parse_version("2.9.10").unwrap() < (2, 10, 0));
    }

    #[test]
    fn sync_setting_is_read_from_varz() {
        let always = br#"{"server":{},"data":{"jetstream":{"config":{"sync_always":true,"sync_interval":120000000000}}}}"#;
        assert_eq!(sync_from_varz(always), SyncSetting::Always);
        let every_2s = br#"{"data":{"jetstream":{"config":{"sync_interval":2000000000}}}}"#;
        assert_eq!(
            sync_from_varz(every_2s),
            SyncSetting::Interval(Duration::from_secs(2))
        );
        assert_eq!(
            sync_from_varz(br#"{"data":{"jetstream":{"config":{}}}}"#),
            SyncSetting::Interval(Duration::from_secs(120))
        );
        assert_eq!(sync_from_varz(b"{\"error\":{}}"), SyncSetting::Unknown);
        assert_eq!(sync_from_varz(b"not json"), SyncSetting::Unknown);
    }

    #[test]
    fn every_unsafe_setting_warns() {
        let facts = |sync| ServerFacts {
            version: "2.9.10".into(),
            server_name: "n".into(),
            max_payload: 1 << 20,
            sync,
        };
        assert!(facts(SyncSetting::Always).durability_warning().is_none());
        for s in [
            SyncSetting::TooOld,
            SyncSetting::Unknown,
            SyncSetting::Interval(Duration::from_secs(120)),
        ] {
            let w = facts(s).durability_warning().expect("a warning");
            assert!(w.contains("sync_interval: always"), "{w}");
        }
    }
}
