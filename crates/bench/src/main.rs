//! `patchline-bench --size S|M`: generates a reference cloud over real
//! package data, imports it through the same code paths as `patchline
//! import`, and measures, in the same run, patchline against the baselines
//! (a naive rescan of every artifact's flattened inventory, and a SQLite
//! recursive-CTE descendant query). Release builds only mean anything.

mod cloud;
mod durability;
mod nodes;
mod pgbench;
mod scanbench;
mod service;

/// The allocator of the `patchline` binary, so the service measured here
/// runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use patchline_core::propagate::{self, entry_hit};
use patchline_core::{
    Actor, AdvIdx, Advisory, ArtIdx, ArtifactId, ArtifactSpec, Catalog, Kind, Mode, Record,
    TenantId, Visibility,
};
use patchline_engine::Engine;
use patchline_formats::osv;

struct Args {
    size: cloud::Size,
    dir: PathBuf,
    seed: u64,
    keep: bool,
    reuse: bool,
    service: bool,
    /// `--store postgres://…`: the service benchmark on PostgreSQL, in a
    /// fresh database made on that URL's server.
    store: Option<String>,
    /// `--bus nats://…`: the service benchmark of a deployment of
    /// `nodes` nodes on the `--store` database.
    bus: Option<String>,
    nodes: usize,
    /// `--single N`: deliveries each single-notice phase queues (of the
    /// deployment benchmark, or of one node: signed, then the raw client).
    single: Option<i64>,
    /// `--repeat N`: how many phases of each kind (one node and every
    /// node; for one node, signed and raw), alternating.
    repeat: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut size = cloud::Size::S;
    let mut dir = std::env::temp_dir().join("patchline-bench");
    let mut seed = 42;
    let mut keep = false;
    let mut reuse = false;
    let mut service = false;
    let mut store = None;
    let mut bus = None;
    let mut nodes = 3;
    let mut single = None;
    let mut repeat = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => {
                let v = args.next().context("--size needs S or M")?;
                size = cloud::Size::parse(&v).context("--size is S or M")?;
            }
            "--dir" => dir = PathBuf::from(args.next().context("--dir needs a path")?),
            "--seed" => seed = args.next().context("--seed needs a number")?.parse()?,
            "--keep" => keep = true,
            "--service" => service = true,
            "--store" => {
                let url = args.next().context("--store needs a postgres:// URL")?;
                patchline_store::postgres::check_url(&url)
                    .map_err(|e| anyhow::anyhow!("--store {e}"))?;
                store = Some(url);
            }
            "--bus" => {
                let url = args.next().context("--bus needs a nats:// URL")?;
                patchline_bus::check_url(&url).map_err(|e| anyhow::anyhow!("--bus {e}"))?;
                bus = Some(url);
            }
            "--nodes" => {
                nodes = args.next().context("--nodes needs a number")?.parse()?;
                anyhow::ensure!((2..=16).contains(&nodes), "--nodes is 2 to 16");
            }
            "--single" => {
                let n: i64 = args.next().context("--single needs a number")?.parse()?;
                anyhow::ensure!(
                    (1_000..=1_000_000).contains(&n),
                    "--single is 1000 to 1000000"
                );
                single = Some(n);
            }
            "--repeat" => {
                let n: usize = args.next().context("--repeat needs a number")?.parse()?;
                anyhow::ensure!((1..=20).contains(&n), "--repeat is 1 to 20");
                repeat = Some(n);
            }
            "--reuse" => {
                reuse = true;
                keep = true;
            }
            "-h" | "--help" => {
                println!(
                    "patchline-bench [--size S|M] [--dir DIR] [--seed N] [--keep] [--reuse] [--service [--single N] [--repeat N] [--store postgres://USER@HOST:PORT/DB [--bus nats://HOST:PORT [--nodes N]]]]"
                );
                println!("  --keep   keep the generated files and database");
                println!(
                    "  --store  the service benchmark on PostgreSQL: a fresh database made on that server (dropped afterwards unless --keep)"
                );
                println!(
                    "  --bus    a deployment of --nodes nodes (default 3) on the --store database, this NATS as its bus"
                );
                println!("  --single deliveries each single-notice phase queues (default 20000)");
                println!(
                    "  --repeat phases of each kind, alternating: signed and raw client (one node, default 1), node A alone and every node (--bus, default 3)"
                );
                println!(
                    "  --reuse  measure the queries on a kept database (no generation, no import)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        size,
        dir,
        seed,
        keep,
        reuse,
        service,
        store,
        bus,
        nodes,
        single,
        repeat,
    })
}

/// Reads a `/proc/self/status` field in KiB.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median of `runs` timings of `f`.
fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        last = Some(out);
    }
    times.sort();
    (times[times.len() / 2], last.expect("runs > 0"))
}

struct Row {
    what: String,
    value: String,
    note: String,
}

fn row(rows: &mut Vec<Row>, what: &str, value: String, note: &str) {
    eprintln!("  {what}: {value} {note}");
    rows.push(Row {
        what: what.into(),
        value,
        note: note.into(),
    });
}

fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("--scan") {
        let dir = std::env::temp_dir().join("patchline-scan-bench");
        let rows = scanbench::run_scan_bench(&dir)?;
        println!("\n| scan | | |\n|---|---|---|");
        for (what, value, note) in rows {
            println!("| {what} | {value} | {note} |");
        }
        std::fs::remove_dir_all(&dir).ok();
        return Ok(());
    }
    if raw.get(1).map(String::as_str) == Some("--durability") {
        let dir = std::env::temp_dir().join("patchline-durability-bench");
        let rows = durability::run(&dir)?;
        println!("\n| durability | | |\n|---|---|---|");
        for (what, value, note) in rows {
            println!("| {what} | {value} | {note} |");
        }
        return Ok(());
    }
    if raw.get(1).map(String::as_str) == Some("--sse-client") && raw.len() == 6 {
        return service::sse_client(
            &raw[2],
            std::path::Path::new(&raw[3]),
            raw[4].parse()?,
            std::path::Path::new(&raw[5]),
        );
    }
    let args = parse_args()?;
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with `cargo run --release -p patchline-bench`");
    }
    let size = args.size;
    let mut rows = Vec::new();
    let data_dir = args.dir.join(format!("data-{}", size.name));
    if args.store.is_some() && !args.service {
        bail!("--store is for the service benchmark (--service)");
    }
    if args.bus.is_some() && args.store.is_none() {
        bail!("--bus is for the service benchmark on PostgreSQL (--service --store …)");
    }
    if args.service {
        let scratch = match &args.store {
            Some(url) => Some(pgbench::Scratch::create(url)?),
            None => None,
        };
        let outcome = (|| -> anyhow::Result<_> {
            let pg = scratch.as_ref().map(|s| s.url.as_str());
            let (all_bases, advisories_dir) =
                generate_and_import(&args, &data_dir, pg, &mut rows, false)?;
            let settings = pg.map(pgbench::settings).transpose()?;
            let figures = match (pg, &args.bus) {
                (Some(pg), Some(bus)) => nodes::run(
                    pg,
                    bus,
                    nodes::Shape {
                        nodes: args.nodes,
                        single: args.single.unwrap_or(20_000),
                        repeat: args.repeat.unwrap_or(3),
                    },
                    &data_dir,
                    &advisories_dir,
                    &all_bases,
                )?,
                _ => service::run(
                    &data_dir,
                    pg,
                    &advisories_dir,
                    &all_bases,
                    service::Phases {
                        single: args.single.unwrap_or(20_000),
                        repeat: args.repeat.unwrap_or(1),
                    },
                )?,
            };
            Ok((settings, figures))
        })();
        if let Some(scratch) = scratch {
            scratch.finish(args.keep);
        }
        let (settings, figures) = outcome?;
        match &settings {
            None => println!("\n| {} cloud, service | | |\n|---|---|---|", size.name),
            Some(settings) => {
                let deployment = match &args.bus {
                    Some(_) => format!(", {} nodes on one bus", args.nodes),
                    None => String::new(),
                };
                println!(
                    "\n| {} cloud, service on PostgreSQL{deployment} | | |\n|---|---|---|",
                    size.name
                );
                println!("| PostgreSQL | {settings} | |");
            }
        }
        for r in &rows {
            println!("| {} | {} | {} |", r.what, r.value, r.note);
        }
        for (what, value, note) in figures.rows {
            println!("| {what} | {value} | {note} |");
        }
        if !args.keep {
            std::fs::remove_dir_all(&args.dir).ok();
        }
        return Ok(());
    }
    let all_bases_advisory = if args.reuse && data_dir.exists() {
        eprintln!("reusing {}", data_dir.display());
        cloud::ALL_BASES_ADVISORY.to_string()
    } else {
        generate_and_import(&args, &data_dir, None, &mut rows, true)?.0
    };
    let db_path = data_dir.join(patchline_store::DB_FILE);
    {
        let conn = rusqlite::Connection::open(&db_path)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    let db_bytes = std::fs::metadata(&db_path)?.len();
    row(
        &mut rows,
        "database size (target ≤ 1 GiB)",
        format!("{:.0} MiB", db_bytes as f64 / 1048576.0),
        "after a WAL checkpoint",
    );

    // A fresh process's view: load from disk.
    let rss_before = proc_status_kib("VmRSS");
    let t = Instant::now();
    let mut engine = Engine::open(&data_dir)?;
    let load = t.elapsed();
    let rss_loaded = proc_status_kib("VmRSS");
    row(
        &mut rows,
        "load catalog and advisories from SQLite",
        format!("{:.2} s", load.as_secs_f64()),
        "start-up of any command",
    );
    row(
        &mut rows,
        "resident memory (target ≤ 2 GiB)",
        format!("{:.0} MiB", mib(rss_loaded)),
        &format!(
            "after loading ({:.0} MiB held by the loaded state); peak of the whole run so far {:.0} MiB",
            mib(rss_loaded.saturating_sub(rss_before)),
            mib(proc_status_kib("VmHWM"))
        ),
    );
    let t = Instant::now();
    engine.prepare();
    row(
        &mut rows,
        "inheritance table build",
        format!("{:.1} ms", ms(t.elapsed())),
        "once per catalog change, before impacts",
    );

    // Impact of the advisory hitting every base image.
    let adv = engine.lookup_record(&all_bases_advisory)?;
    let (d_groups, _) = median_time(7, || engine.impact(adv).groups.len());
    row(
        &mut rows,
        "impact of one advisory hitting every base image, as groups",
        format!("{:.2} ms", ms(d_groups)),
        "affected holders with their hits, each sharing a slice of inheritors",
    );
    // The full affected set: every (artifact, hits) pair listed.
    let (d_impact, count) = median_time(7, || {
        let impact = engine.impact(adv);
        let mut all = Vec::with_capacity(impact.artifact_count());
        all.extend(impact.iter());
        all.len()
    });
    row(
        &mut rows,
        "impact of one advisory hitting every base image (target ≤ 200 ms)",
        format!("{:.2} ms", ms(d_impact)),
        &format!("{count} affected artifacts listed with their hits, median of 7"),
    );
    let (d_cold, _) = median_time(3, || {
        let inh = patchline_core::Inheritance::build(engine.catalog());
        let impact = propagate::impact(engine.catalog(), &inh, engine.db(), adv);
        let mut all = Vec::with_capacity(impact.artifact_count());
        all.extend(impact.iter());
        all.len()
    });
    row(
        &mut rows,
        "the same, cold: inheritance table built first",
        format!("{:.2} ms", ms(d_cold)),
        "what the first question after a catalog change costs",
    );
    let expected: HashSet<ArtIdx> = engine.impact(adv).iter().map(|(a, _)| a).collect();

    // Baseline 1: naive rescan: flatten every artifact's inventory, match.
    let t = Instant::now();
    let naive = naive_rescan(engine.catalog(), engine.db(), adv);
    let d_naive = t.elapsed();
    if naive != expected {
        bail!(
            "naive rescan disagrees: {} vs {}",
            naive.len(),
            expected.len()
        );
    }
    row(
        &mut rows,
        "baseline: naive rescan of every artifact (same answer)",
        format!("{:.0} ms", ms(d_naive)),
        &format!(
            "patchline is {:.0}× faster (target ≥ 100×)",
            d_naive.as_secs_f64() / d_impact.as_secs_f64()
        ),
    );

    // Baseline 2: recursive CTE expanding the affected holders.
    let holders: Vec<i64> = engine
        .impact(adv)
        .groups
        .iter()
        .map(|g| i64::from(g.members[0].0))
        .collect();
    let conn = rusqlite::Connection::open(&db_path)?;
    conn.execute_batch("CREATE TEMP TABLE holders (idx INTEGER PRIMARY KEY);")?;
    {
        let mut stmt = conn.prepare("INSERT INTO holders (idx) VALUES (?1)")?;
        for h in &holders {
            stmt.execute([h])?;
        }
    }
    let cte = "WITH RECURSIVE affected(idx) AS (
                 SELECT idx FROM holders
                 UNION ALL
                 SELECT a.idx FROM artifacts a JOIN affected ON a.parent = affected.idx
                 WHERE a.inventory IS NULL AND a.removed = 0)
               SELECT count(*) FROM affected";
    let (d_cte, cte_count) = median_time(3, || -> i64 {
        conn.query_row(cte, [], |r| r.get(0)).unwrap_or(-1)
    });
    if cte_count as usize != expected.len() {
        bail!("recursive CTE disagrees: {cte_count} vs {}", expected.len());
    }
    row(
        &mut rows,
        "baseline: SQLite recursive CTE over the same holders (same answer)",
        format!("{:.0} ms", ms(d_cte)),
        &format!(
            "patchline is {:.0}× faster (target ≥ 50×); the CTE is given the affected holders for free",
            d_cte.as_secs_f64() / d_impact.as_secs_f64()
        ),
    );

    remedy_rows(&mut engine, adv, &mut rows);
    remedy_request_rows(&mut engine, adv, &mut rows);

    // Re-match every advisory.
    let ids: Vec<AdvIdx> = engine.db().iter().map(|(i, _)| i).collect();
    let t = Instant::now();
    let mut pairs = 0usize;
    let mut touching = 0usize;
    for &a in &ids {
        let n = engine.impact(a).artifact_count();
        pairs += n;
        touching += usize::from(n > 0);
    }
    let d_all = t.elapsed();
    row(
        &mut rows,
        "re-match all advisories (target ≤ 30 s)",
        format!("{:.2} s", d_all.as_secs_f64()),
        &format!(
            "{} advisories, {touching} affect something, {pairs} (artifact, advisory) pairs",
            ids.len()
        ),
    );

    // New instances checked against every open advisory.
    let parents: Vec<ArtIdx> = engine
        .catalog()
        .nodes()
        .filter(|(_, n)| n.kind == Kind::Replica)
        .map(|(i, _)| i)
        .take(10_000)
        .collect();
    let mut catalog_times = Vec::with_capacity(parents.len());
    let mut check_times = Vec::with_capacity(parents.len());
    let mut matched = 0usize;
    let (catalog, db) = engine_parts(&mut engine);
    let cp = catalog.checkpoint();
    // The cache a running engine keeps (warm after the first artifacts).
    let mut cache = propagate::MatchCache::new();
    for (i, &p) in parents.iter().enumerate() {
        let spec = ArtifactSpec {
            id: ArtifactId::new(format!("bench-new-{i}"))?,
            kind: Kind::Instance,
            tenant: TenantId::new("bench")?,
            name: None,
            parent: Some(catalog.node(p).id.clone()),
            relation: None,
            visibility: Visibility::Private,
            labels: Default::default(),
            components: None,
            supersedes: None,
            fixes: vec![],
            warnings: Vec::new(),
        };
        let t = Instant::now();
        let idx = catalog.apply(&spec, Mode::Create, &Actor::Admin)?.idx();
        let created = Instant::now();
        let m = propagate::check_artifact_cached(catalog, db, idx, &mut cache);
        catalog_times.push(t.elapsed());
        check_times.push(created.elapsed());
        matched += m.len();
    }
    catalog.rollback(cp);
    catalog_times.sort();
    check_times.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    row(
        &mut rows,
        "new instance: check against all open advisories (target p99 ≤ 1 ms)",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms",
            ms(pct(&check_times, 0.5)),
            ms(pct(&check_times, 0.99))
        ),
        &format!(
            "{} new instances under distinct replicas, {:.0} matches each on average, max {:.3} ms",
            parents.len(),
            matched as f64 / parents.len() as f64,
            ms(pct(&check_times, 1.0))
        ),
    );
    row(
        &mut rows,
        "new instance: create in the catalog + check",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms",
            ms(pct(&catalog_times, 0.5)),
            ms(pct(&catalog_times, 0.99))
        ),
        &format!("max {:.3} ms", ms(pct(&catalog_times, 1.0))),
    );

    println!(
        "\n| {} cloud: {} images, {} templates, {} replicas, {} instances, {} tenants, {} advisories | | |",
        size.name,
        size.images,
        size.templates,
        size.replicas,
        size.instances,
        size.tenants,
        size.advisories
    );
    println!("|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, r.value, r.note);
    }
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).ok();
    }
    Ok(())
}

/// Splits the engine for the mutable catalog and the advisory database.
/// Remedy plans of the all-bases advisory: every tenant's, one tenant's
/// (the one with the most affected artifacts), the ranking, and what a
/// successor of the base with the most descendants would clear; and how
/// many notices grouping by (tenant, root cause, step) would send against
/// one per affected artifact.
fn remedy_rows(engine: &mut Engine, adv: AdvIdx, rows: &mut Vec<Row>) {
    use patchline_core::remedy::{self, PlanFor};
    let catalog = engine.catalog();
    let impact = engine.impact(adv);
    let affected = impact.artifact_count();
    let (d_all, steps) = median_time(5, || {
        let impact = engine.impact(adv);
        remedy::plan(catalog, &impact, PlanFor::All, &Actor::Admin)
    });
    let (d_plan_only, _) = median_time(5, || {
        remedy::plan(catalog, &impact, PlanFor::All, &Actor::Admin).len()
    });
    row(
        rows,
        "remedy plan of every tenant, all-bases advisory (target ≤ 200 ms)",
        format!("{:.1} ms", ms(d_all)),
        &format!(
            "{} steps for {affected} affected artifacts, impact included ({:.1} ms given the impact), median of 5",
            steps.len(),
            ms(d_plan_only)
        ),
    );
    let mut per_tenant: HashMap<patchline_core::TenantIdx, usize> = HashMap::new();
    for (a, _) in impact.iter() {
        *per_tenant.entry(catalog.node(a).tenant).or_default() += 1;
    }
    if let Some((&busiest, &n)) = per_tenant.iter().max_by_key(|(_, n)| **n) {
        let viewer = Actor::Tenant(catalog.tenant_id(busiest).clone());
        // The first question about one tenant indexes the impact by owner
        // (kept with it); every plan after it reads the tenant's own.
        let mut index_times: Vec<Duration> = (0..5)
            .map(|_| {
                let fresh = propagate::Impact::new(impact.groups.clone());
                let t = Instant::now();
                std::hint::black_box(fresh.owned_by(catalog, busiest).count());
                t.elapsed()
            })
            .collect();
        index_times.sort();
        let d_index = index_times[index_times.len() / 2];
        let (d_one, mine) = median_time(21, || {
            remedy::plan(catalog, &impact, PlanFor::Tenant(busiest), &viewer)
        });
        let (d_one_cold, _) = median_time(5, || {
            let impact = engine.impact(adv);
            remedy::plan(catalog, &impact, PlanFor::Tenant(busiest), &viewer).len()
        });
        row(
            rows,
            "remedy plan of one tenant (target ≤ 5 ms)",
            format!("{:.2} ms", ms(d_one)),
            &format!(
                "the tenant with the most affected artifacts ({n}, {} steps), given the impact and its owner index (made once per impact by the first such question: {:.1} ms), median of 21; {:.1} ms with the impact computed first",
                mine.len(),
                ms(d_index),
                ms(d_one_cold)
            ),
        );
    }
    let (d_rank, ranking) = median_time(5, || remedy::ranking(catalog, &impact, &Actor::Admin, 20));
    if let Some((top, c)) = ranking.first() {
        row(
            rows,
            "ranking of successors that would clear the most",
            format!("{:.1} ms", ms(d_rank)),
            &format!(
                "first: {} would clear {} artifacts of {} tenants",
                catalog.node(*top).id,
                c.artifacts,
                c.tenants
            ),
        );
    }
    // The base with the most descendants, and its successor's reach.
    let widest = catalog
        .roots()
        .map(|r| (r, catalog.subtree_counts(r).iter().sum::<u64>()))
        .max_by_key(|(_, n)| *n);
    if let Some((base, descendants)) = widest {
        let (d_if, c) = median_time(5, || remedy::if_successor_of(catalog, &impact, base));
        row(
            rows,
            "what if: a successor of the widest base",
            format!("{:.1} ms", ms(d_if)),
            &format!(
                "{} has {descendants} descendants; its successor would clear {} affected artifacts of {} tenants",
                catalog.node(base).id,
                c.artifacts,
                c.tenants
            ),
        );
    }
    // Grouping: one notice per (tenant, root cause, step) instead of one
    // per affected artifact (computed here; notices are not yet grouped).
    let (d_groups, groups) = median_time(3, || remedy::root_cause_groups(catalog, &impact));
    row(
        rows,
        "notices grouped by (tenant, root cause, step)",
        format!("{groups}"),
        &format!(
            "against {affected} per-artifact notices: {:.0}× fewer ({:.1} ms to group)",
            affected as f64 / groups.max(1) as f64,
            ms(d_groups)
        ),
    );
}

/// One tenant's plan as a repeated API request gets it: the impact kept
/// by the engine between requests (`Engine::impact_shared`), then the plan.
fn remedy_request_rows(engine: &mut Engine, adv: AdvIdx, rows: &mut Vec<Row>) {
    use patchline_core::remedy::{self, PlanFor};
    let mut per_tenant: HashMap<patchline_core::TenantIdx, usize> = HashMap::new();
    {
        let impact = engine.impact_shared(adv);
        for (a, _) in impact.iter() {
            *per_tenant
                .entry(engine.catalog().link(a).tenant)
                .or_default() += 1;
        }
    }
    let Some((&busiest, _)) = per_tenant.iter().max_by_key(|(_, n)| **n) else {
        return;
    };
    let viewer = Actor::Tenant(engine.catalog().tenant_id(busiest).clone());
    let (d, steps) = median_time(21, || {
        let impact = engine.impact_shared(adv);
        remedy::plan(engine.catalog(), &impact, PlanFor::Tenant(busiest), &viewer).len()
    });
    row(
        rows,
        "remedy plan of one tenant, as a repeated request (target ≤ 5 ms)",
        format!("{:.2} ms", ms(d)),
        &format!("{steps} steps; the impact kept between requests, median of 21"),
    );
}

fn engine_parts(engine: &mut Engine) -> (&mut Catalog, &patchline_core::AdvisoryDb) {
    engine.parts_mut()
}

/// The naive rescan: for every live artifact, flatten its effective
/// inventory (walk up to the inventory holder, materialise the delta chain)
/// and evaluate every component against the advisory.
fn naive_rescan(
    catalog: &Catalog,
    db: &patchline_core::AdvisoryDb,
    adv: AdvIdx,
) -> HashSet<ArtIdx> {
    let Record::Advisory(advisory) = db.get(adv) else {
        return HashSet::new();
    };
    let mut out = HashSet::new();
    for (a, node) in catalog.nodes() {
        if node.removed {
            continue;
        }
        let components = catalog.effective_components(a);
        let hit = components.iter().any(|&c| {
            let comp = catalog.components().get(c);
            let names = [Some(comp.source), comp.alt_source];
            advisory.entries.iter().any(|e| {
                names
                    .iter()
                    .flatten()
                    .any(|&s| catalog.components().source_name(s) == e.name)
                    && entry_hit(catalog, e, c).is_some()
            })
        });
        if hit {
            out.insert(a);
        }
    }
    out
}

/// Generates the cloud and imports it, as `patchline import` would.
/// With `postgres`, the engine imports into that PostgreSQL database
/// instead of SQLite in `data_dir` (which then only holds the service
/// benchmark's own files).
fn generate_and_import(
    args: &Args,
    data_dir: &std::path::Path,
    postgres: Option<&str>,
    rows: &mut Vec<Row>,
    publish: bool,
) -> anyhow::Result<(String, PathBuf)> {
    let size = args.size;
    let rows = &mut *rows;
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)?;
    }

    eprintln!(
        "generating cloud {} (seed {}) in {}",
        size.name,
        args.seed,
        args.dir.display()
    );
    let t = Instant::now();
    let written = cloud::generate(size, args.seed, &args.dir)?;
    eprintln!("  generated in {:.1} s", t.elapsed().as_secs_f64());

    // Import, through the JSONL reader and the engine, as `patchline import`.
    match postgres {
        None => import_cloud(Engine::open(data_dir)?, &written, rows, publish),
        Some(url) => {
            std::fs::create_dir_all(data_dir)?;
            let store =
                patchline_store::postgres::PgStore::open(url, patchline_store::SecretKeys::none())?;
            import_cloud(Engine::with_store(store)?, &written, rows, publish)
        }
    }
}

/// Imports the generated cloud through `engine` (and its advisories when
/// `publish`).
fn import_cloud<S: patchline_store::CatalogStore>(
    mut engine: Engine<S>,
    written: &cloud::Written,
    rows: &mut Vec<Row>,
    publish: bool,
) -> anyhow::Result<(String, PathBuf)> {
    let import = |engine: &mut Engine<S>, file: &PathBuf| -> anyhow::Result<(usize, Duration)> {
        let t = Instant::now();
        let name = file.display().to_string();
        let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
        let items = patchline_engine::jsonl::artifacts(reader, &name, |_| {}, |_| {});
        let report = engine.apply_batch(items, Mode::Create, &Actor::Admin, &mut |_| {})?;
        Ok((report.created, t.elapsed()))
    };
    let (n_images, d) = import(&mut engine, &written.images_file)?;
    row(
        rows,
        "import images, templates, replicas (own inventories on images)",
        format!("{:.0} artifacts/s", n_images as f64 / d.as_secs_f64()),
        &format!("{n_images} in {:.2} s", d.as_secs_f64()),
    );
    let (n_instances, d) = import(&mut engine, &written.instances_file)?;
    row(
        rows,
        "import instances (inheriting; target ≥ 100k/s)",
        format!("{:.0} artifacts/s", n_instances as f64 / d.as_secs_f64()),
        &format!("{n_instances} in {:.2} s", d.as_secs_f64()),
    );

    if !publish {
        return Ok((
            written.all_bases_advisory.clone(),
            written.advisories_dir.clone(),
        ));
    }
    // Advisories.
    let t = Instant::now();
    let mut files: Vec<_> = std::fs::read_dir(&written.advisories_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut advisories = Vec::with_capacity(files.len());
    for f in &files {
        let record = osv::parse_json(&std::fs::read(f)?)?;
        advisories.push((f.display().to_string(), Advisory::compile(record)?));
    }
    engine.publish_advisories(advisories)?;
    row(
        rows,
        "import advisories",
        format!("{} in {:.0} ms", files.len(), ms(t.elapsed())),
        "",
    );
    row(
        rows,
        "peak resident memory of the import",
        format!("{:.0} MiB", mib(proc_status_kib("VmHWM"))),
        "generation and import of the whole cloud in one process",
    );
    Ok((
        written.all_bases_advisory.clone(),
        written.advisories_dir.clone(),
    ))
}
