//! One node per database without a bus; only the nodes of one deployment
//! with one.
//!
//! Every node keeps the catalog in memory and writes only what it changed:
//! two nodes writing one database would each miss the other's changes and
//! hand out the same notice ids. [`NodeLock`] holds a session advisory
//! lock on a connection of its own for the node's life, so a second node
//! is refused at start; a watcher thread checks the connection and, if it
//! was lost, takes the lock again — or, if another node took it meanwhile,
//! reports the loss (the server then stops: its catalog may be stale). A
//! [`PgStore`](super::PgStore) fenced with [`NodeLock::fence`] refuses to
//! commit unless this lock's session still holds the lock, which closes
//! the window between a lost connection and the watcher noticing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::postgres::Client;

use super::{Conn, db_err};
use crate::StoreError;

/// The advisory lock key of the single-node hold (`pgnode` in ASCII);
/// distinct from the migration lock's.
pub(crate) const NODE_LOCK_KEY: i64 = 0x7067_6e6f_6465;

/// How often the watcher checks the lock's connection.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// This node's exclusive hold on a PostgreSQL store; released when
/// dropped (the connection closes).
pub struct NodeLock {
    /// The backend process id of the session holding the lock (what a
    /// fenced commit checks); changes when the watcher takes it again.
    pid: Arc<std::sync::Mutex<i32>>,
    stop: Arc<AtomicBool>,
    target: String,
}

impl std::fmt::Debug for NodeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLock")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Takes the hold: exclusive for a node alone on its database, shared by
/// the nodes of a deployment (so that a node without a bus is refused
/// beside them, and they beside it).
fn try_lock(client: &mut Client, shared: bool) -> Result<Option<i32>, StoreError> {
    let take = if shared {
        "SELECT pg_try_advisory_lock_shared($1), pg_backend_pid()"
    } else {
        "SELECT pg_try_advisory_lock($1), pg_backend_pid()"
    };
    let row = client.query_one(take, &[&NODE_LOCK_KEY]).map_err(db_err)?;
    Ok(row.get::<_, bool>(0).then(|| row.get(1)))
}

/// Why the hold was refused, for the operator.
fn refused(client: &mut Client, target: &str, shared: bool) -> StoreError {
    if shared {
        return StoreError::Busy(format!(
            "a patchline node without a bus is serving the PostgreSQL database {target}; nodes of a deployment share a database only with each other: stop that node, or start it with the same --bus and --bus-prefix"
        ));
    }
    let deployment = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND mode = 'ShareLock' AND objid = ($1::bigint & 4294967295)::oid \
             AND classid = ($1::bigint >> 32)::oid AND objsubid = 1)",
            &[&NODE_LOCK_KEY],
        )
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false);
    if deployment {
        StoreError::Busy(format!(
            "nodes of a deployment with a bus are serving the PostgreSQL database {target}: start this node with the same --bus and --bus-prefix to join them"
        ))
    } else {
        StoreError::Busy(format!(
            "another patchline node is serving the PostgreSQL database {target}; without a bus one node serves one database (several nodes share one through --bus)"
        ))
    }
}

impl NodeLock {
    /// Takes the hold, or fails with [`StoreError::Busy`] when another
    /// node has it. `on_lost` runs (once, on the watcher thread) if the
    /// hold is lost to another node; the caller stops serving then.
    pub fn acquire(
        url: &str,
        on_lost: impl FnOnce(&str) + Send + 'static,
    ) -> Result<NodeLock, StoreError> {
        NodeLock::acquire_as(url, false, on_lost)
    }

    /// The hold of a node of a deployment (with a bus): shared with the
    /// other nodes of the deployment, refused while a node without a bus
    /// serves the database (which is refused while this is held).
    pub fn acquire_shared(
        url: &str,
        on_lost: impl FnOnce(&str) + Send + 'static,
    ) -> Result<NodeLock, StoreError> {
        NodeLock::acquire_as(url, true, on_lost)
    }

    fn acquire_as(
        url: &str,
        shared: bool,
        on_lost: impl FnOnce(&str) + Send + 'static,
    ) -> Result<NodeLock, StoreError> {
        // Nothing is created or migrated before the lock is held: a newer
        // build started by mistake beside a running node changes nothing.
        let mut conn = Conn::open_unmigrated(url)?;
        let target = conn.target().to_string();
        let Some(pid) = try_lock(conn.client()?, shared)? else {
            return Err(refused(conn.client()?, &target, shared));
        };
        let pid = Arc::new(std::sync::Mutex::new(pid));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher_pid = pid.clone();
        let watcher_stop = stop.clone();
        let watcher_target = target.clone();
        std::thread::Builder::new()
            .name("patchline-node-lock".into())
            .spawn(move || {
                watch(
                    conn,
                    shared,
                    watcher_pid,
                    watcher_stop,
                    watcher_target,
                    on_lost,
                )
            })
            .map_err(|e| StoreError::Database(format!("cannot start the lock watcher: {e}")))?;
        Ok(NodeLock { pid, stop, target })
    }

    /// What a fenced store checks at each commit.
    pub fn fence(&self) -> Arc<std::sync::Mutex<i32>> {
        self.pid.clone()
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Keeps the hold: checks the connection every [`WATCH_EVERY`]; after a
/// lost connection, reconnects and takes the lock again, or reports the
/// loss when another node holds it.
fn watch(
    mut conn: Conn,
    shared: bool,
    pid: Arc<std::sync::Mutex<i32>>,
    stop: Arc<AtomicBool>,
    target: String,
    on_lost: impl FnOnce(&str),
) {
    let mut held = true;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_EVERY);
        if held {
            let alive = conn
                .client()
                .ok()
                .is_some_and(|c| c.is_valid(WATCH_EVERY).is_ok());
            if alive {
                continue;
            }
            // The session is gone and the lock with it; commits are
            // refused (the fence names the old session) until it is back.
            held = false;
        }
        let Ok(client) = conn.client() else {
            continue; // the server is still unreachable
        };
        match try_lock(client, shared) {
            Ok(Some(new_pid)) => {
                if let Ok(mut p) = pid.lock() {
                    *p = new_pid;
                }
                held = true;
            }
            Ok(None) => {
                on_lost(&format!(
                    "another patchline node took the PostgreSQL database {target} while this node's connection was lost; this node stops so as not to serve beside it"
                ));
                return;
            }
            Err(_) => {}
        }
    }
}

/// Inside a commit's transaction: fails unless the fence's session still
/// holds the node lock.
pub(crate) fn check_fence(
    tx: &mut impl ::postgres::GenericClient,
    fence: &std::sync::Mutex<i32>,
) -> Result<(), StoreError> {
    let pid = *fence
        .lock()
        .map_err(|_| StoreError::Database("the node lock's state is poisoned".into()))?;
    let held: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = $1 AND objid = ($2::bigint & 4294967295)::oid \
             AND classid = ($2::bigint >> 32)::oid AND objsubid = 1)",
            &[&pid, &NODE_LOCK_KEY],
        )
        .map_err(db_err)?
        .get(0);
    if held {
        Ok(())
    } else {
        Err(StoreError::Unavailable(
            "this node does not hold its PostgreSQL database at the moment (its lock connection was lost; it is taken again within seconds once the database answers); nothing was written".into(),
        ))
    }
}

/// Checks a PostgreSQL URL without connecting; the message never repeats
/// it.
pub fn check_url(url: &str) -> Result<(), String> {
    super::check_authority(url).map_err(|e| match e {
        StoreError::Database(m) => m,
        other => other.to_string(),
    })?;
    url.parse::<::postgres::Config>().map(|_| ()).map_err(|e| {
        super::scrub(
            format!("is not a valid PostgreSQL URL: {e}"),
            super::password_in(url).as_deref().map(str::as_bytes),
        )
    })
}

/// A PostgreSQL URL as it may be shown: `postgres://user@host:port/db`,
/// without its password or options.
pub fn redact_url(url: &str) -> String {
    if super::check_authority(url).is_err() {
        return "postgres://<not a valid URL>".to_string();
    }
    match url.parse::<::postgres::Config>() {
        Ok(config) => super::describe(&config),
        Err(_) => "postgres://<not a valid URL>".to_string(),
    }
}

/// Whether a PostgreSQL URL carries a password (in its user part or as a
/// `password=` parameter).
pub fn has_password(url: &str) -> bool {
    url.parse::<::postgres::Config>()
        .is_ok_and(|c| c.get_password().is_some_and(|p| !p.is_empty()))
}
