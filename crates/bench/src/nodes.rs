//! `patchline-bench --service --store postgres://… --bus nats://…
//! [--nodes N]`: a deployment of N nodes (default 3) on one PostgreSQL
//! database and one NATS server, each node a full service state with its
//! follower and its delivery workers, all in this process (sharing its
//! cores), against one local webhook receiver:
//! - fan-out made on node A: durable, then applied by the other nodes;
//! - signed single-notice deliveries: with node A's workers alone, then
//!   with every node's, on the same database (the coordination cost), with
//!   each node's share and the process's CPU time per 1,000 deliveries;
//! - the fan-out delivered by every node's workers;
//! - latency from an affected artifact created on node A to its webhook
//!   (the subscription made on node B; any node's worker may send it);
//! - how long a change committed on node A takes to be applied on the
//!   others.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use patchline_core::{Actor, Advisory, Kind, Mode};
use patchline_engine::now_ms;
use patchline_formats::osv;
use patchline_server::{AppState, BusSettings, Config, Engine, open_state};

use crate::service::{
    Figures, Tables, blocking, count_deliveries, late_instance, start_receiver,
    subscribe_every_tenant, wait_delivered, wait_received_and_delivered, webhook_latencies,
};

/// CPU time of this process so far (user + system), from `/proc`.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let utime: u64 = rest.get(11)?.parse().ok()?;
            let stime: u64 = rest.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Busy CPU time of the whole machine so far (every core, every process:
/// PostgreSQL and NATS too), from `/proc/stat`.
fn machine_cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?;
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal …: busy is
            // everything but idle and iowait.
            Some(f.iter().sum::<u64>() - f.get(3)? - f.get(4)?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// TCP connections this machine opened so far (`ActiveOpens` of
/// `/proc/net/snmp`): the webhook client's new connections to the receiver.
fn tcp_opens() -> u64 {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = s.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ActiveOpens")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` on node `st`'s engine as a request would: the write lock
/// released after it, its change announced, its notices handed over.
async fn write<T: Send + 'static>(
    st: &Arc<AppState>,
    f: impl FnOnce(&mut Engine) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let st = st.clone();
    blocking(move || {
        let mut e = st.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let out = f(&mut e);
        e.end_write();
        st.applied.send_replace(e.applied_seq());
        let created = e.take_created();
        let remote = e.take_remote_deliveries();
        let service = e.take_remote_service();
        patchline_server::follow::hand_over(&st, &created, remote, service);
        out
    })
    .await
}

/// Deliveries that warm the other nodes' workers up before the phase in
/// which every node delivers.
const WARM_UP: i64 = 3_000;

fn percentiles(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    (p(0.5), p(0.99), p(1.0))
}

/// The deployment measured and its single-notice phases.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Nodes in the deployment (at least 2).
    pub nodes: usize,
    /// Deliveries each single-notice phase queues.
    pub single: i64,
    /// Phases of each kind (node A alone, every node), alternating.
    pub repeat: usize,
}

pub fn run(
    postgres: &str,
    bus: &str,
    shape: Shape,
    data_dir: &std::path::Path,
    advisories_dir: &std::path::Path,
    all_bases: &str,
) -> anyhow::Result<Figures> {
    let tables = Tables::Postgres(Arc::new(std::sync::Mutex::new(postgres::Client::connect(
        postgres,
        postgres::NoTls,
    )?)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // A clone kept here: if the run fails, its own is dropped inside the
    // runtime, where closing a PostgreSQL client panics (and would hide
    // the error); this one closes after the runtime returns.
    let _keep = tables.clone();
    rt.block_on(run_async(
        postgres.to_string(),
        bus.to_string(),
        Shape {
            nodes: shape.nodes.max(2),
            ..shape
        },
        data_dir.to_path_buf(),
        tables,
        advisories_dir.to_path_buf(),
        all_bases.to_string(),
    ))
}

async fn run_async(
    postgres: String,
    bus: String,
    shape: Shape,
    data_dir: std::path::PathBuf,
    tables: Tables,
    advisories_dir: std::path::PathBuf,
    all_bases: String,
) -> anyhow::Result<Figures> {
    let Shape {
        nodes: n_nodes,
        single: n_single,
        repeat,
    } = shape;
    let mut rows = Vec::new();
    let mut row = |what: &str, value: String, note: String| {
        eprintln!("  {what}: {value} {note}");
        rows.push((what.to_string(), value, note));
    };
    let (addr, seen) = start_receiver()?;
    let prefix = format!("bench{}", std::process::id());
    let mut nodes: Vec<Arc<AppState>> = Vec::new();
    for i in 0..n_nodes {
        let mut config = Config::new(data_dir.join(format!("node-{i}")));
        config.store = patchline_server::StoreBackend::Postgres {
            url: postgres.clone(),
        };
        config.bus = Some(BusSettings {
            url: bus.clone(),
            prefix: prefix.clone(),
        });
        config.webhook_policy = patchline_webhook::Policy::from_env_value(Some("127.0.0.0/8"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        config.per_endpoint_inflight_max = 64;
        config.reminder_interval_ms = i64::MAX / 4;
        let st = tokio::task::spawn_blocking(move || open_state(config)).await??;
        nodes.push(st);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for st in &nodes {
        tasks.push(tokio::spawn(patchline_server::follow::run(
            st.clone(),
            stop_rx.clone(),
        )));
    }
    let t = Instant::now();
    while !nodes
        .iter()
        .all(|st| st.bus_connected.load(Ordering::Relaxed))
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(20),
            "the nodes did not connect to the bus"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = (nodes[0].clone(), nodes[1].clone());

    // One webhook subscription per tenant, made on node B.
    let url_base = format!("http://{addr}/hook/");
    let n_subs = write(&b, move |e| subscribe_every_tenant(e, &url_base)).await?;

    // Fan-out made on node A; the others apply it.
    let record = osv::parse_json(&std::fs::read(
        advisories_dir.join(format!("{all_bases}.json")),
    )?)?;
    let adv = Advisory::compile(record)?;
    let t = Instant::now();
    write(&a, move |e| {
        e.publish_advisories(vec![(String::new(), adv)])?;
        Ok(())
    })
    .await?;
    let d_fanout = t.elapsed();
    let seq = *a.applied.borrow();
    for st in &nodes[1..] {
        let mut applied = st.applied.subscribe();
        tokio::time::timeout(Duration::from_secs(120), applied.wait_for(|s| *s >= seq))
            .await
            .context("a node did not apply the fan-out")??;
    }
    let d_applied = t.elapsed();
    let (notices, deliveries) = tables.off_thread(move |t| t.counts()).await?;
    row(
        "fan-out made on node A, durable in PostgreSQL (target ≤ 30 s for 1M)",
        format!("{:.2} s", d_fanout.as_secs_f64()),
        format!(
            "{notices} notices for {n_subs} tenants, {deliveries} deliveries; applied by the {} other nodes {:.2} s after the publish began",
            n_nodes - 1,
            d_applied.as_secs_f64()
        ),
    );

    // Single-notice signed deliveries: node A's workers alone, then every
    // node's. Each phase queues its own deliveries, due now.
    let start_worker = |st: &Arc<AppState>| {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (
            tx,
            tokio::spawn(patchline_server::worker::run(st.clone(), rx)),
        )
    };
    let mut worker_stops = vec![start_worker(&a)];
    // The fan-out's deliveries first (by A alone), so that the phases
    // below measure only their own.
    a.wake.notify_one();
    wait_delivered(&tables, deliveries, Duration::from_secs(900)).await?;
    anyhow::ensure!(
        n_single <= notices,
        "--single {n_single} is more than the fan-out's {notices} notices (each phase sends that many of them again)"
    );
    // The two kinds of phase alternate, `repeat` times each: the same
    // build's figures drift by up to 20 % from one run to the next (and
    // within a run), so each kind is measured at several moments and the
    // ratio compares their totals.
    let mut totals = [(0i64, Duration::ZERO); 2];
    for phase in 0..2 * repeat {
        let every = phase % 2 == 1;
        if every {
            for st in &nodes[1..] {
                worker_stops.push(start_worker(st));
            }
            // The other nodes' workers warm up first, as node A's did on
            // the fan-out: each opens its queue's connection, prepares its
            // statements and connects to the receiver (a few hundred TCP
            // connections) on a warm-up batch that is not measured.
            let base = count_deliveries(&tables, "delivered").await?;
            let warm = WARM_UP.min(n_single);
            tables
                .off_thread(move |t| t.queue_single(warm, now_ms()))
                .await?;
            for st in &nodes {
                st.wake.notify_one();
            }
            wait_delivered(&tables, base + warm, Duration::from_secs(120)).await?;
        }
        let before: Vec<u64> = nodes
            .iter()
            .map(|st| st.metrics.webhook_delivered_total.load(Ordering::Relaxed))
            .collect();
        // Rounds of every node's worker so far.
        let rounds_now = || -> u64 {
            nodes
                .iter()
                .map(|st| st.metrics.delivery_rounds_total.load(Ordering::Relaxed))
                .sum()
        };
        let rounds_before = rounds_now();
        let base = count_deliveries(&tables, "delivered").await?;
        tables.off_thread(move |t| t.settle()).await?;
        // The receiver's count is watched first (as the one-node
        // benchmark does): counting `delivered` rows scans the table, and
        // doing it every 20 ms through the phase took PostgreSQL CPU from
        // the nodes measured, more in the second phase (a larger table).
        // It is read before the deliveries are queued: a worker whose idle
        // poll ends just after the commit sends some before it is woken.
        let seen_before = seen.count.load(Ordering::Relaxed);
        tables
            .off_thread(move |t| t.queue_single(n_single, now_ms()))
            .await?;
        eprintln!("  (single-notice phase {} begins)", phase + 1);
        let counters = tables.off_thread(move |t| t.pg_counters()).await?;
        let cpu = cpu_time();
        let machine = machine_cpu_time();
        let opens = tcp_opens();
        for st in &nodes {
            st.wake.notify_one();
        }
        let d = wait_received_and_delivered(
            Some((&seen, seen_before + n_single as u64)),
            &tables,
            base + n_single,
            Duration::from_secs(600),
        )
        .await?;
        let cpu = cpu_time().saturating_sub(cpu);
        let machine = machine_cpu_time().saturating_sub(machine);
        let opens = tcp_opens().saturating_sub(opens);
        // The statistics collector reports a backend's counts when its
        // transaction ends, at most every 10 ms (PostgreSQL 15).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let counters_after = tables.off_thread(move |t| t.pg_counters()).await?;
        let thousands = n_single as f64 / 1000.0;
        let pg = match (counters, counters_after) {
            (Some(b), Some(a)) => {
                let per = |i: usize| (a[i] - b[i]) as f64 / thousands;
                format!(
                    "; PostgreSQL per 1,000 deliveries: {:.0} transactions, {:.0} pages read, {:.0} tuples fetched",
                    per(0),
                    per(1),
                    per(2)
                )
            }
            _ => String::new(),
        };
        let shares: Vec<u64> = nodes
            .iter()
            .zip(&before)
            .map(|(st, b)| st.metrics.webhook_delivered_total.load(Ordering::Relaxed) - b)
            .collect();
        let rounds = rounds_now() - rounds_before;
        let rate = n_single as f64 / d.as_secs_f64();
        let total = &mut totals[usize::from(every)];
        total.0 += n_single;
        total.1 += d;
        if every {
            // The other nodes stop until the next such phase.
            for (tx, task) in worker_stops.drain(1..) {
                let _ = tx.send(true);
                let _ = task.await;
            }
        }
        let who = if !every {
            "node A's workers alone".to_string()
        } else {
            format!("the workers of all {n_nodes} nodes")
        };
        row(
            &format!("signed single-notice deliveries, {who}"),
            format!("{rate:.0} requests/s"),
            format!(
                "{n_single} in {:.2} s; sent per node {shares:?}; {rounds} worker rounds ({:.0} deliveries a round); CPU per 1,000 deliveries: process {:.1} ms, machine {:.1} ms; {opens} TCP connections opened{pg}",
                d.as_secs_f64(),
                n_single as f64 / rounds.max(1) as f64,
                cpu.as_secs_f64() * 1000.0 / thousands,
                machine.as_secs_f64() * 1000.0 / thousands
            ),
        );
    }
    // Every node's workers for what follows.
    for st in &nodes[1..] {
        worker_stops.push(start_worker(st));
    }
    let rate = |(n, d): (i64, Duration)| n as f64 / d.as_secs_f64();
    row(
        &format!("{n_nodes} nodes against one (target ≥ 0.9×)"),
        format!("{:.2}×", rate(totals[1]) / rate(totals[0])),
        format!(
            "{:.0} against {:.0} requests/s over {repeat} phases of each, alternating; same database, same receiver, one process on this machine's cores",
            rate(totals[1]),
            rate(totals[0])
        ),
    );

    // Latency across nodes: instances created on node A at 100/s; the
    // subscriptions were made on node B; any node's worker sends.
    let parent = {
        let e = a.engine.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let c = e.catalog();
        c.nodes()
            .find(|(_, n)| n.kind == Kind::Image && n.parent.is_none() && !n.removed)
            .map(|(_, n)| (n.id.clone(), c.tenant_id(n.tenant).clone()))
            .context("a base image")?
    };
    let base = count_deliveries(&tables, "delivered").await?;
    let samples = 1000;
    let mut visible_ms: Vec<u64> = Vec::new();
    let start = Instant::now();
    for i in 0..samples {
        tokio::time::sleep_until((start + Duration::from_millis(10 * i as u64)).into()).await;
        let parent = parent.clone();
        write(&a, move |e| {
            let item = late_instance(&parent, &format!("late-node-{i}"));
            e.apply_batch(vec![Ok(item)], Mode::Create, &Actor::Admin, &mut |_| {})?;
            Ok(())
        })
        .await?;
        // Every 10th change: how long until every other node applied it.
        if i % 10 == 0 {
            let committed = Instant::now();
            let seq = *a.applied.borrow();
            for st in &nodes[1..] {
                let mut applied = st.applied.subscribe();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), applied.wait_for(|s| *s >= seq))
                        .await;
            }
            visible_ms.push(committed.elapsed().as_millis() as u64);
        }
    }
    wait_delivered(&tables, base + samples, Duration::from_secs(60)).await?;
    let latencies: Vec<u64> = webhook_latencies(&tables, &a, &seen, samples)
        .await?
        .into_iter()
        .map(|l| l.max(0) as u64)
        .collect();
    anyhow::ensure!(
        !latencies.is_empty(),
        "no late notice's webhook was matched"
    );
    let (p50, p99, max) = percentiles(latencies.clone());
    row(
        "latency, artifact created on node A → webhook received, subscription made on node B (target p99 ≤ 250 ms)",
        format!("p50 {p50} ms, p99 {p99} ms"),
        format!("{} notices at 100/s, max {max} ms", latencies.len()),
    );
    let (p50, p99, max) = percentiles(visible_ms.clone());
    row(
        &format!(
            "a change committed on node A applied by the {} other nodes (target p99 ≤ 1 s)",
            n_nodes - 1
        ),
        format!("p50 {p50} ms, p99 {p99} ms"),
        format!("{} changes, max {max} ms", visible_ms.len()),
    );

    for (tx, task) in worker_stops {
        let _ = tx.send(true);
        let _ = task.await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // The streams of this run's prefix go with it.
    if let Ok(bus) = patchline_bus::Bus::connect(patchline_bus::BusConfig::new(
        bus.clone(),
        patchline_bus::BusPrefix::new(&prefix).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
    .await
    {
        let _ = bus.delete_streams().await;
    }
    blocking(move || {
        drop(nodes);
        drop(a);
        drop(b);
        drop(tables);
        Ok(())
    })
    .await?;
    Ok(Figures { rows })
}
