//! Two engines on one PostgreSQL database — two nodes of one deployment —
//! after a few hundred random writes made on either: each holds exactly
//! what a third engine loads afresh from the database (the catalog, the
//! records, the service state), and every (record, artifact) pair has one
//! notice at most, whichever node computed it. A write on one node is
//! validated against every change the other committed before it (the
//! write lock and the change log), so the writes that are refused are
//! refused the same on either node.
//!
//! The database comes from `PATCHLINE_TEST_POSTGRES_URL` (`.ci/test` sets
//! it); without it the test fails in CI and says NOT RUN elsewhere.

use std::fmt::Write as _;

use patchline_core::notice::{Channel, SubscriptionState};
use patchline_core::{Actor, Advisory, Mode, TenantId};
use patchline_delivery::routing::{Filter, Subscription};
use patchline_engine::service::Role;
use patchline_engine::{BatchItem, Engine, EngineError};
use patchline_formats::vex::{Justification, Statement, Verdict, VexDocument, VexFormat};
use patchline_store::postgres::PgStore;
use patchline_store::{CatalogStore, SecretKeys};
use patchline_testkit::postgres::TestDb;

/// A small deterministic generator (no dependency, same run every time).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn node(url: &str) -> Engine<PgStore> {
    let mut e = Engine::with_store(PgStore::open(url, SecretKeys::none()).unwrap()).unwrap();
    e.enable_notices();
    e
}

/// Everything a node holds in memory that must be the same on every node.
fn dump<S: CatalogStore>(e: &Engine<S>) -> String {
    let mut out = String::new();
    let c = e.catalog();
    for (i, t) in c.tenants().iter().enumerate() {
        writeln!(out, "tenant {i} {t}").unwrap();
    }
    writeln!(
        out,
        "components {} inventories {}",
        c.components().len(),
        c.inventories().len()
    )
    .unwrap();
    for (idx, n) in c.nodes() {
        let mut children = c.children(idx).to_vec();
        children.sort_unstable();
        writeln!(out, "{idx:?} {n:?} children {children:?}").unwrap();
    }
    for (i, r) in e.db().iter() {
        writeln!(
            out,
            "record {i:?} {} {:?} open {}",
            r.id(),
            r.modified(),
            r.is_open()
        )
        .unwrap();
    }
    let svc = e.service();
    let mut roles: Vec<String> = svc
        .roles
        .iter()
        .map(|(t, r)| {
            format!(
                "{t:?} {:?}",
                r.iter().map(|r| r.as_str()).collect::<Vec<_>>()
            )
        })
        .collect();
    roles.sort();
    let mut owners: Vec<_> = svc.record_owners.iter().collect();
    owners.sort();
    let mut watchers: Vec<_> = svc.watchers.iter().collect();
    watchers.sort();
    let tokens: Vec<_> = svc.token_list.keys().collect();
    let subs: Vec<_> = svc
        .subscriptions
        .values()
        .map(|s| (&s.id, s.tenant, s.state))
        .collect();
    let mut vex: Vec<String> = svc
        .vex
        .iter()
        .map(|v| {
            format!(
                "{:?} {:?} {:?} {} {}",
                v.artifact, v.tenant, v.names, v.state, v.subtree
            )
        })
        .collect();
    vex.sort();
    writeln!(
        out,
        "roles {roles:?}\nowners {owners:?}\nwatchers {watchers:?}\ntokens {tokens:?}\nsubscriptions {subs:?}\nprefixes {:?}\nvex {vex:?}",
        svc.prefixes
    )
    .unwrap();
    out
}

fn advisory(id: &str, package: usize, modified_s: u64, fixed: &str) -> Advisory {
    let text = format!(
        r#"{{"id": "{id}", "modified": "2026-01-01T00:{:02}:{:02}Z",
            "summary": "test advisory {id}",
            "affected": [{{"package": {{"ecosystem": "PyPI", "name": "pkg{package}"}},
              "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}, {{"fixed": "{fixed}"}}]}}]}}]}}"#,
        modified_s / 60 % 60,
        modified_s % 60
    );
    Advisory::compile(patchline_formats::osv::parse_json(text.as_bytes()).unwrap()).unwrap()
}

fn artifact(rng: &mut Rng, id: &str, tenant: &str, parent: Option<&str>, kind: &str) -> BatchItem {
    let components: Vec<String> = (0..rng.below(4))
        .map(|_| {
            format!(
                "\"pkg:pypi/pkg{}@{}.0\"",
                rng.below(6),
                1 + 2 * rng.below(2)
            )
        })
        .collect();
    let parent = parent.map_or(String::new(), |p| format!(r#""parent": "{p}","#));
    let visibility = if rng.below(2) == 0 {
        "public"
    } else {
        "private"
    };
    let own = if components.is_empty() && !parent.is_empty() {
        String::new()
    } else {
        format!(r#", "components": [{}]"#, components.join(","))
    };
    let text = format!(
        r#"{{"id": "{id}", "kind": "{kind}", {parent} "visibility": "{visibility}"{own}}}"#
    );
    let spec = patchline_core::doc::ArtifactDoc::parse(&text)
        .unwrap()
        .into_spec(Some(&TenantId::new(tenant).unwrap()))
        .unwrap()
        .spec;
    BatchItem {
        location: id.to_string(),
        spec,
    }
}

const KINDS: [&str; 4] = ["image", "template", "replica", "instance"];

#[test]
fn nodes_writing_in_turn_hold_what_the_database_holds() {
    let Some(db) = TestDb::create("nodes_writing_in_turn_hold_what_the_database_holds") else {
        return;
    };
    let mut nodes = [node(&db.url), node(&db.url)];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tenants: Vec<String> = Vec::new();
    let mut artifacts: Vec<(String, String, usize)> = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..400u64 {
        let which = rng.below(2);
        let e = &mut nodes[which];
        let op = if tenants.is_empty() { 0 } else { rng.below(10) };
        let outcome: Result<(), EngineError> = match op {
            0 => {
                let id = format!("t{}", tenants.len());
                let r = e
                    .create_tenant(
                        &TenantId::new(&id).unwrap(),
                        &[Role::Publisher],
                        &format!("tok-{id}"),
                        &format!("hash-{id}"),
                    )
                    .map(|_| ());
                if r.is_ok() {
                    tenants.push(id);
                }
                r
            }
            1..=4 => {
                // A new artifact: under a random one (a taken id, a parent
                // of the wrong kind or another tenant's private parent is
                // refused, the same on either node).
                let tenant = tenants[rng.below(tenants.len())].clone();
                let id = format!("a{step}");
                let (parent, kind) = match rng.below(3) {
                    0 if !artifacts.is_empty() => {
                        let (p, _, k) = &artifacts[rng.below(artifacts.len())];
                        (Some(p.clone()), (k + 1).min(3))
                    }
                    _ => (None, 0),
                };
                let item = artifact(&mut rng, &id, &tenant, parent.as_deref(), KINDS[kind]);
                let actor = Actor::Tenant(TenantId::new(&tenant).unwrap());
                let r = e
                    .apply_batch(vec![Ok(item)], Mode::Create, &actor, &mut |_| {})
                    .map(|_| ());
                if r.is_ok() {
                    artifacts.push((id, tenant, kind));
                }
                r
            }
            5 if !artifacts.is_empty() => {
                // An upsert by its owner: new components, maybe another
                // visibility; its subtree's notices follow.
                let (id, tenant, kind) = artifacts[rng.below(artifacts.len())].clone();
                let parent = e
                    .catalog()
                    .lookup(&id)
                    .and_then(|a| e.catalog().node(a).parent)
                    .map(|p| e.catalog().node(p).id.to_string());
                let item = artifact(&mut rng, &id, &tenant, parent.as_deref(), KINDS[kind]);
                let actor = Actor::Tenant(TenantId::new(&tenant).unwrap());
                e.apply_batch(vec![Ok(item)], Mode::Upsert, &actor, &mut |_| {})
                    .map(|_| ())
            }
            6 if !artifacts.is_empty() => {
                let (id, tenant, _) = artifacts[rng.below(artifacts.len())].clone();
                let actor = Actor::Tenant(TenantId::new(&tenant).unwrap());
                e.remove(&[id.as_str()], &actor).map(|_| ())
            }
            7 | 8 => {
                let package = rng.below(6);
                let fixed = if rng.below(2) == 0 { "2.0" } else { "4.0" };
                let id = format!("PYSEC-{}", rng.below(8));
                e.publish_advisories(vec![(id.clone(), advisory(&id, package, step, fixed))])
                    .map(|_| ())
            }
            _ => {
                let t = rng.below(tenants.len());
                let tidx = e.catalog().tenant_idx(&tenants[t]).unwrap();
                let pick = rng.below(3);
                if pick == 0 && !artifacts.is_empty() {
                    let (id, _, _) = &artifacts[rng.below(artifacts.len())];
                    e.watch(tidx, id).map(|_| ())
                } else if pick == 1 && !artifacts.is_empty() {
                    // A VEX statement by an artifact's owner (or, refused
                    // as not its own, by another tenant).
                    let (id, owner, _) = artifacts[rng.below(artifacts.len())].clone();
                    let by = if rng.below(4) == 0 {
                        &tenants[t]
                    } else {
                        &owner
                    };
                    let tidx = e.catalog().tenant_idx(by).unwrap();
                    let doc = VexDocument {
                        format: VexFormat::OpenVex,
                        subject: Vec::new(),
                        statements: vec![Statement {
                            path: "statements[0]".into(),
                            names: vec![format!("PYSEC-{}", rng.below(8))],
                            products: vec![id],
                            packages: Vec::new(),
                            verdict: if rng.below(2) == 0 {
                                Verdict::NotAffected
                            } else {
                                Verdict::Acknowledged
                            },
                            justification: Some(Justification::CodeNotPresent),
                            detail: Some(format!("step {step}")),
                        }],
                    };
                    e.import_vex(tidx, &doc, None, rng.below(3) != 0)
                        .map(|_| ())
                } else {
                    e.put_subscription(Subscription {
                        id: format!("sub-{step}"),
                        tenant: tidx,
                        channel: Channel::Webhook {
                            url: format!("http://127.0.0.1:9/{step}"),
                        },
                        filter: Filter::default(),
                        secrets: Vec::new(),
                        state: SubscriptionState::Active,
                        rate_per_s: 10,
                        created_at_ms: 0,
                        grouping: patchline_core::notice::Grouping::ALL[(step % 2) as usize],
                        digest: None,
                    })
                }
            }
        };
        // The lock is released whatever the outcome (the server does the
        // same after each request).
        e.end_write();
        match outcome {
            Ok(()) => accepted += 1,
            Err(EngineError::Store(s)) => panic!("step {step}: the store failed: {s}"),
            Err(_) => refused += 1,
        }
        // The other node follows now and then, as it would between its
        // own writes.
        if rng.below(3) == 0 {
            nodes[1 - which].catch_up().unwrap();
        }
    }
    eprintln!("accepted {accepted}, refused {refused}");
    assert!(
        accepted > 200 && refused > 10,
        "accepted {accepted}, refused {refused}"
    );
    for e in &mut nodes {
        e.catch_up().unwrap();
    }
    let mut fresh = node(&db.url);
    let want = dump(&fresh);
    // Every notice the records call for was made, by whichever node.
    let missing = fresh.reconcile_all().unwrap();
    assert_eq!(missing, 0, "notices the nodes did not make");
    assert!(want.contains("record"), "no record was published:\n{want}");
    for (i, e) in nodes.iter().enumerate() {
        let got = dump(e);
        if got != want {
            let diff: Vec<String> = got
                .lines()
                .zip(want.lines())
                .filter(|(a, b)| a != b)
                .take(5)
                .map(|(a, b)| format!("node: {a}\n  db: {b}"))
                .collect();
            panic!("node {i} differs from the database:\n{}", diff.join("\n"));
        }
    }
    let mut client = db.client();
    let twice: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT advisory, artifact FROM notices
               GROUP BY advisory, artifact HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(twice, 0, "a (record, artifact) pair has several notices");
    // No notice is left open under its owner's VEX statement, whichever
    // node wrote the statement and whichever made the notice.
    let mut decided = 0;
    for row in client
        .query("SELECT advisory, artifact, state FROM notices", &[])
        .unwrap()
    {
        let (adv, art, state): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        let record = fresh.db().get(patchline_core::AdvIdx(adv as u32));
        let a = patchline_core::ArtIdx(art as u32);
        if fresh.catalog().node(a).removed {
            continue;
        }
        if let Some(d) = fresh.service().vex_decision(fresh.catalog(), a, record) {
            decided += 1;
            let open = state == "affected" || state == "notified";
            let acked_under_not_affected = state == "acknowledged"
                && d.state == patchline_core::notice::NoticeState::NotAffected;
            assert!(
                !open && !acked_under_not_affected,
                "notice ({adv}, {art}) is {state} under a {} statement",
                d.state
            );
        }
    }
    eprintln!("notices decided by a statement: {decided}");
    assert!(decided >= 3, "only {decided} notices under a statement");
    let notices: i64 = client
        .query_one("SELECT count(*) FROM notices", &[])
        .unwrap()
        .get(0);
    eprintln!("notices {notices}");
    assert!(
        notices > 20,
        "only {notices} notices: the test tests little"
    );
    let log: i64 = client
        .query_one("SELECT max(seq) FROM changes", &[])
        .unwrap()
        .get(0);
    assert_eq!(log as u64, nodes[0].applied_seq());
    assert_eq!(log as u64, nodes[1].applied_seq());
}
