//! Times one fan-out commit: N notices of one record (one per affected
//! artifact, 1,000 tenants), their groups, and deliveries of 100 notices
//! each, written by `CatalogStore::commit` in one transaction, first into
//! SQLite (the baseline, in a temporary directory) then into PostgreSQL (a
//! scratch database made on the server of `PATCHLINE_TEST_POSTGRES_URL`
//! and dropped afterwards). Then it drains each queue as one worker
//! would: rounds of `finish_and_claim` (100 deliveries a round), every
//! delivery a success, so every notice becomes `notified` with its history
//! event.
//!
//! ```text
//! PATCHLINE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p patchline-store --example fanout -- 1000000
//! ```
//!
//! The artifacts themselves are not written (notices name artifact
//! indexes; nothing in the store checks them at commit), so the figure is
//! the fan-out's own commit, as the engine makes it after an advisory.

use std::time::Instant;

use patchline_core::notice::{DeliveryState, NoticeState, Purpose};
use patchline_core::{AdvIdx, ArtIdx, TenantIdx};
use patchline_store::postgres::{PgQueue, PgStore};
use patchline_store::service::{DeliveryRow, GroupRow, NoticeRow};
use patchline_store::sqlite::SqliteStore;
use patchline_store::{CatalogStore, DeliveryQueue, Finished, Outbox, SecretKeys};

const TENANTS: i64 = 1000;
const NOTICES_PER_DELIVERY: usize = 100;
const GROUPS: i64 = 1000;
/// Deliveries a worker claims in one round.
const CLAIM_MAX: usize = 100;

fn outbox(n: i64) -> Outbox {
    let groups = (1..=GROUPS)
        .map(|id| GroupRow {
            id,
            advisory: AdvIdx(0),
            components: format!(
                r#"[{{"purl":"pkg:deb/debian/libssl3@3.0.11-1","introduced_by":{id},"fixed":"3.0.13-1"}}]"#
            ),
        })
        .collect();
    let notices: Vec<NoticeRow> = (1..=n)
        .map(|id| NoticeRow {
            id,
            advisory: AdvIdx(0),
            artifact: ArtIdx(id as u32),
            tenant: TenantIdx((id % TENANTS) as u32),
            state: NoticeState::Affected,
            group: 1 + id % GROUPS,
            path: vec![(id % GROUPS) as u32, (id / 7) as u32, id as u32],
            at_ms: 1_700_000_000_000,
            root: None,
        })
        .collect();
    // One subscription per tenant, a delivery per 100 of its notices.
    let mut by_tenant: Vec<Vec<i64>> = vec![Vec::new(); TENANTS as usize];
    for notice in &notices {
        by_tenant[notice.tenant.0 as usize].push(notice.id);
    }
    let mut deliveries = Vec::new();
    for (t, ids) in by_tenant.iter().enumerate() {
        for chunk in ids.chunks(NOTICES_PER_DELIVERY) {
            deliveries.push(DeliveryRow {
                id: deliveries.len() as i64 + 1,
                subscription: format!("sub_{t}"),
                purpose: Purpose::Notice,
                notices: chunk.to_vec(),
                next_at_ms: 1_700_000_000_000,
                at_ms: 1_700_000_000_000,
                dead: false,
            });
        }
    }
    Outbox {
        groups,
        notices,
        deliveries,
        ..Default::default()
    }
}

fn timed(store: &mut dyn CatalogStore, outbox: &Outbox) -> f64 {
    let (catalog, db) = store.load().expect("load");
    let started = Instant::now();
    store
        .commit(&catalog, &Default::default(), &db, &[], outbox)
        .expect("commit");
    started.elapsed().as_secs_f64()
}

/// Claims and reports every queued delivery as delivered; answers the
/// seconds it took and how many deliveries went through.
fn drain(queue: &mut dyn DeliveryQueue) -> (f64, usize) {
    let now = 1_700_000_000_000;
    let started = Instant::now();
    let mut done = 0;
    let mut results: Vec<Finished> = Vec::new();
    loop {
        let claimed = queue
            .finish_and_claim(&results, now, 60_000, CLAIM_MAX)
            .expect("finish and claim");
        done += results.len();
        if claimed.is_empty() {
            break;
        }
        results = claimed
            .into_iter()
            .map(|c| Finished {
                id: c.id,
                claim: c.claim,
                state: DeliveryState::Delivered,
                status: Some(200),
                error: None,
                next_at_ms: now,
                at_ms: now,
                notices: c.notices,
            })
            .collect();
    }
    (started.elapsed().as_secs_f64(), done)
}

fn main() {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N, a number of notices"))
        .unwrap_or(1_000_000);
    let url = std::env::var("PATCHLINE_TEST_POSTGRES_URL")
        .expect("PATCHLINE_TEST_POSTGRES_URL names the PostgreSQL server to measure");
    let outbox = outbox(n);
    println!(
        "fan-out: {n} notices, {} groups, {} deliveries in one commit",
        outbox.groups.len(),
        outbox.deliveries.len()
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = timed(&mut SqliteStore::open(dir.path()).expect("SQLite"), &outbox);
    println!("sqlite      {sqlite:8.2} s (baseline)");
    let (sqlite_drain, drained) =
        drain(&mut patchline_store::service::SqliteQueue::open(dir.path()).expect("SQLite queue"));
    println!("sqlite      {sqlite_drain:8.2} s to drain {drained} deliveries (baseline)");

    let name = format!("patchline_fanout_{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("PostgreSQL");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the scratch database");
    // The same server and options, the scratch database.
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let scratch = match base
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
    {
        Some((authority, _)) => format!("postgres://{authority}/{name}{query}"),
        None => format!("{}/{name}{query}", base.trim_end_matches('/')),
    };
    let outcome = PgStore::open(&scratch, SecretKeys::none()).and_then(|mut store| {
        let secs = timed(&mut store, &outbox);
        drop(store);
        let drained = drain(&mut PgQueue::open(&scratch)?);
        Ok((secs, drained))
    });
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let (pg, (pg_drain, pg_drained)) = outcome.expect("PostgreSQL store");
    println!(
        "postgresql  {pg:8.2} s ({:.2}x the SQLite baseline, {:.0} notices/s)",
        pg / sqlite,
        n as f64 / pg
    );
    println!(
        "postgresql  {pg_drain:8.2} s to drain {pg_drained} deliveries ({:.2}x the SQLite baseline)",
        pg_drain / sqlite_drain
    );
}
