//! The PostgreSQL backend, for scale-out: several nodes share one database.
//! [`PgStore`] is the catalog's store (one transaction per batch, like
//! SQLite), [`PgQueue`] the delivery queue (claims with
//! `FOR UPDATE SKIP LOCKED`, so workers on every node take disjoint work),
//! [`PgReader`] the API's reads. Each holds one synchronous connection;
//! callers use them from plain threads or `spawn_blocking`.
//!
//! Opening any of them connects, checks that a commit is durable when it
//! returns, and creates or migrates the schema in one transaction under an
//! advisory lock (nodes started together migrate once). A database written
//! by a newer build is refused. Connection URLs never reach an error
//! message or a `Debug` output with their password.
//!
//! What the server must give: a role that may create tables in the
//! database's `public` schema (its owner, since PostgreSQL 15 revoked that
//! from everyone else), `synchronous_commit` other than `off`, `fsync = on`.
//! Connections are made without TLS: the database is on loopback or a
//! private network. The client blocks its thread on a runtime of its own,
//! so an async caller goes through `spawn_blocking`, never straight from a
//! task (which would panic).

mod changes;
mod node;
mod queue;
mod reader;
pub mod schema;
mod service;
mod slots;

use ::postgres::error::SqlState;
use ::postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Transaction};
use patchline_core::inventory::{ComponentId, InvId};
use patchline_core::notice::NoticeState;
use patchline_core::{AdvIdx, AdvisoryDb, ArtIdx, Catalog, Changes, TenantId, TenantIdx};

use crate::codec::{self, ArtifactRow, RecordRow};
use crate::service::{Outbox, ServiceState, StoredNotice};
use crate::{CatalogStore, CaughtUp, SecretKeys, StoreError};
pub use node::{NodeLock, check_url, has_password, redact_url};
pub use queue::PgQueue;
pub use reader::PgReader;
pub use schema::SCHEMA_VERSION;
pub use slots::StreamSlots;

/// How long a connection attempt waits when the URL names no
/// `connect_timeout`.
const CONNECT_TIMEOUT_S: u64 = 10;

/// What the whole connection exchange (TCP, start-up, authentication) may
/// take beyond the connect time-out.
const CONNECT_GRACE_S: u64 = 5;

/// Longest wait for a lock (the deployment's write lock, a row): longer
/// than the longest write (a 1M-notice fan-out commits in 12–28 s here).
const LOCK_TIMEOUT_S: u64 = 60;

/// Silence on a connection after which TCP keepalive probes start (both
/// ends), the time between probes, and how many go unanswered before the
/// connection is given up.
const KEEPALIVE_IDLE_S: u64 = 5;
const KEEPALIVE_INTERVAL_S: u64 = 2;
const KEEPALIVE_PROBES: u32 = 3;

/// How long data the server sent may stay unacknowledged before it ends
/// the session (a client that vanished while the server was answering).
const TCP_USER_TIMEOUT_MS: u64 = 10_000;

/// How long a session may stay idle inside a transaction (a node frozen in
/// the middle of a write) before the server ends it.
const IDLE_IN_TRANSACTION_S: u64 = 60;

/// How long the engine's session of a node of a deployment may stay idle
/// (see [`PgStore::end_when_frozen`]).
const IDLE_SESSION_TIMEOUT: &str = "SET idle_session_timeout = '60s'";

/// Longest statement (the fan-out's `COPY` of a million notices is one).
const STATEMENT_TIMEOUT_S: u64 = 300;

/// Rows of notices and deliveries in one commit from which the store
/// refreshes the planner's statistics of those tables right after it.
/// Without them, a table that grew by a fan-out is planned as if it were
/// still small, and the workers' updates of its notices scan the whole
/// table each round (measured: 0.5 s a round instead of 0.2 s for 10,000
/// notices after a million-notice fan-out, before autovacuum caught up).
const ANALYZE_AFTER_ROWS: usize = 10_000;

/// How many times a transaction is run when PostgreSQL aborts it for a
/// deadlock or a serialization failure (both are safe to run again: an
/// aborted transaction wrote nothing).
const TX_ATTEMPTS_MAX: usize = 4;

/// A failure inside a transaction: PostgreSQL's (perhaps worth a retry)
/// or the store's own.
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(::postgres::Error),
    Store(StoreError),
}

impl From<::postgres::Error> for Fail {
    fn from(e: ::postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> StoreError {
        match f {
            Fail::Pg(e) => db_err(e),
            Fail::Store(e) => e,
        }
    }
}

impl Fail {
    fn is_transient(&self) -> bool {
        matches!(self, Fail::Pg(e) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
            || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
    }
}

/// A PostgreSQL error as a store error: the server's message and SQLSTATE,
/// never its DETAIL (which can quote row values).
pub(crate) fn db_err(e: ::postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(message_of(&e))
    } else {
        StoreError::Database(message_of(&e))
    }
}

/// A failure of the connection rather than of the statement: the
/// connection closed or broke, or the server is shutting down, starting
/// or refusing connections (SQLSTATE classes 08 and 57P).
fn is_unavailable(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 55P03: a lock not granted within `lock_timeout` (another
            // node holds the write lock, or a row, that long); 57014: a
            // statement cancelled by `statement_timeout` (a stalled
            // server).
            code.starts_with("08") || code.starts_with("57P") || code == "55P03" || code == "57014"
        }
        // No answer from the server: an I/O failure or a time-out (not a
        // conversion of a value read, which is the store's own error).
        None => {
            std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>())
                || e.to_string().contains("timed out")
        }
    }
}

fn message_of(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        );
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("PostgreSQL: {e}: {cause}"),
        None => format!("PostgreSQL: {e}"),
    }
}

/// A stored number that must fit an index type.
pub(crate) fn index<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} out of range")))
}

/// Runs `body` in one transaction and commits, running it again (up to
/// [`TX_ATTEMPTS_MAX`] times) when PostgreSQL aborted it for a deadlock or
/// a serialization failure. Anything else rolls back and is returned.
pub(crate) fn in_transaction<T>(
    client: &mut Client,
    mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
) -> Result<T, StoreError> {
    let mut attempt = 1;
    loop {
        let outcome = (|| {
            let mut tx = client.transaction()?;
            let value = body(&mut tx)?;
            // A connection lost during COMMIT leaves its outcome unknown:
            // the server may have made it durable before it went.
            tx.commit().map_err(|e| match is_unavailable(&e) {
                true => Fail::Store(StoreError::CommitUnknown(message_of(&e))),
                false => Fail::Pg(e),
            })?;
            Ok::<T, Fail>(value)
        })();
        match outcome {
            Ok(v) => return Ok(v),
            Err(f) if f.is_transient() && attempt < TX_ATTEMPTS_MAX => attempt += 1,
            Err(f) => return Err(f.into()),
        }
    }
}

/// Statements a connection parsed and planned once and runs by name from
/// then on (a statement given as text is parsed, planned and described at
/// every call, one more round trip each): the delivery queue runs the same
/// few statements many times a second. A statement prepared inside a
/// transaction outlives it (it belongs to the session); a new session (the
/// server closed the last one) starts with none, so the cache is emptied
/// when [`Conn::session`] changes. A caller that runs a statement once
/// passes a fresh cache, dropped after the call.
#[derive(Default)]
pub(crate) struct Prepared {
    session: u64,
    statements: std::collections::HashMap<&'static str, ::postgres::Statement>,
}

impl Prepared {
    /// Forgets the statements of an earlier session.
    pub(crate) fn for_session(&mut self, session: u64) {
        if self.session != session {
            self.statements.clear();
            self.session = session;
        }
    }

    /// `sql` prepared on this session (made now the first time).
    pub(crate) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<::postgres::Statement, ::postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Whether the URL sets the client's keepalives itself (one of the
/// parameters `keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `keepalives_retries`; a value that merely mentions them, such as a
/// server option `tcp_keepalives_idle`, does not count).
fn asks_keepalives(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        key == "keepalives" || key.starts_with("keepalives_")
    })
}

/// Where a URL points, for messages: `postgres://user@host:port/db`,
/// without the password or the options.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                ::postgres::config::Host::Tcp(name) => name.clone(),
                ::postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}{}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        hosts.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

/// Removes the password from a message, whatever put it there.
fn scrub(message: String, password: Option<&[u8]>) -> String {
    match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message,
    }
}

/// One connection, checked and migrated, made again when the server
/// closed the last one (it restarted, or an administrator ended the
/// session): the call that saw it close fails, the next one reconnects.
pub(crate) struct Conn {
    /// Always `Some` but while dropping (see the `Drop` impl).
    client: Option<Client>,
    config: Config,
    /// The URL without its password (see [`describe`]).
    target: String,
    /// Whether connecting creates or migrates the schema.
    migrates: bool,
    /// Counts the connections made: a session lock is held only on the
    /// session that took it.
    session: u64,
    /// Settings of this connection's sessions, set again on each new one.
    setup: Option<&'static str>,
}

impl Conn {
    /// Connects to `url`, refuses a server on which a commit would not be
    /// durable, and creates or migrates the schema.
    pub(crate) fn open(url: &str) -> Result<Conn, StoreError> {
        Conn::open_with(url, true)
    }

    /// [`Conn::open`] without creating or migrating the schema (the node
    /// lock is taken before anything is written).
    pub(crate) fn open_unmigrated(url: &str) -> Result<Conn, StoreError> {
        Conn::open_with(url, false)
    }

    fn open_with(url: &str, migrates: bool) -> Result<Conn, StoreError> {
        check_authority(url)?;
        // The parse error of a URL names no part of it (checked by a
        // test), but a password is scrubbed from every message all the
        // same.
        let mut config: Config = url.parse().map_err(|e: ::postgres::Error| {
            StoreError::Database(scrub(
                format!("the PostgreSQL URL is not valid: {e}"),
                password_in(url).as_deref().map(str::as_bytes),
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(CONNECT_TIMEOUT_S));
        }
        if config.get_application_name().is_none() {
            config.application_name("patchline");
        }
        // A server that vanished (a cut link: no FIN, no RST) is noticed
        // by the client after about KEEPALIVE_IDLE + 3 × KEEPALIVE_INTERVAL
        // of silence, not when the operating system's two hours run out.
        if !asks_keepalives(url) {
            config
                .keepalives(true)
                .keepalives_idle(std::time::Duration::from_secs(KEEPALIVE_IDLE_S))
                .keepalives_interval(std::time::Duration::from_secs(KEEPALIVE_INTERVAL_S))
                .keepalives_retries(KEEPALIVE_PROBES);
        }
        let target = describe(&config);
        let client = Conn::connect(&config, &target, migrates)?;
        Ok(Conn {
            client: Some(client),
            config,
            target,
            migrates,
            session: 1,
            setup: None,
        })
    }

    fn connect(config: &Config, target: &str, migrates: bool) -> Result<Client, StoreError> {
        // The client's connect_timeout covers the TCP connection only: an
        // endpoint that accepts and never speaks would hold the caller (a
        // start, a request) for ever. The whole exchange is bounded here;
        // a connection that completes later is closed by its thread.
        let limit = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(std::time::Duration::from_secs(CONNECT_TIMEOUT_S))
            + std::time::Duration::from_secs(CONNECT_GRACE_S);
        let (tx, rx) = std::sync::mpsc::channel();
        let attempt = config.clone();
        std::thread::Builder::new()
            .name("patchline-pg-connect".into())
            .spawn(move || {
                let _ = tx.send(attempt.connect(NoTls));
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start a connection: {e}")))?;
        let connected = rx.recv_timeout(limit).map_err(|_| {
            StoreError::Unavailable(format!(
                "cannot use PostgreSQL at {target}: no answer within {} s",
                limit.as_secs()
            ))
        })?;
        let mut client = connected.map_err(|e| {
            StoreError::Unavailable(scrub(
                format!("cannot use PostgreSQL at {target}: {}", message_of(&e)),
                config.get_password(),
            ))
        })?;
        check_durable(&mut client, target)?;
        // Bounded waits: a write waits at most LOCK_TIMEOUT for the
        // deployment's write lock (or a row) and any statement runs at most
        // STATEMENT_TIMEOUT, so a stalled server or a node holding the lock
        // too long is answered 503, never waited on for ever.
        // An operator's own setting (the role's, the database's, or the
        // URL's `options=-c lock_timeout=…`) is kept.
        //
        // The server, too, notices a client that vanished: a node cut off
        // the network while it holds the deployment's write lock (or row
        // locks) would otherwise keep them until the link comes back, and
        // every other node's writes would wait for it. Its session ends
        // after about 10 s of silence (keepalive probes unanswered, or
        // data sent and not acknowledged), which releases its locks and
        // rolls its transaction back. The same for a client idle inside a
        // transaction for a minute (a node frozen mid-write). Settings the
        // operator made are kept here too.
        let server_side: [(&str, String); 7] = [
            ("lock_timeout", format!("'{LOCK_TIMEOUT_S}s'")),
            ("statement_timeout", format!("'{STATEMENT_TIMEOUT_S}s'")),
            (
                "idle_in_transaction_session_timeout",
                format!("'{IDLE_IN_TRANSACTION_S}s'"),
            ),
            ("tcp_keepalives_idle", KEEPALIVE_IDLE_S.to_string()),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_S.to_string()),
            ("tcp_keepalives_count", KEEPALIVE_PROBES.to_string()),
            ("tcp_user_timeout", TCP_USER_TIMEOUT_MS.to_string()),
        ];
        // "Made by the operator" is what `pg_settings.source` says: not
        // the value (over TCP, `SHOW tcp_keepalives_idle` answers the
        // kernel's 7200 when nobody set it).
        let names: Vec<&str> = server_side.iter().map(|(n, _)| *n).collect();
        let defaults: Vec<String> = client
            .query(
                "SELECT name FROM pg_settings WHERE name = ANY($1) AND source = 'default'",
                &[&names],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut settings = String::new();
        for (name, value) in &server_side {
            if defaults.iter().any(|d| d == name) {
                settings.push_str(&format!("SET {name} = {value}; "));
            }
        }
        if !settings.is_empty() {
            client.batch_execute(&settings).map_err(db_err)?;
        }
        if migrates {
            migrate(&mut client)?;
        }
        Ok(client)
    }

    /// The live connection (a new one if the server closed the last).
    pub(crate) fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let mut client = Conn::connect(&self.config, &self.target, self.migrates)?;
            if let Some(setup) = self.setup {
                client.batch_execute(setup).map_err(db_err)?;
            }
            self.client = Some(client);
            self.session += 1;
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no PostgreSQL connection".into()))
    }

    /// Runs a read; when it fails because the connection turned out to be
    /// broken (the server restarted, a link was cut and came back), runs
    /// it once more on a new connection. Only for reads: run twice, they
    /// answer the same.
    pub(crate) fn read<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match f(self.client()?) {
            Err(StoreError::Unavailable(_))
                if self.client.as_ref().is_some_and(Client::is_closed) =>
            {
                f(self.client()?)
            }
            other => other,
        }
    }

    /// [`Conn::read`] of one query's rows.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Vec<::postgres::Row>, StoreError> {
        self.read(|c| c.query(sql, params).map_err(db_err))
    }

    /// Runs `setup` on this session now and on every later one.
    pub(crate) fn set_setup(&mut self, setup: &'static str) -> Result<(), StoreError> {
        self.setup = Some(setup);
        self.client()?.batch_execute(setup).map_err(db_err)
    }

    /// Which connection is live (changes when it is made again).
    pub(crate) fn session(&self) -> u64 {
        self.session
    }

    /// Where this connection goes, without the password.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for Conn {
    /// The client closes its connection on a runtime of its own, which
    /// panics on a thread that drives async tasks (the server drops its
    /// state there when it stops): it is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("patchline-pg-close".into())
                .spawn(move || drop(client))
                .map(|h| h.join());
        }
    }
}

/// Refuses a URL whose user part holds an `@` that is not percent-encoded:
/// it would be read as part of the host, and the rest of the password
/// shown in messages.
pub fn check_authority(url: &str) -> Result<(), StoreError> {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.matches('@').count() > 1 {
        return Err(StoreError::Database(
            "the PostgreSQL URL holds more than one '@' before the host: percent-encode an '@' in the user or password as %40".into(),
        ));
    }
    Ok(())
}

/// The password of a `postgres://user:password@…` URL, to scrub it from a
/// parse error.
fn password_in(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_string())
}

/// A 2xx means durable: a commit must not return before PostgreSQL has
/// flushed its WAL. `synchronous_commit = off` (for the server, the
/// database, the role or this URL's options) and `fsync = off` break that,
/// so they are refused rather than warned about: a warning in a log does
/// not bring back an acknowledged change. `local`, `remote_write`, `on`
/// and `remote_apply` all flush the local WAL before a commit returns, and
/// are accepted.
fn check_durable(client: &mut Client, target: &str) -> Result<(), StoreError> {
    let show = |client: &mut Client, name: &str| -> Result<String, StoreError> {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .map_err(db_err)?;
        Ok(row.get::<_, String>(0))
    };
    let sync = show(client, "synchronous_commit")?;
    if sync == "off" {
        return Err(StoreError::Database(format!(
            "PostgreSQL at {target} has synchronous_commit = off: a commit could be lost after \
             it was acknowledged; set synchronous_commit = on (for the server, the database or \
             the role)"
        )));
    }
    let fsync = show(client, "fsync")?;
    if fsync != "on" {
        return Err(StoreError::Database(format!(
            "PostgreSQL at {target} has fsync = {fsync}: committed data could be lost in a \
             crash; set fsync = on"
        )));
    }
    Ok(())
}

/// Creates or migrates the schema in one transaction, under an advisory
/// lock so that nodes opening an empty database at the same moment do it
/// once; refuses a database written by a newer build.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    in_transaction(client, |tx| {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )?;
        tx.batch_execute(schema::META)?;
        let stored: Option<String> = tx
            .query_opt("SELECT value FROM meta WHERE key = 'schema'", &[])?
            .map(|r| r.get(0));
        let from = match stored.as_deref().map(str::parse::<i64>) {
            None => 0,
            Some(Ok(v)) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    known: SCHEMA_VERSION,
                }
                .into());
            }
            Some(Ok(v)) if v >= 0 => v,
            Some(_) => return Err(StoreError::Corrupt("schema version".into()).into()),
        };
        for step in &schema::MIGRATIONS[from as usize..] {
            tx.batch_execute(step)?;
        }
        if from < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&SCHEMA_VERSION.to_string()],
            )?;
        }
        let installed = tx
            .query_opt("SELECT 1 FROM meta WHERE key = 'installation'", &[])?
            .is_some();
        if !installed {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('installation', $1)",
                &[&random_hex(8)?],
            )?;
        }
        Ok(())
    })
}

/// A read-only transaction whose reads all see one moment. It may stay
/// idle between its statements as long as the caller builds what it read
/// (a whole catalog at start: minutes for a very large one), so the
/// session's `idle_in_transaction_session_timeout`, meant for a node
/// frozen in the middle of a write, is lifted for it (it holds no lock a
/// writer waits for).
fn snapshot(client: &mut Client) -> Result<Transaction<'_>, StoreError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db_err)?;
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        .map_err(db_err)?;
    Ok(tx)
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The catalog's store in PostgreSQL.
pub struct PgStore {
    conn: Conn,
    keys: SecretKeys,
    /// The node lock a commit must still hold (see [`NodeLock`]).
    fence: Option<std::sync::Arc<std::sync::Mutex<i32>>>,
    /// The last change of the log this store committed or applied.
    applied: u64,
    /// The session on which the write lock is held, if it is.
    writing: Option<u64>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.conn.target())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`),
    /// creates or migrates the schema, and seals every subscription's
    /// secrets under the current key of `keys` (as
    /// [`SqliteStore::open_with`](crate::sqlite::SqliteStore::open_with)
    /// does).
    pub fn open(url: &str, keys: SecretKeys) -> Result<PgStore, StoreError> {
        let mut conn = Conn::open(url)?;
        service::reseal_secrets(conn.client()?, &keys)?;
        Ok(PgStore {
            conn,
            keys,
            fence: None,
            applied: 0,
            writing: None,
        })
    }

    /// Commits only while `lock` holds the database: a node that lost its
    /// hold (and may have missed another node's changes) writes nothing.
    pub fn fenced(mut self, lock: &NodeLock) -> PgStore {
        self.fence = Some(lock.fence());
        self
    }

    /// Where this store is, without the password.
    pub fn target(&self) -> &str {
        self.conn.target()
    }

    /// For a node of a deployment, whose connection holds the deployment's
    /// write lock during a write: a node that stops running meanwhile
    /// (paused, frozen) keeps its connection open, so PostgreSQL ends this
    /// session once it has been idle for a minute, which releases the lock
    /// for the other nodes (the frozen node's commit then fails, and it
    /// reloads). A live node is never idle that long: it reads the change
    /// log every half second.
    pub fn end_when_frozen(mut self) -> Result<PgStore, StoreError> {
        self.conn.set_setup(IDLE_SESSION_TIMEOUT)?;
        Ok(self)
    }

    /// Binds the database to the deployment named `prefix` on its bus (the
    /// first node of a deployment records it); a node of another
    /// deployment is refused ([`StoreError::Busy`]): two deployments
    /// writing one database would not follow each other's announcements.
    pub fn join_deployment(&mut self, prefix: &str) -> Result<(), StoreError> {
        let client = self.conn.client()?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('bus_prefix', $1) ON CONFLICT (key) DO NOTHING",
                &[&prefix],
            )
            .map_err(db_err)?;
        let recorded: String = client
            .query_one("SELECT value FROM meta WHERE key = 'bus_prefix'", &[])
            .map_err(db_err)?
            .get(0);
        if recorded != prefix {
            return Err(StoreError::Busy(format!(
                "the PostgreSQL database {} belongs to the deployment with bus prefix {recorded:?}, not {prefix:?}: start this node with --bus-prefix {recorded} (to rename the deployment, stop every node and change the row 'bus_prefix' of the table meta)",
                self.conn.target()
            )));
        }
        Ok(())
    }

    /// A random id of this deployment (made with the schema).
    pub fn installation(&mut self) -> Result<String, StoreError> {
        self.conn
            .client()?
            .query_opt("SELECT value FROM meta WHERE key = 'installation'", &[])
            .map_err(db_err)?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Corrupt("no installation id".into()))
    }
}

/// The columns of an artifact's row, in the order [`artifact_row`] reads.
pub(crate) const ARTIFACT_COLUMNS: &str = "idx, id, kind, tenant, parent, relation, visibility, name, labels, inventory, fixes, removed, warnings, supersedes";

/// An artifact's row, selected with [`ARTIFACT_COLUMNS`].
pub(crate) fn artifact_row(r: &::postgres::Row) -> ArtifactRow {
    ArtifactRow {
        idx: r.get(0),
        id: r.get(1),
        kind: r.get(2),
        tenant: r.get(3),
        parent: r.get(4),
        relation: r.get(5),
        visibility: r.get(6),
        name: r.get(7),
        labels: r.get(8),
        inventory: r.get(9),
        fixes: r.get(10),
        removed: r.get(11),
        warnings: r.get(12),
        supersedes: r.get(13),
    }
}

/// Rebuilds the catalog (inside the caller's snapshot).
fn load_catalog(client: &mut impl GenericClient) -> Result<Catalog, StoreError> {
    let mut catalog = Catalog::new();
    for r in client
        .query("SELECT idx, id FROM tenants ORDER BY idx", &[])
        .map_err(db_err)?
    {
        let idx: i64 = r.get(0);
        let id = TenantId::from_stored(r.get::<_, String>(1))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let got = catalog.load_tenant(id);
        if i64::from(got.0) != idx {
            return Err(StoreError::Corrupt(format!("tenant index {idx}")));
        }
    }
    for r in client
        .query("SELECT idx, purl FROM components ORDER BY idx", &[])
        .map_err(db_err)?
    {
        let idx: i64 = r.get(0);
        let purl: &str = r.get(1);
        let got = catalog
            .components_mut()
            .intern(purl)
            .map_err(|e| StoreError::Corrupt(format!("component {purl}: {}", e.0)))?;
        if i64::from(got.0) != idx {
            return Err(StoreError::Corrupt(format!(
                "component index {idx} ({purl})"
            )));
        }
    }
    for r in client
        .query(
            "SELECT idx, base, added, removed FROM inventories ORDER BY idx",
            &[],
        )
        .map_err(db_err)?
    {
        codec::push_inventory(&mut catalog, r.get(0), r.get(1), r.get(2), r.get(3))?;
    }
    let mut nodes = Vec::new();
    for r in client
        .query(
            &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts ORDER BY idx"),
            &[],
        )
        .map_err(db_err)?
    {
        let row = artifact_row(&r);
        if row.idx != nodes.len() as i64 {
            return Err(StoreError::Corrupt(format!("artifact index {}", row.idx)));
        }
        nodes.push(row.into_node(catalog.tenants().len())?);
    }
    catalog
        .load_nodes(nodes)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(catalog)
}

/// Rebuilds the advisory database (inside the caller's snapshot).
fn load_records(
    client: &mut impl GenericClient,
    catalog: &Catalog,
) -> Result<AdvisoryDb, StoreError> {
    let mut db = AdvisoryDb::new();
    for r in client
        .query(
            "SELECT idx, id, kind, artifact, body FROM records ORDER BY idx",
            &[],
        )
        .map_err(db_err)?
    {
        codec::publish_stored(
            &mut db,
            catalog,
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
        )?;
    }
    Ok(db)
}

/// Writes a batch's catalog changes and records (the caller commits).
fn write_catalog(
    tx: &mut Transaction<'_>,
    catalog: &Catalog,
    changes: &Changes,
    db: &AdvisoryDb,
    records: &[AdvIdx],
) -> Result<(), Fail> {
    if !changes.tenants.is_empty() {
        let idx: Vec<i64> = changes.tenants.clone().map(|t| t as i64).collect();
        let ids: Vec<&str> = changes
            .tenants
            .clone()
            .map(|t| catalog.tenants()[t].as_str())
            .collect();
        tx.execute(
            "INSERT INTO tenants (idx, id) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&idx, &ids],
        )?;
    }
    if !changes.components.is_empty() {
        let idx: Vec<i64> = changes.components.clone().map(|c| c as i64).collect();
        let purls: Vec<&str> = changes
            .components
            .clone()
            .map(|c| &*catalog.components().get(ComponentId(c as u32)).purl)
            .collect();
        tx.execute(
            "INSERT INTO components (idx, purl) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&idx, &purls],
        )?;
    }
    if !changes.inventories.is_empty() {
        let n = changes.inventories.len();
        let (mut idx, mut base, mut added, mut removed) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for i in changes.inventories.clone() {
            let obj = catalog.inventories().get(InvId(i as u32));
            idx.push(i as i64);
            base.push(obj.base.map(|b| i64::from(b.0)));
            added.push(codec::ids_to_blob(&obj.added, |c| c.0));
            removed.push(codec::ids_to_blob(&obj.removed, |c| c.0));
        }
        tx.execute(
            "INSERT INTO inventories (idx, base, added, removed)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
            &[&idx, &base, &added, &removed],
        )?;
    }
    if !changes.artifacts.is_empty() {
        let mut arts = changes.artifacts.clone();
        arts.sort_unstable();
        arts.dedup();
        let rows = arts
            .iter()
            .map(|&a| ArtifactRow::of(catalog, a))
            .collect::<Result<Vec<_>, _>>()?;
        let col = |f: fn(&ArtifactRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let opt = |f: fn(&ArtifactRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
        let text = |f: fn(&ArtifactRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let removed: Vec<bool> = rows.iter().map(|r| r.removed).collect();
        tx.execute(
            "INSERT INTO artifacts
               (idx, id, kind, tenant, parent, relation, visibility, name, labels, inventory, fixes, removed,
                warnings, supersedes)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
               $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::bool[],
               $13::text[], $14::bigint[])
             ON CONFLICT (idx) DO UPDATE SET parent = excluded.parent, relation = excluded.relation,
               visibility = excluded.visibility, name = excluded.name, labels = excluded.labels,
               inventory = excluded.inventory, fixes = excluded.fixes, removed = excluded.removed,
               warnings = excluded.warnings, supersedes = excluded.supersedes",
            &[
                &col(|r| r.idx),
                &ids,
                &col(|r| r.kind),
                &col(|r| r.tenant),
                &opt(|r| r.parent),
                &opt(|r| r.relation),
                &col(|r| r.visibility),
                &text(|r| r.name.as_deref()),
                &text(|r| r.labels.as_deref()),
                &opt(|r| r.inventory),
                &text(|r| r.fixes.as_deref()),
                &removed,
                &text(|r| r.warnings.as_deref()),
                &opt(|r| r.supersedes),
            ],
        )?;
    }
    if !records.is_empty() {
        let mut recs = records.to_vec();
        recs.sort_unstable();
        recs.dedup();
        let rows = recs
            .iter()
            .map(|&r| RecordRow::of(db, r))
            .collect::<Result<Vec<_>, _>>()?;
        let idx: Vec<i64> = rows.iter().map(|r| r.idx).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        let modified: Vec<&str> = rows.iter().map(|r| r.modified.as_str()).collect();
        let artifact: Vec<Option<i64>> = rows.iter().map(|r| r.artifact).collect();
        let body: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
        tx.execute(
            "INSERT INTO records (idx, id, kind, modified, artifact, body)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
             ON CONFLICT (idx) DO UPDATE SET id = excluded.id, kind = excluded.kind,
               modified = excluded.modified, artifact = excluded.artifact, body = excluded.body",
            &[&idx, &ids, &kinds, &modified, &artifact, &body],
        )?;
    }
    Ok(())
}

impl PgStore {
    /// The catalog and the records, and what `more` reads, in one
    /// repeatable-read snapshot: another node committing meanwhile is seen
    /// wholly or not at all.
    fn load_with<T>(
        &mut self,
        more: impl FnOnce(&mut ::postgres::Transaction<'_>, &SecretKeys) -> Result<T, StoreError>,
    ) -> Result<(Catalog, AdvisoryDb, T), StoreError> {
        let mut tx = snapshot(self.conn.client()?)?;
        let applied = changes::last_seq(&mut tx)?;
        let catalog = load_catalog(&mut tx)?;
        let db = load_records(&mut tx, &catalog)?;
        let extra = more(&mut tx, &self.keys)?;
        tx.commit().map_err(db_err)?;
        self.applied = applied;
        Ok((catalog, db, extra))
    }
}

impl CatalogStore for PgStore {
    /// Reads every table in one repeatable-read snapshot: another node
    /// committing meanwhile is seen wholly or not at all.
    fn load(&mut self) -> Result<(Catalog, AdvisoryDb), StoreError> {
        let (catalog, db, ()) = self.load_with(|_, _| Ok(()))?;
        Ok((catalog, db))
    }

    /// One transaction: the catalog's changes, the records, the outbox.
    /// Bulk rows (notices, their groups, deliveries) go through binary
    /// `COPY`, the rest through `unnest` arrays, so a fan-out of a million
    /// notices is a handful of statements.
    fn commit(
        &mut self,
        catalog: &Catalog,
        changes: &Changes,
        db: &AdvisoryDb,
        records: &[AdvIdx],
        outbox: &Outbox,
    ) -> Result<(), StoreError> {
        let keys = &self.keys;
        let fence = self.fence.clone();
        let logged = changes::worth_logging(changes, records, outbox);
        let seq = self.applied + 1;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let client = self.conn.client()?;
        in_transaction(client, |tx| {
            if let Some(fence) = &fence {
                node::check_fence(tx, fence)?;
            }
            // The change row first: a node that missed a change is
            // refused here, before any of its rows can collide.
            if logged {
                changes::write_change(tx, seq, at_ms, changes, records, outbox)?;
            }
            write_catalog(tx, catalog, changes, db, records)?;
            service::write_outbox(tx, outbox, keys)
        })?;
        if logged {
            self.applied = seq;
        }
        if outbox.notices.len() + outbox.deliveries.len() >= ANALYZE_AFTER_ROWS {
            // The batch is committed: a failure here must not report it as
            // failed, and autovacuum refreshes the statistics later anyway.
            let _ = client.batch_execute("ANALYZE notices, notice_groups, deliveries");
        }
        Ok(())
    }

    /// Takes the write lock (waiting for the node that holds it), then
    /// reads and applies what other nodes committed meanwhile, with the
    /// next free ids.
    fn begin_write(
        &mut self,
        catalog: &mut Catalog,
        db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        self.conn.client()?;
        let session = self.conn.session();
        if self.writing != Some(session) {
            self.conn
                .client()?
                .execute("SELECT pg_advisory_lock($1)", &[&changes::WRITE_LOCK])
                .map_err(db_err)?;
            self.writing = Some(session);
        }
        let client = self.conn.client()?;
        let mut caught = changes::read_changes(client, self.applied, catalog, db, &self.keys)?;
        caught.next_ids = Some(changes::next_ids(client)?);
        self.applied = caught.seq;
        Ok(Some(caught))
    }

    fn end_write(&mut self) {
        if self.writing.take() == Some(self.conn.session())
            && let Ok(client) = self.conn.client()
        {
            // A failure leaves the lock to the session's end (the
            // connection is then broken, and PostgreSQL releases it).
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&changes::WRITE_LOCK]);
        }
    }

    /// Reads the log in one snapshot: every change up to the newest
    /// committed, applied at once.
    fn catch_up(
        &mut self,
        catalog: &mut Catalog,
        db: &mut AdvisoryDb,
    ) -> Result<Option<CaughtUp>, StoreError> {
        let mut tx = snapshot(self.conn.client()?)?;
        let caught = changes::read_changes(&mut tx, self.applied, catalog, db, &self.keys)?;
        tx.commit().map_err(db_err)?;
        self.applied = caught.seq;
        Ok(Some(caught))
    }

    fn applied_seq(&self) -> u64 {
        self.applied
    }

    fn check_hold(&mut self) -> Result<(), StoreError> {
        match self.fence.clone() {
            Some(fence) => node::check_fence(self.conn.client()?, &fence),
            None => Ok(()),
        }
    }

    fn take_budget(
        &mut self,
        key: &str,
        per_min: u32,
        now_ms: i64,
    ) -> Result<Option<f64>, StoreError> {
        let cap = f64::from(per_min);
        let left: f64 = self
            .conn
            .client()?
            .query_one(
                "INSERT INTO budgets (key, tokens, at) VALUES ($1, $2::float8 - 1, $3::bigint)
                 ON CONFLICT (key) DO UPDATE SET
                   tokens = least($2::float8, budgets.tokens
                              + greatest(0, $3::bigint - budgets.at) * $2::float8 / 60000.0) - 1,
                   at = greatest(budgets.at, $3::bigint)
                 RETURNING tokens",
                &[&key, &cap, &now_ms],
            )
            .map_err(db_err)?
            .get(0);
        Ok(Some(left))
    }

    /// One repeatable-read snapshot for all three (nodes that start
    /// while another commits its first tenant and token saw the token and
    /// not the tenant when they were two reads).
    fn load_all(&mut self) -> Result<(Catalog, AdvisoryDb, ServiceState), StoreError> {
        self.load_with(|tx, keys| service::load_service(tx, keys))
    }

    fn load_service(&mut self) -> Result<ServiceState, StoreError> {
        let mut tx = snapshot(self.conn.client()?)?;
        let state = service::load_service(&mut tx, &self.keys)?;
        tx.commit().map_err(db_err)?;
        Ok(state)
    }

    fn notices_of_advisory(
        &mut self,
        adv: AdvIdx,
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT id, artifact, state FROM notices WHERE advisory = $1",
                &[&i64::from(adv.0)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok((
                    r.get(0),
                    ArtIdx(index(r.get(1), "artifact")?),
                    NoticeState::parse(r.get(2)).unwrap_or(NoticeState::Affected),
                ))
            })
            .collect()
    }

    fn announced(&mut self, successor: ArtIdx) -> Result<Vec<(TenantIdx, AdvIdx)>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT tenant, record FROM patch_notices WHERE successor = $1",
                &[&i64::from(successor.0)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok((
                    TenantIdx(index(r.get(0), "patch tenant")?),
                    AdvIdx(index(r.get(1), "patch record")?),
                ))
            })
            .collect()
    }

    fn notices_on(
        &mut self,
        adv: AdvIdx,
        artifacts: &[ArtIdx],
    ) -> Result<Vec<(i64, ArtIdx, NoticeState)>, StoreError> {
        let client = self.conn.client()?;
        let mut out = Vec::new();
        for chunk in artifacts.chunks(service::IDS_PER_QUERY_MAX * 10) {
            let ids: Vec<i64> = chunk.iter().map(|a| i64::from(a.0)).collect();
            for r in client
                .query(
                    "SELECT id, artifact, state FROM notices WHERE advisory = $1 AND artifact = ANY($2)",
                    &[&i64::from(adv.0), &ids],
                )
                .map_err(db_err)?
            {
                out.push((
                    r.get(0),
                    ArtIdx(index(r.get(1), "artifact")?),
                    NoticeState::parse(r.get(2)).unwrap_or(NoticeState::Affected),
                ));
            }
        }
        Ok(out)
    }

    fn notices_of_artifact(&mut self, a: ArtIdx) -> Result<Vec<crate::ArtifactNotice>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT id, advisory, state, root, path FROM notices WHERE artifact = $1",
                &[&i64::from(a.0)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(crate::ArtifactNotice {
                    id: r.get(0),
                    advisory: AdvIdx(index(r.get(1), "advisory")?),
                    state: NoticeState::parse(r.get(2)).unwrap_or(NoticeState::Affected),
                    root: r.get(3),
                    path: crate::service::blob_path(r.get(4)),
                })
            })
            .collect()
    }

    fn notice(&mut self, id: i64) -> Result<Option<StoredNotice>, StoreError> {
        service::notice_by_id(self.conn.client()?, id)
    }

    fn root_ids(
        &mut self,
        adv: AdvIdx,
        causes: &[patchline_core::remedy::RootCause],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        service::root_ids(self.conn.client()?, adv, causes)
    }

    fn open_notices_of(
        &mut self,
        tenant: TenantIdx,
    ) -> Result<Vec<(i64, AdvIdx, ArtIdx)>, StoreError> {
        self.conn
            .client()?
            .query(
                "SELECT id, advisory, artifact FROM notices
                 WHERE tenant = $1 AND state IN ('affected', 'notified', 'acknowledged')
                 ORDER BY id",
                &[&i64::from(tenant.0)],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok((
                    r.get(0),
                    AdvIdx(index(r.get(1), "notice advisory")?),
                    ArtIdx(index(r.get(2), "notice artifact")?),
                ))
            })
            .collect()
    }

    fn root_members(&mut self, root: i64) -> Result<Option<crate::RootMembers>, StoreError> {
        service::root_members(self.conn.client()?, root)
    }

    fn root_plans_near(
        &mut self,
        arts: &[ArtIdx],
        adv: Option<AdvIdx>,
    ) -> Result<Vec<crate::RootPlan>, StoreError> {
        service::root_plans_near(self.conn.client()?, arts, adv)
    }

    fn digest_window(
        &mut self,
        subscription: &str,
        tenant: TenantIdx,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<crate::DigestWindow, StoreError> {
        service::digest_window(
            self.conn.client()?,
            subscription,
            tenant,
            from_ms,
            to_ms,
            limit,
        )
    }

    fn due_reminders(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        service::due_reminders(self.conn.client()?, before_ms, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_described_without_their_password() {
        let config: Config =
            "postgres://alice:s3cret-pw@db.internal:6543/patchline?sslmode=disable"
                .parse()
                .unwrap();
        assert_eq!(
            describe(&config),
            "postgres://alice@db.internal:6543/patchline"
        );
        assert_eq!(
            password_in("postgres://alice:s3cret-pw@db.internal:6543/x").as_deref(),
            Some("s3cret-pw")
        );
        assert_eq!(password_in("postgres://alice@h/x"), None);
        assert_eq!(
            scrub("no s3cret-pw here".into(), Some(b"s3cret-pw")),
            "no *** here"
        );
    }

    #[test]
    fn only_keepalive_parameters_count_as_the_operators() {
        assert!(!asks_keepalives("postgres://u@h/db"));
        assert!(asks_keepalives("postgres://u@h/db?keepalives=0"));
        assert!(asks_keepalives(
            "postgres://u@h/db?sslmode=disable&keepalives_idle=30"
        ));
        assert!(!asks_keepalives(
            "postgres://u@h/db?options=-c%20tcp_keepalives_idle%3D30"
        ));
        assert!(!asks_keepalives(
            "postgres://u@h/db?application_name=keepalives"
        ));
    }

    /// Each session gets the server-side time-outs and keepalives, over
    /// TCP too (where `SHOW tcp_keepalives_idle` answers the kernel's
    /// value when nobody set it), and keeps those the URL set.
    #[test]
    fn sessions_get_keepalives_unless_the_operator_set_them() {
        let Some(url) = patchline_testkit::postgres::postgres_url(
            "sessions_get_keepalives_unless_the_operator_set_them",
        ) else {
            return;
        };
        let show = |url: &str| -> Vec<String> {
            let mut conn = Conn::open_unmigrated(url).unwrap();
            let client = conn.client().unwrap();
            [
                "tcp_keepalives_idle",
                "tcp_keepalives_interval",
                "tcp_keepalives_count",
                "tcp_user_timeout",
                "idle_in_transaction_session_timeout",
                "lock_timeout",
            ]
            .iter()
            .map(|name| {
                client
                    .query_one(&format!("SHOW {name}"), &[])
                    .unwrap()
                    .get(0)
            })
            .collect()
        };
        let tcp = url.contains("@127.0.0.1") || url.contains("@localhost");
        // A read snapshot (a load) may stay idle as long as it takes.
        let mut conn = Conn::open_unmigrated(&url).unwrap();
        let mut tx = snapshot(conn.client().unwrap()).unwrap();
        let idle: String = tx
            .query_one("SHOW idle_in_transaction_session_timeout", &[])
            .unwrap()
            .get(0);
        assert_eq!(idle, "0");
        drop(tx);
        let got = show(&url);
        if tcp {
            assert_eq!(got[..4], ["5", "2", "3", "10000"], "{got:?}");
        }
        assert_eq!(got[4..], ["1min", "1min"], "{got:?}");
        let sep = if url.contains('?') { '&' } else { '?' };
        let own =
            format!("{url}{sep}options=-c%20tcp_keepalives_idle%3D30%20-c%20lock_timeout%3D7s");
        let got = show(&own);
        if tcp {
            assert_eq!(got[0], "30", "{got:?}");
        }
        assert_eq!(got[5], "7s", "{got:?}");
    }

    /// A URL that does not parse, or a server that is not there: the
    /// message names where, never the password.
    #[test]
    fn errors_never_carry_the_password() {
        for url in [
            "postgres://alice:s3cret-pw@127.0.0.1:1/patchline",
            "postgres://alice:s3cret-pw@127.0.0.1:notaport/patchline",
            "postgres://alice:s3cret-pw@127.0.0.1:1/patchline?bogus_option=s3cret-pw",
        ] {
            let err = PgStore::open(url, SecretKeys::none()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cret-pw"), "{text}");
        }
        let err = PgStore::open(
            "postgres://alice:s3cret-pw@127.0.0.1:1/patchline",
            SecretKeys::none(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("postgres://alice@127.0.0.1:1/patchline"),
            "{err}"
        );
    }
}
