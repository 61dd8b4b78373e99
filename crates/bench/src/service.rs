//! `patchline-bench --service`: the pub/sub figures of issue 3, measured
//! in one process against a local keep-alive webhook receiver:
//! - fan-out: one advisory hitting every base image of the cloud, every
//!   notice and delivery durable when `publish` returns;
//! - delivery throughput of single-notice signed webhooks (each attempt's
//!   state durable), against a raw HTTP client posting the same bodies to
//!   the same receiver with the same concurrency;
//! - latency from creating an affected artifact to its webhook arriving,
//!   at a steady 1,000 notices/s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use patchline_core::notice::Channel;
use patchline_core::{Actor, Advisory, ArtifactId, ArtifactSpec, Kind, Mode, TenantId, Visibility};
use patchline_delivery::routing::{Filter, SecretEntry, Subscription};
use patchline_engine::{BatchItem, now_ms};
use patchline_formats::osv;
use patchline_server::{AppState, Config, open_state};

/// What the receiver saw: webhook-id -> arrival (ms since epoch).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) count: AtomicU64,
    pub(crate) arrivals: Mutex<HashMap<String, i64>>,
}

async fn receive(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    let at = now_ms();
    seen.count.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
        && let Ok(mut map) = seen.arrivals.lock()
    {
        map.entry(id.to_string()).or_insert(at);
    }
    StatusCode::NO_CONTENT
}

/// A keep-alive receiver on its own runtime thread.
pub(crate) fn start_receiver() -> anyhow::Result<(SocketAddr, Arc<Seen>)> {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = tx.send(listener.local_addr().expect("addr"));
            let app = Router::new()
                .route("/hook/{tenant}", post(receive))
                .with_state(s2);
            let _ = axum::serve(listener, app).await;
        });
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(5))
        .context("receiver did not start")?;
    Ok((addr, seen))
}

/// The service's tables, read and written by the benchmark itself
/// (counting deliveries, queueing the single-notice deliveries, reading
/// creation times): the SQLite file of the data directory, or the
/// PostgreSQL database the server runs on (one connection kept open, so
/// that polling does not start a server process every 20 ms).
#[derive(Clone)]
pub enum Tables {
    Sqlite(PathBuf),
    Postgres(Arc<Mutex<postgres::Client>>),
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tables::Sqlite(dir) => write!(f, "Sqlite({})", dir.display()),
            Tables::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

impl Tables {
    /// Runs `f` on these tables on a blocking thread (their calls block).
    pub(crate) async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let tables = self.clone();
        blocking(move || f(&tables)).await
    }

    fn pg(
        client: &Mutex<postgres::Client>,
    ) -> anyhow::Result<std::sync::MutexGuard<'_, postgres::Client>> {
        client.lock().map_err(|_| anyhow::anyhow!("lock"))
    }

    /// Deliveries in `state`. Blocking: async callers use `spawn_blocking`.
    pub(crate) fn count_deliveries(&self, state: &str) -> anyhow::Result<i64> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                conn.busy_timeout(Duration::from_secs(10))?;
                Ok(conn.query_row(
                    "SELECT count(*) FROM deliveries WHERE state = ?1",
                    [state],
                    |r| r.get(0),
                )?)
            }
            Tables::Postgres(c) => Ok(Tables::pg(c)?
                .query_one(
                    "SELECT count(*) FROM deliveries WHERE state = $1",
                    &[&state],
                )?
                .get(0)),
        }
    }

    /// One number a query without parameters answers.
    pub(crate) fn scalar(&self, sql: &str) -> anyhow::Result<i64> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                conn.busy_timeout(Duration::from_secs(10))?;
                Ok(conn.query_row(sql, [], |r| r.get(0))?)
            }
            Tables::Postgres(c) => Ok(Tables::pg(c)?.query_one(sql, &[])?.get(0)),
        }
    }

    /// Rows of notices and of deliveries.
    pub(crate) fn counts(&self) -> anyhow::Result<(i64, i64)> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                Ok((
                    conn.query_row("SELECT count(*) FROM notices", [], |r| r.get(0))?,
                    conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))?,
                ))
            }
            Tables::Postgres(c) => {
                let mut c = Tables::pg(c)?;
                Ok((
                    c.query_one("SELECT count(*) FROM notices", &[])?.get(0),
                    c.query_one("SELECT count(*) FROM deliveries", &[])?.get(0),
                ))
            }
        }
    }

    /// Queues one pending delivery for each of the first `n` notices (to
    /// its tenant's subscription), due at `due_ms`, in one transaction;
    /// answers the highest delivery id used.
    pub(crate) fn queue_single(&self, n: i64, due_ms: i64) -> anyhow::Result<i64> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                conn.busy_timeout(Duration::from_secs(10))?;
                let tx = conn.unchecked_transaction()?;
                let max_id: i64 =
                    tx.query_row("SELECT coalesce(max(id), 0) FROM deliveries", [], |r| {
                        r.get(0)
                    })?;
                let notice_ids: Vec<(i64, i64)> = {
                    let mut stmt =
                        tx.prepare("SELECT id, tenant FROM notices ORDER BY id LIMIT ?1")?;
                    let rows = stmt.query_map([n], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<_, _>>()?
                };
                {
                    let mut stmt = tx.prepare(
                        "INSERT INTO deliveries (id, subscription, purpose, notices, state, next_at, created_at)
                         VALUES (?1, ?2, 'notice', ?3, 'pending', ?4, ?4)",
                    )?;
                    for (i, (nid, tenant)) in notice_ids.iter().enumerate() {
                        stmt.execute(rusqlite::params![
                            max_id + 1 + i as i64,
                            format!("sub_bench_{tenant}"),
                            nid.to_le_bytes().to_vec(),
                            due_ms
                        ])?;
                    }
                }
                anyhow::ensure!(
                    notice_ids.len() as i64 == n,
                    "the cloud has {} notices: {n} single-notice deliveries cannot be queued (a smaller --single)",
                    notice_ids.len()
                );
                tx.commit()?;
                Ok(max_id + notice_ids.len() as i64)
            }
            Tables::Postgres(c) => {
                let mut c = Tables::pg(c)?;
                let mut tx = c.transaction()?;
                let max_id: i64 = tx
                    .query_one("SELECT coalesce(max(id), 0) FROM deliveries", &[])?
                    .get(0);
                let added = tx.execute(
                    "INSERT INTO deliveries (id, subscription, purpose, notices, state, next_at, created_at)
                     SELECT $1 + row_number() OVER (ORDER BY id), 'sub_bench_' || tenant, 'notice',
                            ARRAY[id], 'pending', $3, $3
                     FROM (SELECT id, tenant FROM notices ORDER BY id LIMIT $2) s",
                    &[&max_id, &n, &due_ms],
                )?;
                anyhow::ensure!(
                    added as i64 == n,
                    "the cloud has {added} notices: {n} single-notice deliveries cannot be queued (a smaller --single)"
                );
                tx.commit()?;
                // What the store does after a commit of as many rows.
                c.batch_execute("ANALYZE deliveries")?;
                Ok(max_id + added as i64)
            }
        }
    }

    /// Settles PostgreSQL before a measured phase: vacuums the delivery
    /// and notice tables (what autovacuum does between bursts of work; the
    /// machine's server runs with it off), so the dead versions a phase
    /// leaves are not charged to the next, and runs a checkpoint, so every
    /// phase starts at the same point of the checkpoint cycle (the first
    /// change to a page after a checkpoint writes the whole page to the
    /// WAL; a checkpoint that fell in one phase and not in the other made
    /// the same build's figures differ by 20 % from run to run). Nothing
    /// to do on SQLite.
    pub(crate) fn settle(&self) -> anyhow::Result<()> {
        match self {
            Tables::Sqlite(_) => Ok(()),
            Tables::Postgres(c) => {
                // One statement each: several in one query string run as
                // one transaction, and VACUUM refuses to run in one.
                let mut c = Tables::pg(c)?;
                c.batch_execute("VACUUM ANALYZE deliveries, notices")?;
                c.batch_execute("CHECKPOINT")?;
                Ok(())
            }
        }
    }

    /// PostgreSQL's counters for this database (`pg_stat_database`):
    /// transactions committed, index and table pages read (shared buffer
    /// hits and reads), tuples fetched by index scans. `None` on SQLite.
    pub(crate) fn pg_counters(&self) -> anyhow::Result<Option<[i64; 3]>> {
        match self {
            Tables::Sqlite(_) => Ok(None),
            Tables::Postgres(c) => {
                let mut c = Tables::pg(c)?;
                // A transaction's statistics snapshot would repeat itself.
                c.batch_execute("SELECT pg_stat_clear_snapshot()")?;
                let r = c.query_one(
                    "SELECT xact_commit, blks_hit + blks_read, tup_fetched
                     FROM pg_stat_database WHERE datname = current_database()",
                    &[],
                )?;
                Ok(Some([r.get(0), r.get(1), r.get(2)]))
            }
        }
    }

    /// (id, created_at) of the `last` deliveries with the highest ids.
    pub(crate) fn last_deliveries(&self, last: i64) -> anyhow::Result<Vec<(i64, i64)>> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                let mut stmt = conn.prepare("SELECT id, created_at FROM deliveries WHERE id > (SELECT max(id) FROM deliveries) - ?1")?;
                Ok(stmt
                    .query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?)
            }
            Tables::Postgres(c) => Ok(Tables::pg(c)?
                .query(
                    "SELECT id, created_at FROM deliveries WHERE id > (SELECT max(id) FROM deliveries) - $1",
                    &[&last],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }

    /// Creation times of the notices `ids` (those that exist).
    fn notice_created(&self, ids: &[i64]) -> anyhow::Result<HashMap<i64, i64>> {
        match self {
            Tables::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db.join(patchline_store::DB_FILE))?;
                let mut stmt = conn.prepare("SELECT created_at FROM notices WHERE id = ?1")?;
                let mut out = HashMap::new();
                for &id in ids {
                    if let Ok(created) = stmt.query_row([id], |r| r.get::<_, i64>(0)) {
                        out.insert(id, created);
                    }
                }
                Ok(out)
            }
            Tables::Postgres(c) => Ok(Tables::pg(c)?
                .query(
                    "SELECT id, created_at FROM notices WHERE id = ANY($1)",
                    &[&ids],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }
}

/// Runs blocking database work off the runtime's threads (the PostgreSQL
/// client blocks on a runtime of its own).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// For the last `n` deliveries: from each one's creation to the arrival of
/// its webhook at the receiver, in ms (deliveries whose webhook the
/// receiver did not see are left out).
pub(crate) async fn webhook_latencies(
    tables: &Tables,
    st: &AppState,
    seen: &Seen,
    n: i64,
) -> anyhow::Result<Vec<i64>> {
    let rows = tables.off_thread(move |t| t.last_deliveries(n)).await?;
    let installation = st
        .engine
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .service()
        .installation
        .clone();
    let arrivals = seen.arrivals.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    Ok(rows
        .iter()
        .filter_map(|(id, at)| {
            arrivals
                .get(&patchline_engine::service::message_id(&installation, *id))
                .map(|arrived| arrived - at)
        })
        .collect())
}

pub(crate) async fn count_deliveries(tables: &Tables, state: &'static str) -> anyhow::Result<i64> {
    tables.off_thread(move |t| t.count_deliveries(state)).await
}

pub(crate) async fn wait_delivered(
    tables: &Tables,
    total: i64,
    bound: Duration,
) -> anyhow::Result<Duration> {
    wait_received_and_delivered(None, tables, total, bound).await
}

/// [`wait_delivered`], which first waits (with `seen`) until the receiver
/// has counted the given number of requests, looking at its counter every
/// millisecond, and only then counts the store's delivered rows. That
/// count reads the whole deliveries table; polled every 20 ms through a
/// timed phase, it took its share of the machine's two cores (the server
/// under test shares them) from what the phase measures, while the raw
/// client it is compared with is timed without it.
pub(crate) async fn wait_received_and_delivered(
    seen: Option<(&Seen, u64)>,
    tables: &Tables,
    total: i64,
    bound: Duration,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    if let Some((seen, received)) = seen {
        while seen.count.load(Ordering::Relaxed) < received && t.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    loop {
        let done = count_deliveries(tables, "delivered").await?;
        if done >= total {
            return Ok(t.elapsed());
        }
        if t.elapsed() > bound {
            anyhow::bail!("only {done} of {total} deliveries after {:?}", bound);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One webhook subscription per tenant (`sub_bench_<i>` to
/// `<url_base><i>`); answers how many.
pub(crate) fn subscribe_every_tenant(
    e: &mut patchline_server::Engine,
    url_base: &str,
) -> anyhow::Result<usize> {
    let tenants: Vec<_> = (0..e.catalog().tenants().len())
        .map(|i| patchline_core::TenantIdx(i as u32))
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        e.put_subscription(Subscription {
            id: format!("sub_bench_{i}"),
            tenant: *t,
            channel: Channel::Webhook {
                url: format!("{url_base}{i}"),
            },
            filter: Filter::default(),
            secrets: vec![SecretEntry {
                secret: patchline_webhook::Secret::generate().to_string(),
                not_after_ms: None,
            }],
            state: patchline_core::notice::SubscriptionState::Active,
            rate_per_s: 100_000,
            created_at_ms: now_ms(),
            // The delivery targets count per-artifact notices.
            grouping: patchline_core::notice::Grouping::Artifact,
            digest: None,
        })?;
    }
    Ok(tenants.len())
}

/// A private instance `id` launched from `parent` (an image and its
/// tenant), inheriting its inventory: one affected artifact more.
pub(crate) fn late_instance(parent: &(ArtifactId, TenantId), id: &str) -> BatchItem {
    BatchItem {
        location: String::new(),
        spec: ArtifactSpec {
            id: ArtifactId::new(id).expect("id"),
            kind: Kind::Instance,
            tenant: parent.1.clone(),
            name: None,
            parent: Some(parent.0.clone()),
            relation: None,
            visibility: Visibility::Private,
            labels: Default::default(),
            components: None,
            supersedes: None,
            fixes: vec![],
            warnings: Vec::new(),
        },
    }
}

/// Streams opened by the stream benchmark.
const SSE_STREAMS: usize = 10_000;

pub struct Figures {
    pub rows: Vec<(String, String, String)>,
}

/// The single-notice phases: `single` deliveries each, `repeat` signed
/// phases alternating with as many of the raw client.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub single: i64,
    pub repeat: usize,
}

/// Runs the service measurements on an imported catalog: in `data_dir`
/// (SQLite), or in the PostgreSQL database `postgres` when given (the
/// server then runs on it; `data_dir` only holds the stream benchmark's
/// files).
pub fn run(
    data_dir: &Path,
    postgres: Option<&str>,
    advisories_dir: &Path,
    all_bases: &str,
    phases: Phases,
) -> anyhow::Result<Figures> {
    let tables = match postgres {
        None => Tables::Sqlite(data_dir.to_path_buf()),
        Some(url) => Tables::Postgres(Arc::new(Mutex::new(postgres::Client::connect(
            url,
            postgres::NoTls,
        )?))),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // A clone kept here: if the run fails, its own is dropped inside the
    // runtime, where closing a PostgreSQL client panics (and would hide
    // the error); this one closes after the runtime returns.
    let _keep = tables.clone();
    rt.block_on(run_async(
        data_dir.to_path_buf(),
        postgres.map(str::to_string),
        tables,
        advisories_dir.to_path_buf(),
        all_bases.to_string(),
        phases,
    ))
}

async fn run_async(
    data_dir: PathBuf,
    postgres: Option<String>,
    tables: Tables,
    advisories_dir: PathBuf,
    all_bases: String,
    phases: Phases,
) -> anyhow::Result<Figures> {
    let mut rows = Vec::new();
    let mut row = |what: &str, value: String, note: String| {
        eprintln!("  {what}: {value} {note}");
        rows.push((what.to_string(), value, note));
    };
    let (addr, seen) = start_receiver()?;
    let mut config = Config::new(data_dir.clone());
    if let Some(url) = postgres {
        config.store = patchline_server::StoreBackend::Postgres { url };
    }
    config.webhook_policy = patchline_webhook::Policy::from_env_value(Some("127.0.0.0/8"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.per_endpoint_inflight_max = 64;
    config.reminder_interval_ms = i64::MAX / 4;
    let st: Arc<AppState> = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || open_state(c)).await??
    };

    // One webhook subscription per tenant.
    let t = Instant::now();
    let n_subs = {
        let st = st.clone();
        let url_base = format!("http://{addr}/hook/");
        tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            subscribe_every_tenant(&mut e, &url_base)
        })
        .await??
    };
    eprintln!(
        "  {n_subs} webhook subscriptions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Fan-out: publish the advisory that hits every base image.
    let record = osv::parse_json(&std::fs::read(
        advisories_dir.join(format!("{all_bases}.json")),
    )?)?;
    let adv = Advisory::compile(record)?;
    let t = Instant::now();
    {
        let st = st.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            e.publish_advisories(vec![(String::new(), adv)])?;
            let _ = e.take_created();
            Ok(())
        })
        .await??;
    }
    let d_fanout = t.elapsed();
    let (notices, deliveries): (i64, i64) = tables.off_thread(move |t| t.counts()).await?;
    row(
        "fan-out: one advisory, every notice and delivery durable (target ≤ 10 s for 1M)",
        format!("{:.2} s", d_fanout.as_secs_f64()),
        format!(
            "{notices} notices for {n_subs} tenants, {deliveries} webhook deliveries queued, in one transaction"
        ),
    );

    // What the same notices are as groups (made by that write).
    let roots = tables
        .off_thread(move |t| t.scalar("SELECT count(*) FROM notice_roots"))
        .await?;
    row(
        "fan-out: its notices grouped by root cause (tenant, record, top-most introduced_by, step)",
        format!("{roots}"),
        format!(
            "grouped notices made by that write: {:.0}× fewer than the {notices} per-artifact ones",
            notices as f64 / roots.max(1) as f64
        ),
    );

    // Deliver the fan-out.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let received_before = seen.count.load(Ordering::Relaxed);
    let worker = tokio::spawn(patchline_server::worker::run(st.clone(), stop_rx));
    st.wake.notify_one();
    let d = wait_received_and_delivered(
        Some((&seen, received_before + deliveries as u64)),
        &tables,
        deliveries,
        Duration::from_secs(600),
    )
    .await?;
    row(
        "fan-out delivered (batches of ≤ 100 notices per request)",
        format!("{:.2} s", d.as_secs_f64()),
        format!(
            "{:.0} requests/s, {:.0} notices/s",
            deliveries as f64 / d.as_secs_f64(),
            notices as f64 / d.as_secs_f64()
        ),
    );

    // A patched successor of the base with the most descendants: its
    // patch notices (and their deliveries) durable when the write answers.
    let (item, base, descendants) = {
        let e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let c = e.catalog();
        let (base, descendants) = c
            .roots()
            .map(|r| (r, c.subtree_counts(r).iter().sum::<u64>()))
            .max_by_key(|(_, n)| *n)
            .context("a base image")?;
        let mut spec = c.spec_of(base);
        let base_id = spec.id.clone();
        spec.id = ArtifactId::new(format!("{base_id}-patched"))?;
        spec.supersedes = Some(base_id.clone());
        // The patched image: the base without any package (it carries
        // nothing the all-bases advisory names).
        spec.components = Some(Vec::new());
        spec.warnings = Vec::new();
        let item = BatchItem {
            location: String::new(),
            spec,
        };
        (item, base_id, descendants)
    };
    let before_delivered = count_deliveries(&tables, "delivered").await?;
    let before_deliveries = tables.off_thread(move |t| t.counts()).await?.1;
    let t = Instant::now();
    {
        let st = st.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            e.apply_batch(vec![Ok(item)], Mode::Create, &Actor::Admin, &mut |_| {})?;
            let _ = e.take_created();
            Ok(())
        })
        .await??;
    }
    let d_patch = t.elapsed();
    st.wake.notify_one();
    let (patches, patch_deliveries) = tables
        .off_thread(move |t| {
            Ok((
                t.scalar("SELECT count(*) FROM patch_notices")?,
                t.scalar("SELECT count(*) FROM deliveries WHERE purpose = 'patch'")?,
            ))
        })
        .await?;
    let after_deliveries = tables.off_thread(move |t| t.counts()).await?.1;
    anyhow::ensure!(patches > 0, "the successor announced nothing");
    row(
        "successor of the widest base: its patch notices durable (target ≤ 2 s)",
        format!("{:.2} s", d_patch.as_secs_f64()),
        format!(
            "{base} has {descendants} descendants; {patches} patch notices (one per tenant and root cause), {patch_deliveries} deliveries, in the write's transaction"
        ),
    );
    wait_delivered(
        &tables,
        before_delivered + (after_deliveries - before_deliveries),
        Duration::from_secs(120),
    )
    .await?;

    // Throughput of single-notice deliveries, in phases alternating with
    // a raw HTTP client on the same receiver (same body size and
    // concurrency): the ratio is of the totals.
    let n_single = phases.single;
    let (mut d_signed, mut d_raw) = (Duration::ZERO, Duration::ZERO);
    let (mut received, mut per_phase) = (0, Vec::new());
    let body = vec![b'x'; 900];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{addr}/hook/raw");
    let raw_failed = Arc::new(AtomicU64::new(0));
    for phase in 0..phases.repeat {
        let base_delivered = count_deliveries(&tables, "delivered").await?;
        tables.off_thread(move |t| t.settle()).await?;
        let last_id = tables
            .off_thread(move |t| t.queue_single(n_single, now_ms() + 1000))
            .await?;
        // The engine's id counter must not collide with these rows.
        if let Ok(mut e) = st.engine.lock() {
            e.bump_delivery_ids(last_id + 1);
        }
        let seen_before = seen.count.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        eprintln!("  (signed phase {} begins)", phase + 1);
        st.wake.notify_one();
        let d = wait_received_and_delivered(
            Some((&seen, seen_before + n_single as u64)),
            &tables,
            base_delivered + n_single,
            Duration::from_secs(600),
        )
        .await?;
        d_signed += d;
        received += seen.count.load(Ordering::Relaxed) - seen_before;

        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let t = Instant::now();
        let mut handles = Vec::with_capacity(n_single as usize);
        for i in 0..n_single {
            let permit = sem.clone().acquire_owned().await?;
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let failed = raw_failed.clone();
            handles.push(tokio::spawn(async move {
                if client
                    .post(&url)
                    .header("webhook-id", format!("raw_{phase}_{i}"))
                    .body(body)
                    .send()
                    .await
                    .is_err()
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        let raw = t.elapsed();
        d_raw += raw;
        per_phase.push(format!("{:.2}", raw.as_secs_f64() / d.as_secs_f64()));
        eprintln!(
            "  (phase {}: signed {:.2} s, raw {:.2} s)",
            phase + 1,
            d.as_secs_f64(),
            raw.as_secs_f64()
        );
    }
    let total = n_single as f64 * phases.repeat as f64;
    let rate = total / d_signed.as_secs_f64();
    let raw_rate = total / d_raw.as_secs_f64();
    row(
        "signed webhook deliveries, one notice each, state durable (target ≥ 5,000/s)",
        format!("{rate:.0} requests/s"),
        format!(
            "{} phases of {n_single} deliveries in {:.2} s ({received} received); raw HTTP client on the same receiver, alternating: {raw_rate:.0} requests/s ({} failed), ratio {:.2} (per phase {})",
            phases.repeat,
            d_signed.as_secs_f64(),
            raw_failed.load(Ordering::Relaxed),
            rate / raw_rate,
            per_phase.join(", ")
        ),
    );

    // Latency at 1,000 notices/s: 10 late instances every 10 ms for 10 s.
    let parent = {
        let e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let c = e.catalog();
        c.nodes()
            .find(|(_, n)| n.kind == Kind::Image && n.parent.is_none() && !n.removed)
            .map(|(_, n)| (n.id.clone(), c.tenant_id(n.tenant).clone()))
            .context("a base image")?
    };
    let base_delivered = count_deliveries(&tables, "delivered").await?;
    let ticks = 5000;
    let per_tick = 1;
    let start = Instant::now();
    let mut created = 0i64;
    for tick in 0..ticks {
        let target = start + Duration::from_millis(tick as u64);
        tokio::time::sleep_until(target.into()).await;
        let st2 = st.clone();
        let parent = parent.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut e = st2.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let items: Vec<_> = (0..per_tick)
                .map(|k| Ok(late_instance(&parent, &format!("late-{tick}-{k}"))))
                .collect();
            e.apply_batch(items, Mode::Create, &Actor::Admin, &mut |_| {})?;
            let _ = e.take_created();
            Ok(())
        })
        .await??;
        st.wake.notify_one();
        created += per_tick;
    }
    let offered = created as f64 / start.elapsed().as_secs_f64();
    wait_delivered(&tables, base_delivered + created, Duration::from_secs(60)).await?;
    let latencies = {
        let mut l = webhook_latencies(&tables, &st, &seen, created).await?;
        l.sort_unstable();
        l
    };
    anyhow::ensure!(
        !latencies.is_empty(),
        "no late notice's webhook was matched to its delivery"
    );
    {
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        row(
            "latency, artifact created → webhook received, at 1,000 notices/s (target p50 ≤ 50 ms, p99 ≤ 250 ms)",
            format!("p50 {} ms, p99 {} ms", p(0.5), p(0.99)),
            format!(
                "{} notices offered at {offered:.0}/s, max {} ms",
                latencies.len(),
                p(1.0)
            ),
        );
    }
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let (value, note) = sse_bench(&st, &data_dir, &tables, SSE_STREAMS, 10).await?;
    // Closed on a blocking thread (the PostgreSQL clients block when they
    // close).
    blocking(move || {
        drop(st);
        drop(tables);
        Ok(())
    })
    .await?;
    row(
        "server-sent events: streams held, notice created → event received at 1,000 events/s (target 10,000 streams, p99 ≤ 250 ms)",
        value,
        note,
    );
    Ok(Figures { rows })
}

/// The child process of the stream benchmark: opens one server-sent event
/// stream per token, says `ready N` on standard output, records each
/// notice event's arrival for `seconds`, and writes `notice_id arrival_ms`
/// lines to `out`. A separate process, because the two ends of 10,000
/// connections do not fit in one process's file descriptors here.
pub fn sse_client(addr: &str, tokens_file: &Path, seconds: u64, out: &Path) -> anyhow::Result<()> {
    patchline_webhook::send::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tokens: Vec<String> = std::fs::read_to_string(tokens_file)?
            .lines()
            .map(str::to_string)
            .collect();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        let arrivals: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
        let connected = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::with_capacity(tokens.len());
        for token in tokens {
            let (client, arrivals, connected, gate) = (
                client.clone(),
                arrivals.clone(),
                connected.clone(),
                gate.clone(),
            );
            let url = format!("http://{addr}/v1/notices/stream?after=0");
            tasks.push(tokio::spawn(async move {
                let resp = {
                    let _permit = gate.acquire().await.ok()?;
                    client.get(&url).bearer_auth(&token).send().await.ok()?
                };
                if !resp.status().is_success() {
                    return None;
                }
                connected.fetch_add(1, Ordering::Relaxed);
                let mut resp = resp;
                let mut buf = String::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let at = now_ms();
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let event: String = buf.drain(..end + 2).collect();
                        if let Some(id) = event
                            .lines()
                            .find_map(|l| l.strip_prefix("id:"))
                            .and_then(|v| v.trim().parse::<i64>().ok())
                            && let Ok(mut a) = arrivals.lock()
                        {
                            a.push((id, at));
                        }
                    }
                }
                Some(())
            }));
        }
        // Wait (bounded) for every stream to be open.
        let t = Instant::now();
        while (connected.load(Ordering::Relaxed) as usize) < tasks.len()
            && t.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("ready {}", connected.load(Ordering::Relaxed));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let lines: String = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .iter()
            .map(|(id, at)| format!("{id} {at}\n"))
            .collect();
        std::fs::write(out, lines)?;
        println!("held {}", connected.load(Ordering::Relaxed));
        for t in tasks {
            t.abort();
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// Opens `streams` server-sent event streams (one per new tenant) from a
/// child process and measures, at 1,000 events/s, the delay from a notice's
/// creation to its arrival on the stream.
async fn sse_bench(
    st: &Arc<AppState>,
    data_dir: &Path,
    tables: &Tables,
    streams: usize,
    seconds: u64,
) -> anyhow::Result<(String, String)> {
    {
        // Tenants with tokens, and a public base image they can all launch from.
        let tokens_file = data_dir.join("sse-tokens.txt");
        let (base, tenants) = {
            let st = st.clone();
            let tokens_file = tokens_file.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                let base = e
                    .catalog()
                    .nodes()
                    .find(|(_, n)| {
                        n.kind == Kind::Image
                            && n.parent.is_none()
                            && n.visibility == Visibility::Public
                    })
                    .map(|(_, n)| n.id.clone())
                    .context("a public base image")?;
                let mut tokens = String::new();
                let mut tenants = Vec::with_capacity(streams);
                for i in 0..streams {
                    let id = TenantId::new(format!("sse-{i:05}"))?;
                    let token = format!("plt_bench_sse_{i}");
                    e.create_tenant(
                        &id,
                        &[],
                        &format!("tok_sse_{i}"),
                        &patchline_server::auth::hash_token(&token),
                    )?;
                    tokens.push_str(&token);
                    tokens.push('\n');
                    tenants.push(id);
                }
                std::fs::write(&tokens_file, tokens)?;
                Ok((base, tenants))
            })
            .await??
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server =
            tokio::spawn(axum::serve(listener, patchline_server::app(st.clone())).into_future());
        let out_file = data_dir.join("sse-arrivals.txt");
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--sse-client")
            .arg(addr.to_string())
            .arg(&tokens_file)
            .arg((seconds + 3).to_string())
            .arg(&out_file)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = lines.next_line().await?.unwrap_or_default();
        let held: usize = ready
            .strip_prefix("ready ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        eprintln!("  {held} streams open");
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        // 1,000 events/s, each one notice for one random stream's tenant.
        let start = Instant::now();
        let mut rng = crate::cloud::Rng::new(7);
        let total = seconds * 1000;
        for k in 0..total {
            tokio::time::sleep_until((start + Duration::from_millis(k)).into()).await;
            let tenant = tenants[rng.below(tenants.len())].clone();
            let (st2, base) = (st.clone(), base.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut e = st2.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                let spec = ArtifactSpec {
                    id: ArtifactId::new(format!("sse-vm-{k}"))?,
                    kind: Kind::Instance,
                    tenant,
                    name: None,
                    parent: Some(base),
                    relation: None,
                    visibility: Visibility::Private,
                    labels: Default::default(),
                    components: None,
                    supersedes: None,
                    fixes: vec![],
                    warnings: Vec::new(),
                };
                e.apply_batch(
                    [Ok(BatchItem {
                        location: String::new(),
                        spec,
                    })],
                    Mode::Create,
                    &Actor::Admin,
                    &mut |_| {},
                )?;
                let created = e.take_created();
                drop(e);
                publish_live(&st2, &created);
                Ok(())
            })
            .await??;
        }
        let offered = total as f64 / start.elapsed().as_secs_f64();
        let _ = child.wait().await;
        server.abort();
        let arrivals = std::fs::read_to_string(&out_file).unwrap_or_default();
        let received: Vec<(i64, i64)> = arrivals
            .lines()
            .filter_map(|line| {
                let mut it = line.split_whitespace();
                Some((
                    it.next().and_then(|v| v.parse::<i64>().ok())?,
                    it.next().and_then(|v| v.parse::<i64>().ok())?,
                ))
            })
            .collect();
        let ids: Vec<i64> = received.iter().map(|r| r.0).collect();
        let created = tables.off_thread(move |t| t.notice_created(&ids)).await?;
        let mut lat: Vec<i64> = received
            .iter()
            .filter_map(|(id, at)| created.get(id).map(|c| at - c))
            .collect();
        lat.sort_unstable();
        let p = |q: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
                .copied()
                .unwrap_or(-1)
        };
        Ok((
            format!("{held} streams held; p50 {} ms, p99 {} ms", p(0.5), p(0.99)),
            format!(
                "{} of {total} events received at {offered:.0} events/s, max {} ms; server resident memory with the streams open {:.0} MiB",
                lat.len(),
                p(1.0),
                rss_kib as f64 / 1024.0
            ),
        ))
    }
}

/// What `with_engine` does after a change, for code outside the handlers.
pub fn publish_live(st: &Arc<AppState>, created: &[(patchline_core::TenantIdx, i64)]) {
    if created.is_empty() {
        return;
    }
    st.wake.notify_one();
    // Under the engine's lock, as the handlers push.
    if let Ok(_engine) = st.engine.lock() {
        patchline_server::routes::push_live(st, created);
    }
}
