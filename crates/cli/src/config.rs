//! The configuration of `patchline serve`: one optional TOML file
//! (`--config FILE` or `PATCHLINE_CONFIG`), the `PATCHLINE_*` environment
//! and the flags, merged with the precedence flags > environment > file >
//! defaults. Everything given is validated, whichever source wins, and
//! every problem is reported at once, each naming its source (the flag, the
//! variable, or the file and its key). Numbers out of range are refused,
//! never clamped. Secrets are never read inline from the file (only from
//! files it names, mode 0600, or from the environment) and never printed:
//! [`Settings::render`] redacts them.
//!
//! `deploy/patchline.toml` shows every key; a test below parses it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use patchline_server::Config;
use patchline_store::SecretKeys;
use patchline_webhook::{Policy, Schedule};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The data directory when none is named.
pub const DEFAULT_DATA_DIR: &str = "patchline-data";
/// The listen address when none is named.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

const SECOND_MS: i64 = 1000;
const DAY_MS: i64 = 24 * 3600 * SECOND_MS;

/// `reminder_interval`: 1 s to 365 days.
const REMINDER_MS: (i64, i64) = (SECOND_MS, 365 * DAY_MS);
/// `escalate_after`: reminders before escalating.
const ESCALATE_AFTER: (i64, i64) = (1, 1000);
/// `secret_overlap`: 0 (a rotated-out secret stops at once) to 365 days.
const OVERLAP_MS: (i64, i64) = (0, 365 * DAY_MS);
/// `webhook.timeout`: 100 ms to 5 minutes.
const TIMEOUT_MS: (i64, i64) = (100, 300 * SECOND_MS);
/// `conns_max`.
const CONNS_MAX: (i64, i64) = (1, 1_000_000);
/// `streams_max`.
const STREAMS_MAX: (i64, i64) = (1, 1_000_000);
/// `streams_per_tenant`.
const STREAMS_PER_TENANT: (i64, i64) = (1, 1_000_000);

// ----- where a value came from -----

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The configuration file and the key (`section.key`).
    File(PathBuf, &'static str),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path, key) => write!(f, "{}: {key}", path.display()),
            Source::Env(name) => f.write_str(name),
            Source::Flag(name) => f.write_str(name),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// A secret: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[log] format` / `PATCHLINE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON lines when stderr is not a terminal, text on a terminal.
    Auto,
    Json,
    Text,
}

impl LogFormat {
    fn parse(s: &str) -> Result<LogFormat, String> {
        match s.trim() {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!(
                "{other:?} is not a log format: use json, text or auto"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

// ----- the flags -----

/// What `serve` was given on its command line.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub no_workers: bool,
    pub store: Option<String>,
    pub bus: Option<String>,
    pub bus_prefix: Option<String>,
}

// ----- the file -----

/// The configuration file. Every section and key is optional; unknown ones
/// are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    delivery: DeliverySection,
    #[serde(default)]
    webhook: WebhookSection,
    #[serde(default)]
    secrets: SecretsSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    backend: BackendSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    workers: Option<bool>,
    scan_roots: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    conns_max: Option<i64>,
    streams_max: Option<i64>,
    streams_per_tenant: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverySection {
    retry_schedule: Option<String>,
    reminder_interval: Option<String>,
    escalate_after: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    allow: Option<Vec<String>>,
    timeout: Option<String>,
    secret_overlap: Option<String>,
    event_source: Option<String>,
    operator_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    admin_token_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// Refused with a message: secrets are not read inline.
    admin_token: Option<IgnoredAny>,
    /// Refused with a message: secrets are not read inline.
    key: Option<IgnoredAny>,
    /// Refused with a message: secrets are not read inline.
    key_previous: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
    format: Option<String>,
}

/// Where the state lives and how the nodes of a deployment meet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    store: Option<String>,
    bus: Option<String>,
    bus_prefix: Option<String>,
}

/// Parses a configuration file's text; the error names the key (as
/// `section.key`), the line and the column.
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let at = e.span().map(|span| locate(text, span.start));
        let message = e.message().trim().to_string();
        match at {
            Some((Some(key), line, col)) => format!("{key}: {message} (line {line}, column {col})"),
            Some((None, line, col)) => format!("{message} (line {line}, column {col})"),
            None => message,
        }
    })
}

/// The `section.key` written on the line holding byte `at` (when that line
/// is `key = …`), with the line and column (1-based).
fn locate(text: &str, at: usize) -> (Option<String>, usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    let key = match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k),
        (_, None) => None,
    };
    (key, line_no, col)
}

// ----- the effective configuration -----

/// The effective configuration of `serve`, every value with its source.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    pub listen: Setting<SocketAddr>,
    pub data_dir: Setting<PathBuf>,
    /// A PostgreSQL URL (`--store`); none: SQLite in the data directory.
    pub store: Setting<Option<Redacted>>,
    /// A NATS URL (`--bus`): several nodes share the `--store` database.
    pub bus: Setting<Option<Redacted>>,
    /// The deployment's name on the bus.
    pub bus_prefix: Setting<String>,
    pub workers: Setting<bool>,
    pub scan_roots: Setting<Vec<PathBuf>>,
    pub conns_max: Setting<Option<usize>>,
    pub streams_max: Setting<usize>,
    pub streams_per_tenant: Setting<usize>,
    pub retry: Setting<Schedule>,
    pub reminder_interval_ms: Setting<i64>,
    pub escalate_after: Setting<i64>,
    pub webhook_allow: Setting<Policy>,
    pub webhook_timeout_ms: Setting<u64>,
    pub secret_overlap_ms: Setting<i64>,
    pub event_source: Setting<Option<String>>,
    pub operator_webhook: Setting<Option<String>>,
    pub admin_token: Setting<Option<Redacted>>,
    pub secret_keys: Setting<SecretKeys>,
    pub log_level: Setting<String>,
    pub log_format: Setting<LogFormat>,
    /// Things worth an operator's attention that do not stop the start
    /// (no admin token, a secret file others can read).
    pub warnings: Vec<String>,
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for m in many {
                    write!(f, "\n  - {m}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads the environment through `env` (blank values count as unset), the
/// configuration file named by the flags or `PATCHLINE_CONFIG`, and merges
/// them with the flags.
pub fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut r = Resolver {
        file_path: PathBuf::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let path = flags
        .config
        .clone()
        .map(|p| (p, "--config"))
        .or_else(|| env("PATCHLINE_CONFIG").map(|p| (PathBuf::from(p), "PATCHLINE_CONFIG")));
    let file = match &path {
        None => FileConfig::default(),
        Some((path, named_by)) => {
            r.file_path = path.clone();
            match read_bounded(path, CONFIG_FILE_MAX) {
                Err(e) => {
                    return Err(ConfigError(vec![format!(
                        "{named_by}: cannot read the configuration file {}: {e}",
                        path.display()
                    )]));
                }
                Ok(text) => parse_file(&text)
                    .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?,
            }
        }
    };
    let s = r.settings(flags, &env, file, path.map(|p| p.0));
    if r.errors.is_empty() {
        let mut s = s;
        s.warnings = r.warnings;
        Ok(s)
    } else {
        Err(ConfigError(r.errors))
    }
}

struct Resolver {
    file_path: PathBuf,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// One candidate value of a setting.
type Candidate<T> = Option<(Source, Result<T, String>)>;

impl Resolver {
    fn file(&self, key: &'static str) -> Source {
        Source::File(self.file_path.clone(), key)
    }

    /// The first candidate given (flag, environment, file), else the
    /// default. Every candidate given is validated: a bad one is an error
    /// even when another wins.
    fn pick<T>(&mut self, default: T, candidates: Vec<Candidate<T>>) -> Setting<T> {
        let mut chosen: Option<Setting<T>> = None;
        for (source, value) in candidates.into_iter().flatten() {
            match value {
                Ok(value) => {
                    if chosen.is_none() {
                        chosen = Some(Setting { value, source });
                    }
                }
                Err(message) => self.errors.push(format!("{source}: {message}")),
            }
        }
        chosen.unwrap_or(Setting {
            value: default,
            source: Source::Default,
        })
    }

    fn env_value<T>(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Candidate<T> {
        env(name).map(|v| (Source::Env(name), parse(&v)))
    }

    fn file_value<V, T>(
        &self,
        key: &'static str,
        value: Option<V>,
        parse: impl FnOnce(V) -> Result<T, String>,
    ) -> Candidate<T> {
        value.map(|v| (self.file(key), parse(v)))
    }

    fn settings(
        &mut self,
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
        file: FileConfig,
        file_path: Option<PathBuf>,
    ) -> Settings {
        let d = Config::new(PathBuf::new());
        let FileConfig {
            server,
            limits,
            delivery,
            webhook,
            secrets,
            log,
            backend,
        } = file;

        // [server]
        let c = vec![
            flags.listen.map(|a| (Source::Flag("--listen"), Ok(a))),
            self.env_value(env, "PATCHLINE_LISTEN", parse_addr),
            self.file_value("server.listen", server.listen, |v| parse_addr(&v)),
        ];
        let listen = self.pick(
            DEFAULT_LISTEN.parse().expect("the default address parses"),
            c,
        );
        let c = vec![
            flags
                .data_dir
                .clone()
                .map(|p| (Source::Flag("--data-dir"), non_empty_path(p))),
            self.env_value(env, "PATCHLINE_DATA_DIR", |v| {
                non_empty_path(PathBuf::from(v))
            }),
            self.file_value("server.data_dir", server.data_dir, non_empty_path),
        ];
        let data_dir = self.pick(PathBuf::from(DEFAULT_DATA_DIR), c);
        let c = vec![
            flags
                .no_workers
                .then_some((Source::Flag("--no-workers"), Ok(false))),
            self.file_value("server.workers", server.workers, Ok),
        ];
        let workers = self.pick(true, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_SCAN_ROOTS", |v| {
                Ok(std::env::split_paths(v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect())
            }),
            self.file_value("server.scan_roots", server.scan_roots, |roots| {
                if roots.iter().any(|p| p.as_os_str().is_empty()) {
                    Err("an empty path is not a folder".to_string())
                } else {
                    Ok(roots)
                }
            }),
        ];
        let scan_roots = self.pick(Vec::new(), c);

        // [limits]
        let c = vec![
            self.env_value(env, "PATCHLINE_CONNS_MAX", |v| {
                env_int(v, CONNS_MAX, "").map(|n| Some(n as usize))
            }),
            self.file_value("limits.conns_max", limits.conns_max, |n| {
                in_range(n, CONNS_MAX, "").map(|n| Some(n as usize))
            }),
        ];
        let conns_max = self.pick(d.conns_max, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_STREAMS_MAX", |v| {
                env_int(v, STREAMS_MAX, "").map(|n| n as usize)
            }),
            self.file_value("limits.streams_max", limits.streams_max, |n| {
                in_range(n, STREAMS_MAX, "").map(|n| n as usize)
            }),
        ];
        let streams_max = self.pick(d.streams_max, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_STREAMS_PER_TENANT", |v| {
                env_int(v, STREAMS_PER_TENANT, "").map(|n| n as usize)
            }),
            self.file_value(
                "limits.streams_per_tenant",
                limits.streams_per_tenant,
                |n| in_range(n, STREAMS_PER_TENANT, "").map(|n| n as usize),
            ),
        ];
        let streams_per_tenant = self.pick(d.streams_per_tenant_max, c);

        // [delivery]
        let c = vec![
            self.env_value(env, "PATCHLINE_RETRY_SCHEDULE", parse_schedule),
            self.file_value("delivery.retry_schedule", delivery.retry_schedule, |v| {
                parse_schedule(&v)
            }),
        ];
        let retry = self.pick(d.retry.clone(), c);
        let c = vec![
            self.env_value(env, "PATCHLINE_REMINDER_INTERVAL_S", |v| {
                env_int(v, seconds(REMINDER_MS), " seconds").map(|s| s * SECOND_MS)
            }),
            self.file_value(
                "delivery.reminder_interval",
                delivery.reminder_interval,
                |v| duration_in(&v, REMINDER_MS),
            ),
        ];
        let reminder_interval_ms = self.pick(d.reminder_interval_ms, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_ESCALATE_AFTER", |v| {
                env_int(v, ESCALATE_AFTER, " reminders")
            }),
            self.file_value("delivery.escalate_after", delivery.escalate_after, |n| {
                in_range(n, ESCALATE_AFTER, " reminders")
            }),
        ];
        let escalate_after = self.pick(d.escalate_after, c);

        // [webhook]
        let c = vec![
            self.env_value(env, "PATCHLINE_WEBHOOK_ALLOW", |v| {
                Policy::from_env_value(Some(v)).map_err(|e| e.to_string())
            }),
            self.file_value("webhook.allow", webhook.allow, |list| {
                if let Some(bad) = list.iter().find(|e| e.trim().is_empty() || e.contains(',')) {
                    return Err(format!(
                        "bad entry {bad:?}: name one CIDR (such as 10.0.0.0/8) per string"
                    ));
                }
                Policy::from_env_value(Some(&list.join(","))).map_err(|e| e.to_string())
            }),
        ];
        let webhook_allow = self.pick(d.webhook_policy.clone(), c);
        let c = vec![
            self.env_value(env, "PATCHLINE_WEBHOOK_TIMEOUT_MS", |v| {
                env_int(v, TIMEOUT_MS, " ms").map(|n| n as u64)
            }),
            self.file_value("webhook.timeout", webhook.timeout, |v| {
                duration_in(&v, TIMEOUT_MS).map(|n| n as u64)
            }),
        ];
        let webhook_timeout_ms = self.pick(d.webhook_timeout_ms, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_SECRET_OVERLAP_S", |v| {
                env_int(v, seconds(OVERLAP_MS), " seconds").map(|s| s * SECOND_MS)
            }),
            self.file_value("webhook.secret_overlap", webhook.secret_overlap, |v| {
                duration_in(&v, OVERLAP_MS)
            }),
        ];
        let secret_overlap_ms = self.pick(d.secret_overlap_ms, c);
        let c = vec![
            self.env_value(env, "PATCHLINE_EVENT_SOURCE", |v| Ok(Some(v.to_string()))),
            self.file_value("webhook.event_source", webhook.event_source, |v| {
                non_empty(v).map(Some)
            }),
        ];
        let event_source = self.pick(None, c);
        let policy = webhook_allow.value.clone();
        let check = |url: String| -> Result<Option<String>, String> {
            policy
                .check_url(&url)
                .map(|_| Some(url))
                .map_err(|e| e.to_string())
        };
        let c = vec![
            self.env_value(env, "PATCHLINE_OPERATOR_WEBHOOK", |v| check(v.to_string())),
            self.file_value("webhook.operator_url", webhook.operator_url, |v| {
                non_empty(v).and_then(check)
            }),
        ];
        let operator_webhook = self.pick(None, c);

        // [secrets]
        let SecretsSection {
            admin_token_file,
            key_file,
            admin_token: inline_token,
            key: inline_key,
            key_previous: inline_previous,
        } = secrets;
        for (given, key, instead) in [
            (
                inline_token.is_some(),
                "secrets.admin_token",
                "name a file holding it with secrets.admin_token_file (mode 0600), or set PATCHLINE_ADMIN_TOKEN",
            ),
            (
                inline_key.is_some(),
                "secrets.key",
                "name a key file with secrets.key_file (mode 0600), or set PATCHLINE_SECRET_KEY",
            ),
            (
                inline_previous.is_some(),
                "secrets.key_previous",
                "put previous keys on the following lines of secrets.key_file, or set PATCHLINE_SECRET_KEY_PREVIOUS",
            ),
        ] {
            if given {
                self.errors.push(format!(
                    "{}: secrets are not read inline from the configuration file: {instead}",
                    self.file(key)
                ));
            }
        }
        let admin_token = self.admin_token(env, admin_token_file);
        let secret_keys = self.secret_keys(env, key_file);

        // [log]
        let c = vec![
            self.env_value(env, "PATCHLINE_LOG", parse_filter),
            self.file_value("log.level", log.level, |v| parse_filter(&v)),
        ];
        let log_level = self.pick("info".to_string(), c);
        let c = vec![
            self.env_value(env, "PATCHLINE_LOG_FORMAT", LogFormat::parse),
            self.file_value("log.format", log.format, |v| LogFormat::parse(&v)),
        ];
        let log_format = self.pick(LogFormat::Auto, c);

        // [backend]: the store; the bus is reserved.
        let c = vec![
            flags
                .store
                .clone()
                .map(|v| (Source::Flag("--store"), parse_store(&v))),
            self.env_value(env, "PATCHLINE_STORE", parse_store),
            self.file_value("backend.store", backend.store, |v| parse_store(&v)),
        ];
        let store = self.pick(None, c);
        if let (Some(url), Source::File(..)) = (&store.value, &store.source)
            && patchline_store::postgres::has_password(url.expose())
        {
            self.warnings.push(
                "backend.store holds a password in the configuration file: give the URL in PATCHLINE_STORE (environment) instead, or use a password file PostgreSQL reads itself (~/.pgpass)".to_string(),
            );
        }
        let c = vec![
            flags
                .bus
                .clone()
                .map(|v| (Source::Flag("--bus"), parse_bus(&v))),
            self.env_value(env, "PATCHLINE_BUS", parse_bus),
            self.file_value("backend.bus", backend.bus, |v| parse_bus(&v)),
        ];
        let bus = self.pick(None, c);
        if let (Some(url), Source::File(..)) = (&bus.value, &bus.source)
            && url.expose().contains('@')
        {
            self.warnings.push(
                "backend.bus holds credentials in the configuration file: give the URL in PATCHLINE_BUS (environment) instead".to_string(),
            );
        }
        let c = vec![
            flags
                .bus_prefix
                .clone()
                .map(|v| (Source::Flag("--bus-prefix"), parse_bus_prefix(&v))),
            self.env_value(env, "PATCHLINE_BUS_PREFIX", parse_bus_prefix),
            self.file_value("backend.bus_prefix", backend.bus_prefix, |v| {
                parse_bus_prefix(&v)
            }),
        ];
        let bus_prefix = self.pick("patchline".to_string(), c);
        if bus.value.is_some() && store.value.is_none() {
            self.errors.push(format!(
                "{}: a bus joins nodes that share one PostgreSQL database; give --store postgres://… too (the embedded SQLite store has one node)",
                bus.source
            ));
        }
        if bus.value.is_none() && !matches!(bus_prefix.source, Source::Default) {
            self.errors.push(format!(
                "{}: a bus prefix without a bus (--bus nats://…) does nothing",
                bus_prefix.source
            ));
        }

        Settings {
            file: file_path,
            listen,
            data_dir,
            store,
            bus,
            bus_prefix,
            workers,
            scan_roots,
            conns_max,
            streams_max,
            streams_per_tenant,
            retry,
            reminder_interval_ms,
            escalate_after,
            webhook_allow,
            webhook_timeout_ms,
            secret_overlap_ms,
            event_source,
            operator_webhook,
            admin_token,
            secret_keys,
            log_level,
            log_format,
            warnings: Vec::new(),
        }
    }

    /// `PATCHLINE_ADMIN_TOKEN`, `PATCHLINE_ADMIN_TOKEN_FILE` or
    /// `secrets.admin_token_file`.
    fn admin_token(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        file_key: Option<PathBuf>,
    ) -> Setting<Option<Redacted>> {
        let inline = env("PATCHLINE_ADMIN_TOKEN");
        let env_file = env("PATCHLINE_ADMIN_TOKEN_FILE");
        if inline.is_some() && env_file.is_some() {
            self.errors.push(
                "PATCHLINE_ADMIN_TOKEN and PATCHLINE_ADMIN_TOKEN_FILE are both set: set one"
                    .to_string(),
            );
        }
        let c = vec![
            inline.map(|t| {
                (
                    Source::Env("PATCHLINE_ADMIN_TOKEN"),
                    Ok(Some(Redacted(t.trim().to_string()))),
                )
            }),
            env_file.map(|p| {
                (
                    Source::Env("PATCHLINE_ADMIN_TOKEN_FILE"),
                    self.read_token(Path::new(&p)).map(Some),
                )
            }),
            file_key.map(|p| {
                (
                    self.file("secrets.admin_token_file"),
                    self.read_token(&p).map(Some),
                )
            }),
        ];
        let token = self.pick(None, c);
        match &token.value {
            None => self.warnings.push(
                "no admin token (PATCHLINE_ADMIN_TOKEN, PATCHLINE_ADMIN_TOKEN_FILE or secrets.admin_token_file): no one can create tenants".to_string(),
            ),
            Some(t) if t.0.len() < 16 => self.warnings.push(format!(
                "the admin token ({}) is shorter than 16 characters; use a long random one (openssl rand -hex 32)",
                token.source
            )),
            Some(_) => {}
        }
        token
    }

    /// The admin token file: its first line, trimmed.
    fn read_token(&mut self, path: &Path) -> Result<Redacted, String> {
        let text = self.read_secret_file(path)?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(format!("{} holds no token", path.display()));
        }
        Ok(Redacted(token.to_string()))
    }

    /// Reads a file of secrets; warns when other accounts can read it.
    fn read_secret_file(&mut self, path: &Path) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            self.warnings.push(format!(
                "{shown} can be read by other accounts; make it 0600 (chmod 600 {shown})"
            ));
        }
        read_bounded(path, SECRET_FILE_MAX).map_err(|e| format!("cannot read {shown}: {e}"))
    }

    /// The operator's keys for webhook secrets at rest:
    /// `PATCHLINE_SECRET_KEY` (with `PATCHLINE_SECRET_KEY_PREVIOUS`),
    /// `PATCHLINE_SECRET_KEY_FILE` or `secrets.key_file` (one key a line,
    /// the current one first).
    fn secret_keys(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        file_key: Option<PathBuf>,
    ) -> Setting<SecretKeys> {
        let key = env("PATCHLINE_SECRET_KEY");
        let key_file = env("PATCHLINE_SECRET_KEY_FILE");
        let previous = env("PATCHLINE_SECRET_KEY_PREVIOUS");
        if key.is_some() && key_file.is_some() {
            self.errors.push(
                "set PATCHLINE_SECRET_KEY or PATCHLINE_SECRET_KEY_FILE, not both".to_string(),
            );
        }
        if key.is_none() && previous.is_some() {
            self.errors.push(
                "PATCHLINE_SECRET_KEY_PREVIOUS needs PATCHLINE_SECRET_KEY (the key that replaces them)"
                    .to_string(),
            );
        }
        let previous = previous.unwrap_or_default();
        let c = vec![
            key.map(|k| {
                (
                    Source::Env("PATCHLINE_SECRET_KEY"),
                    SecretKeys::new(&k, previous.split(',')),
                )
            }),
            key_file.map(|p| {
                let keys = self.read_keys(Path::new(&p));
                (Source::Env("PATCHLINE_SECRET_KEY_FILE"), keys)
            }),
            file_key.map(|p| {
                let keys = self.read_keys(&p);
                (self.file("secrets.key_file"), keys)
            }),
        ];
        self.pick(SecretKeys::none(), c)
    }

    fn read_keys(&mut self, path: &Path) -> Result<SecretKeys, String> {
        let text = self.read_secret_file(path)?;
        SecretKeys::from_file_text(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

// ----- values -----

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{v:?} is not an address IP:PORT (such as 127.0.0.1:8080)"))
}

fn non_empty_path(p: PathBuf) -> Result<PathBuf, String> {
    if p.as_os_str().is_empty() {
        Err("an empty path is not a folder".to_string())
    } else {
        Ok(p)
    }
}

fn non_empty(v: String) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("empty: leave the key out instead".to_string())
    } else {
        Ok(v)
    }
}

fn parse_schedule(v: &str) -> Result<Schedule, String> {
    Schedule::parse(v).map_err(|e| e.to_string())
}

/// A PostgreSQL URL. The message never repeats it (it may hold a
/// password).
fn parse_store(v: &str) -> Result<Option<Redacted>, String> {
    let v = v.trim();
    if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
        return Err(
            "is not a PostgreSQL URL: give postgres://USER@HOST:PORT/DATABASE (a key=value connection string is not accepted)"
                .to_string(),
        );
    }
    patchline_store::postgres::check_url(v)?;
    Ok(Some(Redacted(v.to_string())))
}

fn parse_bus(v: &str) -> Result<Option<Redacted>, String> {
    let v = v.trim();
    // The message names no part of the URL (it may hold a password).
    patchline_bus::check_url(v).map_err(|e| e.to_string())?;
    Ok(Some(Redacted(v.to_string())))
}

fn parse_bus_prefix(v: &str) -> Result<String, String> {
    let v = v.trim();
    patchline_bus::BusPrefix::new(v).map_err(|e| e.to_string())?;
    Ok(v.to_string())
}

fn parse_filter(v: &str) -> Result<String, String> {
    let v = v.trim();
    // A bare word is a target name to the filter's grammar, so a misspelt
    // level (`inof`) would pass and silence every log: a directive without
    // `=` or a span filter must be a level.
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if let Some(word) = v.split(',').map(str::trim).find(|d| {
        !d.is_empty()
            && !d.contains('=')
            && !d.contains('[')
            && !d.contains("::")
            && !LEVELS.contains(&d.to_ascii_lowercase().as_str())
    }) {
        return Err(format!(
            "{word:?} is not a log level (trace, debug, info, warn, error or off); a filter is written such as info, or warn,patchline_server=debug"
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(v)
        .map(|_| v.to_string())
        .map_err(|e| {
            format!("{v:?} is not a log filter (such as info, or warn,patchline_server=debug): {e}")
        })
}

/// A whole number within `lo..=hi`.
fn in_range(n: i64, (lo, hi): (i64, i64), unit: &str) -> Result<i64, String> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range: allowed {lo} to {hi}{unit}"))
    }
}

/// A variable's value: a whole number within `lo..=hi`.
fn env_int(v: &str, range: (i64, i64), unit: &str) -> Result<i64, String> {
    let n = v.trim().parse::<i64>().map_err(|_| {
        format!(
            "{v:?} is not a whole number (allowed {} to {}{unit})",
            range.0, range.1
        )
    })?;
    in_range(n, range, unit)
}

/// A range in milliseconds as whole seconds.
fn seconds((lo, hi): (i64, i64)) -> (i64, i64) {
    ((lo + SECOND_MS - 1) / SECOND_MS, hi / SECOND_MS)
}

/// A duration such as `500ms`, `30s`, `5m`, `2h`, `1d`, in milliseconds.
pub fn parse_duration(v: &str) -> Result<i64, String> {
    let t = v.trim();
    let bad = || {
        format!(
            "{v:?} is not a duration: write a whole number and a unit, ms, s, m, h or d (such as 30s, 5m)"
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => SECOND_MS,
        "m" => 60 * SECOND_MS,
        "h" => 3600 * SECOND_MS,
        "d" => DAY_MS,
        _ => return Err(bad()),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{v:?} is too long a duration"))
}

fn duration_in(v: &str, (lo, hi): (i64, i64)) -> Result<i64, String> {
    let ms = parse_duration(v)?;
    if (lo..=hi).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!(
            "{v:?} is out of range: allowed {} to {}",
            human_ms(lo),
            human_ms(hi)
        ))
    }
}

/// Milliseconds in the largest unit that divides them (`90s`, `1d`).
pub fn human_ms(ms: i64) -> String {
    for (unit, scale) in [
        ("d", DAY_MS),
        ("h", 3600 * SECOND_MS),
        ("m", 60 * SECOND_MS),
        ("s", SECOND_MS),
    ] {
        if ms != 0 && ms % scale == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    if ms == 0 {
        "0s".to_string()
    } else {
        format!("{ms}ms")
    }
}

// ----- use -----

impl Settings {
    /// The server's configuration.
    pub fn server_config(&self) -> Config {
        let mut c = Config::new(self.data_dir.value.clone());
        if let Some(url) = &self.store.value {
            c.store = patchline_server::StoreBackend::Postgres {
                url: url.expose().to_string(),
            };
        }
        if let Some(url) = &self.bus.value {
            c.bus = Some(patchline_server::BusSettings {
                url: url.expose().to_string(),
                prefix: self.bus_prefix.value.clone(),
            });
        }
        c.workers = self.workers.value;
        c.admin_token_hash = self
            .admin_token
            .value
            .as_ref()
            .map(|t| patchline_server::auth::hash_token(t.expose()));
        c.webhook_policy = self.webhook_allow.value.clone();
        c.retry = self.retry.value.clone();
        c.reminder_interval_ms = self.reminder_interval_ms.value;
        c.escalate_after = self.escalate_after.value;
        c.secret_overlap_ms = self.secret_overlap_ms.value;
        c.webhook_timeout_ms = self.webhook_timeout_ms.value;
        c.conns_max = self.conns_max.value;
        c.streams_max = self.streams_max.value;
        c.streams_per_tenant_max = self.streams_per_tenant.value;
        c.event_source = self.event_source.value.clone();
        c.scan_roots = self.scan_roots.value.clone();
        c.secret_keys = self.secret_keys.value.clone();
        c.operator_webhook = self.operator_webhook.value.clone();
        c
    }

    /// The effective configuration as TOML that parses as a configuration
    /// file, each value with its source as a comment; secrets and unset
    /// values are comment lines, secrets redacted (only their source
    /// shows).
    pub fn render(&self) -> String {
        let q = |s: &str| toml_string(s);
        let list = |items: Vec<String>| {
            format!(
                "[{}]",
                items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
            )
        };
        let ms = |v: u64| human_ms(i64::try_from(v).unwrap_or(i64::MAX));
        let mut out = String::new();
        match &self.file {
            Some(p) => out.push_str(&format!("# configuration file: {}\n", p.display())),
            None => out.push_str("# no configuration file\n"),
        }
        out.push_str("# effective values; precedence: flags > environment > file > defaults\n");
        push_section(
            &mut out,
            "server",
            vec![
                (
                    "listen",
                    Some(q(&self.listen.value.to_string())),
                    &self.listen.source,
                ),
                (
                    "data_dir",
                    Some(q(&self.data_dir.value.display().to_string())),
                    &self.data_dir.source,
                ),
                (
                    "workers",
                    Some(self.workers.value.to_string()),
                    &self.workers.source,
                ),
                (
                    "scan_roots",
                    Some(list(
                        self.scan_roots
                            .value
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect(),
                    )),
                    &self.scan_roots.source,
                ),
            ],
        );
        push_section(
            &mut out,
            "limits",
            vec![
                (
                    "conns_max",
                    self.conns_max.value.map(|n| n.to_string()),
                    &self.conns_max.source,
                ),
                (
                    "streams_max",
                    Some(self.streams_max.value.to_string()),
                    &self.streams_max.source,
                ),
                (
                    "streams_per_tenant",
                    Some(self.streams_per_tenant.value.to_string()),
                    &self.streams_per_tenant.source,
                ),
            ],
        );
        push_section(
            &mut out,
            "delivery",
            vec![
                (
                    "retry_schedule",
                    Some(q(&self
                        .retry
                        .value
                        .delays_ms
                        .iter()
                        .map(|&d| ms(d))
                        .collect::<Vec<_>>()
                        .join(","))),
                    &self.retry.source,
                ),
                (
                    "reminder_interval",
                    Some(q(&human_ms(self.reminder_interval_ms.value))),
                    &self.reminder_interval_ms.source,
                ),
                (
                    "escalate_after",
                    Some(self.escalate_after.value.to_string()),
                    &self.escalate_after.source,
                ),
            ],
        );
        push_section(
            &mut out,
            "webhook",
            vec![
                (
                    "allow",
                    Some(list(
                        self.webhook_allow
                            .value
                            .allow_list()
                            .iter()
                            .map(|n| n.to_string())
                            .collect(),
                    )),
                    &self.webhook_allow.source,
                ),
                (
                    "timeout",
                    Some(q(&ms(self.webhook_timeout_ms.value))),
                    &self.webhook_timeout_ms.source,
                ),
                (
                    "secret_overlap",
                    Some(q(&human_ms(self.secret_overlap_ms.value))),
                    &self.secret_overlap_ms.source,
                ),
                (
                    "event_source",
                    self.event_source.value.as_deref().map(q),
                    &self.event_source.source,
                ),
                (
                    "operator_url",
                    // A query string may carry a credential: never shown.
                    self.operator_webhook
                        .value
                        .as_deref()
                        .map(|u| match u.split_once('?') {
                            Some((base, _)) => q(&format!("{base}?<redacted>")),
                            None => q(u),
                        }),
                    &self.operator_webhook.source,
                ),
            ],
        );
        // Secrets: comment lines, never the values.
        out.push_str("\n[secrets]\n");
        let token = if self.admin_token.value.is_some() {
            "<redacted>"
        } else {
            "unset"
        };
        out.push_str(&format!(
            "{:<40} # {}\n",
            format!("# admin_token: {token}"),
            self.admin_token.source
        ));
        let keys = if self.secret_keys.value.is_enabled() {
            "<redacted>"
        } else {
            "none (webhook secrets are stored unsealed)"
        };
        out.push_str(&format!(
            "{:<40} # {}\n",
            format!("# keys: {keys}"),
            self.secret_keys.source
        ));
        push_section(
            &mut out,
            "backend",
            vec![
                (
                    "store",
                    // Shown without its password and query parameters.
                    self.store
                        .value
                        .as_ref()
                        .map(|u| q(&patchline_store::postgres::redact_url(u.expose()))),
                    &self.store.source,
                ),
                (
                    "bus",
                    // Shown as host:port, without credentials.
                    self.bus
                        .value
                        .as_ref()
                        .map(|u| q(&patchline_bus::check_url(u.expose()).unwrap_or_default())),
                    &self.bus.source,
                ),
                (
                    "bus_prefix",
                    // Only with a bus: alone it is refused.
                    self.bus.value.as_ref().map(|_| q(&self.bus_prefix.value)),
                    &self.bus_prefix.source,
                ),
            ],
        );
        push_section(
            &mut out,
            "log",
            vec![
                (
                    "level",
                    Some(q(&self.log_level.value)),
                    &self.log_level.source,
                ),
                (
                    "format",
                    Some(q(self.log_format.value.name())),
                    &self.log_format.source,
                ),
            ],
        );
        out
    }
}

/// One `[section]` of [`Settings::render`]; `None` values are unset.
fn push_section(out: &mut String, name: &str, entries: Vec<(&str, Option<String>, &Source)>) {
    out.push_str(&format!("\n[{name}]\n"));
    for (key, value, source) in entries {
        let kv = match value {
            Some(v) => format!("{key} = {v}"),
            None => format!("# {key}: unset"),
        };
        out.push_str(&format!("{kv:<40} # {source}\n"));
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;

/// Largest configuration file read (a real one is a few KiB).
const CONFIG_FILE_MAX: u64 = 1 << 20;
/// Largest file of secrets read (a token or a few keys).
const SECRET_FILE_MAX: u64 = 64 << 10;

/// Reads a regular file of at most `max` bytes as UTF-8 text: a device, a
/// pipe or a huge file (`--config /dev/zero`) is refused before any byte
/// is read, and a file that grows while read stops at the bound.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes; at most {max} are read",
            meta.len()
        )));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(text)
}
