//! The conformance suite every backend runs, each test once over SQLite
//! and once over PostgreSQL (`name::sqlite`, `name::postgres`):
//!
//! - the catalog: what is committed is loaded back exactly (artifacts,
//!   inventories, tenants, advisories, failures), across re-parenting,
//!   re-inventorying, removal and republishing, and the answers computed
//!   from a reloaded store are the answers computed before;
//! - the service rows: roles, tokens, prefixes, subscriptions (secrets
//!   sealed at rest), watches, id counters, notices and their changes;
//! - a failed commit leaves nothing behind;
//! - the delivery queue (`DeliveryQueue`): claims, leases and their expiry,
//!   results and the retry schedule, replay, bury, `next_due`;
//! - the API's reads (`NoticeReader`): cursors and tenant scoping with
//!   watched notices, `mark_notified`, progress, deliveries and counts;
//! - a bulk fan-out in one commit.

use std::collections::BTreeMap;

use patchline_core::advisory::Failure;
use patchline_core::propagate;
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    Actor, AdvIdx, Advisory, AdvisoryDb, AdvisoryId, ArtifactId, ArtifactSpec, Catalog,
    Inheritance, Kind, Mode, Record, TenantId, Visibility,
};
use patchline_store::CatalogStore;

mod support;
use support::Backend;

fn spec(id: &str, kind: Kind, parent: Option<&str>, components: Option<&[&str]>) -> ArtifactSpec {
    ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind,
        tenant: TenantId::new(if id.starts_with('b') { "beta" } else { "acme" }).unwrap(),
        name: Some(format!("name of {id}")),
        parent: parent.map(|p| ArtifactId::new(p).unwrap()),
        relation: None,
        visibility: if id.ends_with("pub") {
            Visibility::Public
        } else {
            Visibility::Private
        },
        labels: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        components: components.map(|c| c.iter().map(|s| s.to_string()).collect()),
        supersedes: None,
        fixes: vec![],
        warnings: Vec::new(),
    }
}

fn advisory(id: &str, modified: &str, fixed: &str) -> Advisory {
    let json = format!(
        r#"{{"id":"{id}","modified":"{modified}","affected":[{{"package":{{"ecosystem":"Debian:12","name":"openssl"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}},{{"package":{{"ecosystem":"Maven","name":"a:b"}}}}]}}"#
    );
    Advisory::compile(patchline_formats::osv::parse_json(json.as_bytes()).unwrap()).unwrap()
}

/// Everything observable, as plain values.
fn snapshot(catalog: &Catalog, db: &AdvisoryDb) -> Vec<String> {
    let mut out = Vec::new();
    for (idx, node) in catalog.nodes() {
        out.push(format!(
            "{idx:?} removed={} {:?}",
            node.removed,
            catalog.spec_of(idx)
        ));
        out.push(format!("children {:?}", {
            let mut c: Vec<_> = catalog
                .children(idx)
                .iter()
                .map(|&c| catalog.node(c).id.to_string())
                .collect();
            c.sort();
            c
        }));
    }
    out.push(format!("tenants {:?}", catalog.tenants()));
    let inh = Inheritance::build(catalog);
    for (idx, record) in db.iter() {
        out.push(format!(
            "record {} {:?} open={}",
            record.id(),
            record.modified(),
            record.is_open()
        ));
        if let Record::Advisory(a) = record {
            out.push(format!("unsupported {:?}", a.unsupported));
        }
        let mut rows: Vec<String> = propagate::impact(catalog, &inh, db, idx)
            .iter()
            .map(|(a, hits)| {
                format!(
                    "{} {:?}",
                    catalog.node(a).id,
                    hits.iter()
                        .map(|h| (
                            h.component
                                .map(|c| catalog.components().get(c).purl.to_string()),
                            catalog.node(h.introduced_by).id.to_string(),
                            h.fixed.clone()
                        ))
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        rows.sort();
        out.extend(rows);
    }
    out
}

fn commit(
    store: &mut dyn CatalogStore,
    catalog: &mut Catalog,
    db: &AdvisoryDb,
    records: &[AdvIdx],
) {
    let changes = catalog.take_changes();
    store
        .commit(catalog, &changes, db, records, &Default::default())
        .unwrap();
}

/// The suite, over any backend that `open` gives (fresh or reopened on the
/// same storage).
fn conformance(open: &dyn Fn() -> Box<dyn CatalogStore>) {
    let ssl =
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=debian-12";
    let ssl_fixed =
        "pkg:deb/debian/libssl3@3.0.13-1~deb12u1?arch=amd64&upstream=openssl&distro=debian-12";
    let zlib = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib&distro=debian-12";
    let mut store = open();
    let (mut catalog, mut db) = store.load().unwrap();
    assert!(catalog.is_empty() && db.is_empty());
    // Inventory warnings are kept with the artifact (and cleared by a
    // re-inventory without them, below).
    let mut derived = spec(
        "derived",
        Kind::Image,
        Some("base-pub"),
        Some(&[ssl_fixed, zlib]),
    );
    derived.warnings = vec![
        "sbom: cyclonedx-json: components[2].purl: invalid purl \"x\": must start with the scheme \"pkg:\"; component skipped".into(),
        "sbom: components[3].purl: pkg:npm/a@latest: invalid semver version \"latest\": é".into(),
    ];
    let mut base_pub = spec("base-pub", Kind::Image, None, Some(&[ssl, zlib]));
    base_pub.warnings = vec!["components[9]: kept".into()];
    for s in [
        base_pub,
        derived,
        spec("tpl", Kind::Template, Some("base-pub"), None),
        spec("rep", Kind::Replica, Some("tpl"), None),
        spec("vm1", Kind::Instance, Some("rep"), None),
        spec("vm2", Kind::Instance, Some("derived"), None),
        spec("beta-vm", Kind::Instance, Some("base-pub"), None),
        // A patched successor of base-pub, and the successor of that.
        ArtifactSpec {
            supersedes: Some(ArtifactId::new("base-pub").unwrap()),
            ..spec("base-pub-v2", Kind::Image, None, Some(&[ssl_fixed, zlib]))
        },
        ArtifactSpec {
            supersedes: Some(ArtifactId::new("base-pub-v2").unwrap()),
            ..spec("base-pub-v3", Kind::Image, Some("base-pub-v2"), None)
        },
    ] {
        catalog.apply(&s, Mode::Create, &Actor::Admin).unwrap();
    }
    let a1 = db
        .publish(Record::Advisory(advisory(
            "DSA-1",
            "2024-01-01T00:00:00Z",
            "3.0.13-1~deb12u1",
        )))
        .unwrap()
        .idx();
    let base = catalog.lookup("base-pub").unwrap();
    let f1 = db
        .publish(Record::Failure(Failure {
            id: AdvisoryId::new("FAIL-1").unwrap(),
            artifact: base,
            summary: "broken".into(),
            details: Some("details".into()),
            severity: Some("high".into()),
            modified: parse_rfc3339("2024-02-01T00:00:00Z").unwrap(),
            modified_text: "2024-02-01T00:00:00Z".into(),
            withdrawn: false,
        }))
        .unwrap()
        .idx();
    commit(store.as_mut(), &mut catalog, &db, &[a1, f1]);
    let before = snapshot(&catalog, &db);
    drop(store);

    let mut store = open();
    let (mut catalog, mut db) = store.load().unwrap();
    assert_eq!(snapshot(&catalog, &db), before, "reload is exact");
    let derived = catalog.lookup("derived").unwrap();
    assert_eq!(catalog.spec_of(derived).warnings.len(), 2);
    let v3 = catalog.lookup("base-pub-v3").unwrap();
    let chain: Vec<&str> = catalog
        .predecessors(v3)
        .map(|p| catalog.node(p).id.as_str())
        .collect();
    assert_eq!(chain, ["base-pub-v2", "base-pub"], "successors reload");

    // Re-parent (vm2 under rep), re-inventory (derived back to vulnerable),
    // fixes on tpl, removal of beta-vm, republish with a newer modified.
    let mut vm2 = spec("vm2", Kind::Instance, Some("rep"), None);
    vm2.labels.clear();
    catalog.apply(&vm2, Mode::Upsert, &Actor::Admin).unwrap();
    catalog
        .apply(
            &spec("derived", Kind::Image, Some("base-pub"), Some(&[ssl])),
            Mode::Upsert,
            &Actor::Admin,
        )
        .unwrap();
    let mut tpl = spec("tpl", Kind::Template, Some("base-pub"), None);
    tpl.fixes = vec![AdvisoryId::new("FAIL-1").unwrap()];
    catalog.apply(&tpl, Mode::Upsert, &Actor::Admin).unwrap();
    catalog.remove("beta-vm", &Actor::Admin).unwrap();
    let a2 = db
        .publish(Record::Advisory(advisory(
            "DSA-1",
            "2024-03-01T00:00:00Z",
            "3.0.12-1",
        )))
        .unwrap()
        .idx();
    assert_eq!(a2, a1);
    commit(store.as_mut(), &mut catalog, &db, &[a2]);
    let before = snapshot(&catalog, &db);
    drop(store);

    let mut store = open();
    let (catalog, db) = store.load().unwrap();
    assert_eq!(
        snapshot(&catalog, &db),
        before,
        "reload after updates is exact"
    );
    // The re-inventory without warnings cleared them; base-pub kept its.
    let derived = catalog.lookup("derived").unwrap();
    assert!(catalog.spec_of(derived).warnings.is_empty());
    let base_pub = catalog.lookup("base-pub").unwrap();
    assert_eq!(catalog.spec_of(base_pub).warnings, ["components[9]: kept"]);
    // The answers themselves, spelled out once.
    let inh = Inheritance::build(&catalog);
    let affected: Vec<String> = {
        let mut v: Vec<String> = propagate::impact(&catalog, &inh, &db, a1)
            .iter()
            .map(|(a, _)| catalog.node(a).id.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        affected,
        ["base-pub", "derived", "rep", "tpl", "vm1", "vm2"]
    );
    let failed: Vec<String> = {
        let mut v: Vec<String> = propagate::impact(&catalog, &inh, &db, f1)
            .iter()
            .map(|(a, _)| catalog.node(a).id.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(failed, ["base-pub", "derived"]);
}

each_backend! {
    fn catalog_roundtrip(b: &Backend) {
        conformance(&|| b.store());
    }

    /// A database of the schema before inventory warnings (SQLite 2,
    /// PostgreSQL 1) gets the column when opened, keeps its artifacts, and
    /// then stores warnings.
    fn the_warnings_column_is_migrated(b: &Backend) {
        let zlib = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib&distro=debian-12";
        {
            let mut store = b.store();
            let (mut catalog, db) = store.load().unwrap();
            catalog
                .apply(&spec("img", Kind::Image, None, Some(&[zlib])), Mode::Create, &Actor::Admin)
                .unwrap();
            commit(store.as_mut(), &mut catalog, &db, &[]);
        }
        let previous = match b {
            Backend::Sqlite(_) => "2",
            Backend::Postgres(_) => "1",
        };
        b.raw_execute("ALTER TABLE artifacts DROP COLUMN warnings");
        b.raw_execute("ALTER TABLE artifacts DROP COLUMN supersedes");
        // PostgreSQL's later migration (the change log) is undone too.
        b.raw_execute("DROP TABLE IF EXISTS changes");
        b.raw_execute("DROP TABLE IF EXISTS budgets");
        b.raw_execute("DROP TABLE IF EXISTS patch_notices");
        b.raw_execute("ALTER TABLE notices DROP COLUMN remediated_by");
        b.raw_execute("ALTER TABLE notice_events DROP COLUMN cause");
        b.raw_execute("DROP INDEX IF EXISTS notices_root");
        b.raw_execute("ALTER TABLE notices DROP COLUMN root");
        b.raw_execute("ALTER TABLE subscriptions DROP COLUMN grouping");
        b.raw_execute("DROP TABLE IF EXISTS notice_roots");
        b.raw_execute("ALTER TABLE subscriptions DROP COLUMN digest");
        b.raw_execute("DROP TABLE IF EXISTS digest_items");
        b.raw_execute("ALTER TABLE notices DROP COLUMN detail");
        b.raw_execute("DROP TABLE IF EXISTS vex_statements");
        if let Backend::Postgres(_) = b {
            // Schema 10's derived column goes, and its index with it.
            b.raw_execute("ALTER TABLE notices DROP COLUMN open");
            b.raw_execute(
                "CREATE INDEX notices_due ON notices (reminded_at)
                 WHERE state IN ('affected', 'notified')",
            );
            // Schema 12's claim counter goes.
            b.raw_execute("ALTER TABLE deliveries DROP COLUMN claims");
            // Schema 11: a claim no longer writes `in_flight`; a delivery
            // in flight when the schema changes keeps its lease.
            b.raw_execute(
                "CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'in_flight'",
            );
            b.raw_execute(
                "INSERT INTO deliveries (id, subscription, purpose, notices, state, attempts,
                   next_at, lease_until, created_at)
                 VALUES (77, 'sub_old', 'notice', '{}', 'in_flight', 0, 100, 5000, 100)",
            );
        }
        b.raw_execute(&format!("UPDATE meta SET value = '{previous}' WHERE key = 'schema'"));
        {
            let mut store = b.store();
            let (mut catalog, db) = store.load().unwrap();
            let img = catalog.lookup("img").unwrap();
            assert!(catalog.spec_of(img).warnings.is_empty());
            let mut s = spec("img", Kind::Image, None, Some(&[zlib]));
            s.warnings = vec!["sbom: components[1].purl: skipped".into()];
            catalog.apply(&s, Mode::Upsert, &Actor::Admin).unwrap();
            commit(store.as_mut(), &mut catalog, &db, &[]);
        }
        assert_ne!(
            b.raw_text("SELECT value FROM meta WHERE key = 'schema'").as_deref(),
            Some(previous)
        );
        let mut store = b.store();
        let (catalog, _) = store.load().unwrap();
        let img = catalog.lookup("img").unwrap();
        assert_eq!(
            catalog.spec_of(img).warnings,
            ["sbom: components[1].purl: skipped"]
        );
        if let Backend::Postgres(_) = b {
            assert_eq!(
                b.reader().delivery_counts().unwrap(),
                vec![("in_flight".to_string(), 1)]
            );
            let mut q = b.queue();
            assert_eq!(claimed_ids(&q.claim(4999, 100, 10).unwrap()), Vec::<i64>::new());
            assert_eq!(claimed_ids(&q.claim(5001, 100, 10).unwrap()), vec![77]);
        }
    }

    /// A database written by a newer build is refused, by every opener.
    fn newer_schema_is_refused(b: &Backend) {
        drop(b.store());
        b.raw_execute("UPDATE meta SET value = '999' WHERE key = 'schema'");
        let err = b.try_store_with(Default::default()).err().expect("refused");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer patchline"), "{err}");
        if let Backend::Postgres(_) = b {
            assert!(b.try_queue().is_err(), "the queue refuses it too");
            assert!(b.try_reader().is_err(), "the reader refuses it too");
        }
    }
}

// ----- the service rows, the queue and the reads, over both backends -----

use patchline_core::notice::{
    DeliveryState, Grouping, NoticeState, Purpose, RemediationCause, SubscriptionState,
};
use patchline_core::remedy::{Action, RootCause};
use patchline_core::{ArtIdx, TenantIdx};
use patchline_store::service::{
    DeliveryRow, GroupRow, NoticeChange, NoticeRow, Remediated, RootRow, SubscriptionRow, TokenRow,
};
use patchline_store::{DeliveryInfo, Finished, Outbox, PatchRow, SecretKeys, StoreError, VexRow};
use patchline_store::{RootMembers, StoredRoot};

/// The ids of one small world: tenants, artifacts and what the fixture
/// committed.
#[derive(Debug)]
struct World {
    acme: TenantIdx,
    beta: TenantIdx,
    canon: TenantIdx,
    pub_base: ArtIdx,
    acme_vm: ArtIdx,
    beta_vm: ArtIdx,
    priv_img: ArtIdx,
    gone_pub: ArtIdx,
}

const ADV0: AdvIdx = AdvIdx(0);
const ADV1: AdvIdx = AdvIdx(1);
const G0_COMPONENTS: &str = r#"[{"purl":"pkg:deb/debian/libssl3@3.0.11","introduced_by":0}]"#;
const G1_COMPONENTS: &str = r#"[{"introduced_by":1}]"#;

fn artifact(
    id: &str,
    kind: Kind,
    tenant: &str,
    parent: Option<&str>,
    public: bool,
) -> ArtifactSpec {
    ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind,
        tenant: TenantId::new(tenant).unwrap(),
        name: None,
        parent: parent.map(|p| ArtifactId::new(p).unwrap()),
        relation: None,
        visibility: if public {
            Visibility::Public
        } else {
            Visibility::Private
        },
        labels: BTreeMap::new(),
        components: None,
        supersedes: None,
        fixes: vec![],
        warnings: Vec::new(),
    }
}

fn notice(id: i64, adv: AdvIdx, a: ArtIdx, t: TenantIdx, group: i64, at_ms: i64) -> NoticeRow {
    NoticeRow {
        id,
        advisory: adv,
        artifact: a,
        tenant: t,
        state: NoticeState::Affected,
        group,
        path: vec![0, a.0],
        at_ms,
        root: None,
    }
}

fn delivery(id: i64, sub: &str, notices: &[i64], next_at_ms: i64, dead: bool) -> DeliveryRow {
    DeliveryRow {
        id,
        subscription: sub.into(),
        purpose: Purpose::Notice,
        notices: notices.to_vec(),
        next_at_ms,
        at_ms: 100,
        dead,
    }
}

fn subscription(id: &str, tenant: TenantIdx, secret: &str) -> SubscriptionRow {
    SubscriptionRow {
        id: id.into(),
        tenant,
        channel: r#"{"type":"webhook","url":"https://example.test/hook"}"#.into(),
        filter: "{}".into(),
        secrets: format!(r#"[{{"secret":"{secret}"}}]"#),
        state: SubscriptionState::Active,
        rate_per_s: 10,
        created_at_ms: 50,
        grouping: Grouping::Artifact,
        digest: None,
    }
}

fn vex_row(
    tenant: TenantIdx,
    artifact: ArtIdx,
    names: &[&str],
    state: NoticeState,
    justification: Option<&str>,
    at_ms: i64,
) -> VexRow {
    VexRow {
        tenant,
        artifact,
        names: names.iter().map(|n| n.to_string()).collect(),
        packages: if at_ms == 9 {
            vec!["bzip2".into(), "libbz2-1.0".into()]
        } else {
            Vec::new()
        },
        subtree: at_ms != 9,
        state,
        justification: justification.map(str::to_string),
        detail: Some(format!("said at {at_ms}")),
        at_ms,
        ord: at_ms as u32 * 2,
    }
}

fn commit_outbox(store: &mut dyn CatalogStore, outbox: &Outbox) -> Result<(), StoreError> {
    let (catalog, db) = store.load()?;
    store.commit(&catalog, &Default::default(), &db, &[], outbox)
}

/// Five artifacts of three tenants; notices 1-5 of record 0 (group 1, at
/// 1000) on each, notice 6 of record 1 (group 2, at 2000) on acme's vm;
/// acme watches the public base, a private image and a public image that
/// is then removed; deliveries 1, 2 (acme), 3 (beta) queued at 1000, 3000
/// and 500, delivery 4 straight to acme's dead letters.
fn world(b: &Backend) -> World {
    let mut store = b.store();
    let (mut catalog, db) = store.load().unwrap();
    for s in [
        artifact("pub-base", Kind::Image, "canonical", None, true),
        artifact("acme-vm", Kind::Instance, "acme", Some("pub-base"), false),
        artifact("beta-vm", Kind::Instance, "beta", Some("pub-base"), false),
        artifact("priv-img", Kind::Image, "canonical", None, false),
        artifact("gone-pub", Kind::Image, "canonical", None, true),
    ] {
        catalog.apply(&s, Mode::Create, &Actor::Admin).unwrap();
    }
    let tenant = |name: &str| {
        TenantIdx(
            catalog
                .tenants()
                .iter()
                .position(|t| t.as_str() == name)
                .unwrap() as u32,
        )
    };
    let w = World {
        acme: tenant("acme"),
        beta: tenant("beta"),
        canon: tenant("canonical"),
        pub_base: catalog.lookup("pub-base").unwrap(),
        acme_vm: catalog.lookup("acme-vm").unwrap(),
        beta_vm: catalog.lookup("beta-vm").unwrap(),
        priv_img: catalog.lookup("priv-img").unwrap(),
        gone_pub: catalog.lookup("gone-pub").unwrap(),
    };
    let outbox = Outbox {
        subscriptions: vec![
            subscription("sub_a", w.acme, "whsec_a"),
            subscription("sub_b", w.beta, "whsec_b"),
        ],
        watches: vec![
            (w.acme, w.pub_base),
            (w.acme, w.priv_img),
            (w.acme, w.gone_pub),
        ],
        groups: vec![
            GroupRow {
                id: 1,
                advisory: ADV0,
                components: G0_COMPONENTS.into(),
            },
            GroupRow {
                id: 2,
                advisory: ADV1,
                components: G1_COMPONENTS.into(),
            },
        ],
        notices: vec![
            notice(1, ADV0, w.pub_base, w.canon, 1, 1000),
            notice(2, ADV0, w.acme_vm, w.acme, 1, 1000),
            notice(3, ADV0, w.beta_vm, w.beta, 1, 1000),
            notice(4, ADV0, w.priv_img, w.canon, 1, 1000),
            notice(5, ADV0, w.gone_pub, w.canon, 1, 1000),
            notice(6, ADV1, w.acme_vm, w.acme, 2, 2000),
        ],
        deliveries: vec![
            delivery(1, "sub_a", &[2], 1000, false),
            delivery(2, "sub_a", &[6], 3000, false),
            delivery(3, "sub_b", &[3], 500, false),
            delivery(4, "sub_a", &[2], 100, true),
        ],
        ..Default::default()
    };
    let changes = catalog.take_changes();
    store.commit(&catalog, &changes, &db, &[], &outbox).unwrap();
    catalog.remove("gone-pub", &Actor::Admin).unwrap();
    let changes = catalog.take_changes();
    store
        .commit(&catalog, &changes, &db, &[], &Default::default())
        .unwrap();
    w
}

fn ids(notices: &[patchline_store::StoredNotice]) -> Vec<i64> {
    notices.iter().map(|n| n.id).collect()
}

fn claimed_ids(c: &[patchline_store::Claimed]) -> Vec<i64> {
    c.iter().map(|c| c.id).collect()
}

fn finished(id: i64, state: DeliveryState, at_ms: i64, next_at_ms: i64) -> Finished {
    Finished {
        id,
        claim: 0,
        state,
        status: match state {
            DeliveryState::Delivered => Some(200),
            _ => Some(500),
        },
        error: (state != DeliveryState::Delivered).then(|| "HTTP 500".to_string()),
        next_at_ms,
        at_ms,
        notices: vec![],
    }
}

fn delivery_of(b: &Backend, sub: &str, id: i64) -> DeliveryInfo {
    b.reader()
        .deliveries(sub, None, 100)
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
        .unwrap()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

each_backend! {
    /// Roles, tokens (minted, revoked), record owners, prefixes reserved
    /// and released, subscriptions replaced, watches once, id counters and
    /// the installation id come back as committed, across a reopen.
    fn service_state_roundtrip(b: &Backend) {
        let w = world(b);
        let mut store = b.store();
        let first = store.load_service().unwrap();
        assert!(!first.installation.is_empty());
        commit_outbox(
            store.as_mut(),
            &Outbox {
                roles: vec![(w.acme, "tenant".into(), 1), (w.acme, "publisher".into(), 2)],
                tokens: vec![
                    TokenRow {
                        id: "tok_1".into(),
                        tenant: w.acme,
                        hash: "hash-one".into(),
                        created_at_ms: 10,
                        revoked_at_ms: None,
                        minted_by: None,
                    },
                    TokenRow {
                        id: "tok_2".into(),
                        tenant: w.acme,
                        hash: "hash-two".into(),
                        created_at_ms: 20,
                        revoked_at_ms: None,
                        minted_by: Some("tok_1".into()),
                    },
                ],
                revoked_tokens: vec![("tok_2".into(), 30)],
                record_owners: vec![(ADV0, w.canon)],
                prefixes: vec![
                    ("CANON-".into(), Some((w.canon, 5))),
                    ("TMP-".into(), Some((w.acme, 6))),
                    ("TMP-".into(), None),
                ],
                subscriptions: vec![SubscriptionRow {
                    state: SubscriptionState::Disabled(
                        patchline_core::notice::DisableReason::Gone,
                    ),
                    ..subscription("sub_a", w.acme, "whsec_a2")
                }],
                watches: vec![(w.acme, w.pub_base), (w.beta, w.pub_base), (w.beta, w.pub_base)],
                // The second statement on (acme, acme-vm, CVE-1) replaces
                // the first, within one commit too.
                vex: vec![
                    vex_row(w.acme, w.acme_vm, &["CVE-1"], NoticeState::Acknowledged, None, 7),
                    vex_row(
                        w.acme,
                        w.acme_vm,
                        &["CVE-1", "GHSA-x"],
                        NoticeState::NotAffected,
                        Some("code_not_reachable"),
                        8,
                    ),
                    vex_row(w.beta, w.beta_vm, &["USN-1"], NoticeState::Acknowledged, None, 9),
                ],
                ..Default::default()
            },
        )
        .unwrap();
        drop(store);
        let s = b.store().load_service().unwrap();
        assert_eq!(s.installation, first.installation, "stable across reopens");
        assert_eq!(s.roles, vec![(w.acme, "publisher".to_string())]);
        assert_eq!(s.tokens.len(), 2);
        assert_eq!(s.tokens[0].id, "tok_1");
        assert_eq!(s.tokens[0].revoked_at_ms, None);
        assert_eq!(s.tokens[1].revoked_at_ms, Some(30));
        assert_eq!(s.tokens[1].minted_by.as_deref(), Some("tok_1"));
        assert_eq!(s.record_owners, vec![(ADV0, w.canon)]);
        assert_eq!(s.prefixes, vec![("CANON-".to_string(), w.canon)]);
        assert_eq!(s.subscriptions.len(), 2);
        let a = s.subscriptions.iter().find(|s| s.id == "sub_a").unwrap();
        assert!(!a.state.is_active());
        assert_eq!(a.secrets, r#"[{"secret":"whsec_a2"}]"#);
        assert_eq!(
            sorted(s.watches.clone()),
            sorted(vec![
                (w.acme, w.pub_base),
                (w.acme, w.priv_img),
                (w.acme, w.gone_pub),
                (w.beta, w.pub_base)
            ])
        );
        assert_eq!(
            (s.next_notice_id, s.next_delivery_id, s.next_group_id),
            (7, 5, 3)
        );
        assert_eq!(
            s.vex,
            vec![
                vex_row(
                    w.acme,
                    w.acme_vm,
                    &["CVE-1", "GHSA-x"],
                    NoticeState::NotAffected,
                    Some("code_not_reachable"),
                    8,
                ),
                vex_row(w.beta, w.beta_vm, &["USN-1"], NoticeState::Acknowledged, None, 9),
            ]
        );
        // A withdrawn statement is gone (its packages are part of its key).
        let mut store = b.store();
        commit_outbox(
            store.as_mut(),
            &Outbox {
                vex_withdrawn: vec![
                    (w.beta, w.beta_vm, "USN-1".into(), Vec::new()),
                    (
                        w.beta,
                        w.beta_vm,
                        "USN-1".into(),
                        vec!["bzip2".into(), "libbz2-1.0".into()],
                    ),
                ],
                ..Default::default()
            },
        )
        .unwrap();
        drop(store);
        let s = b.store().load_service().unwrap();
        assert_eq!(s.vex.len(), 1, "{:?}", s.vex);
        assert_eq!(s.vex[0].tenant, w.acme);
    }

    /// With a key, webhook secrets are sealed in the database (the raw
    /// column holds no secret), opened on load, resealed under a rotated
    /// key at open, and refused without the key.
    fn secrets_are_sealed_at_rest(b: &Backend) {
        const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
        let raw = || b.raw_text("SELECT secrets FROM subscriptions WHERE id = 'sub_k'").unwrap();
        let k1 = SecretKeys::new(K1, []).unwrap();
        let mut store = b.store_with(k1.clone());
        let (mut catalog, db) = store.load().unwrap();
        catalog
            .apply(&artifact("img", Kind::Image, "acme", None, false), Mode::Create, &Actor::Admin)
            .unwrap();
        let changes = catalog.take_changes();
        store
            .commit(
                &catalog,
                &changes,
                &db,
                &[],
                &Outbox {
                    subscriptions: vec![subscription("sub_k", TenantIdx(0), "whsec_TOPSECRET")],
                    ..Default::default()
                },
            )
            .unwrap();
        let stored = raw();
        assert!(stored.starts_with(&format!("enc:v1:{}:", k1.current_id().unwrap())), "{stored}");
        assert!(!stored.contains("TOPSECRET"), "{stored}");
        let loaded = store.load_service().unwrap();
        assert_eq!(loaded.subscriptions[0].secrets, r#"[{"secret":"whsec_TOPSECRET"}]"#);
        drop(store);

        let rotated = SecretKeys::new(K2, [K1]).unwrap();
        let mut store = b.store_with(rotated.clone());
        let stored = raw();
        assert!(
            stored.starts_with(&format!("enc:v1:{}:", rotated.current_id().unwrap())),
            "resealed under the new key at open: {stored}"
        );
        assert_eq!(
            store.load_service().unwrap().subscriptions[0].secrets,
            r#"[{"secret":"whsec_TOPSECRET"}]"#
        );
        drop(store);
        let err = b.try_store_with(SecretKeys::new(K1, []).unwrap()).err().expect("refused");
        assert!(matches!(err, StoreError::Secrets(_)), "{err}");
        let err = b.try_store_with(SecretKeys::none()).err().expect("refused");
        assert!(matches!(err, StoreError::Secrets(_)), "{err}");
    }

    /// Without a key secrets are stored as they are (the data directory or
    /// the database's access control protects them), as documented.
    fn secrets_without_a_key_are_stored_as_given(b: &Backend) {
        world(b);
        assert_eq!(
            b.raw_text("SELECT secrets FROM subscriptions WHERE id = 'sub_a'").as_deref(),
            Some(r#"[{"secret":"whsec_a"}]"#)
        );
    }

    /// A commit that fails half-way (a duplicate token, after catalog rows
    /// and notices were written) leaves the database as it was, and its
    /// error quotes no row value.
    fn a_failed_commit_changes_nothing(b: &Backend) {
        let w = world(b);
        let mut store = b.store();
        let (mut catalog, db) = store.load().unwrap();
        commit_outbox(
            store.as_mut(),
            &Outbox {
                tokens: vec![TokenRow {
                    id: "tok_1".into(),
                    tenant: w.acme,
                    hash: "hash-one-secret".into(),
                    created_at_ms: 10,
                    revoked_at_ms: None,
                    minted_by: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let before_service = format!("{:?}", store.load_service().unwrap());
        catalog
            .apply(&artifact("new-img", Kind::Image, "newcorp", None, true), Mode::Create, &Actor::Admin)
            .unwrap();
        let changes = catalog.take_changes();
        let err = store
            .commit(
                &catalog,
                &changes,
                &db,
                &[],
                &Outbox {
                    groups: vec![GroupRow { id: 9, advisory: ADV1, components: "[]".into() }],
                    notices: vec![notice(9, ADV1, w.pub_base, w.canon, 9, 5000)],
                    deliveries: vec![delivery(9, "sub_a", &[9], 5000, false)],
                    tokens: vec![TokenRow {
                        id: "tok_1".into(),
                        tenant: w.acme,
                        hash: "hash-one-secret".into(),
                        created_at_ms: 11,
                        revoked_at_ms: None,
                        minted_by: None,
                    }],
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        assert!(!err.to_string().contains("hash-one-secret"), "{err}");
        drop(store);
        let mut store = b.store();
        let (catalog, _) = store.load().unwrap();
        assert!(catalog.lookup("new-img").is_none());
        assert!(!catalog.tenants().iter().any(|t| t.as_str() == "newcorp"));
        assert!(store.notice(9).unwrap().is_none());
        assert_eq!(format!("{:?}", store.load_service().unwrap()), before_service);
        assert!(b.reader().deliveries("sub_a", None, 100).unwrap().iter().all(|d| d.id != 9));
        // The same batch without the duplicate goes through.
        let (mut catalog, db) = store.load().unwrap();
        catalog
            .apply(&artifact("new-img", Kind::Image, "newcorp", None, true), Mode::Create, &Actor::Admin)
            .unwrap();
        let changes = catalog.take_changes();
        store.commit(&catalog, &changes, &db, &[], &Default::default()).unwrap();
        assert!(b.store().load().unwrap().0.lookup("new-img").is_some());
    }

    /// Notices as the engine reads them: by record, by artifact, by id,
    /// due for a reminder; state changes (folded when one notice changes
    /// twice in a batch), regrouping and reminders.
    fn notices_and_their_changes(b: &Backend) {
        let w = world(b);
        let mut store = b.store();
        assert_eq!(
            sorted(store.notices_of_advisory(ADV0).unwrap()),
            vec![
                (1, w.pub_base, NoticeState::Affected),
                (2, w.acme_vm, NoticeState::Affected),
                (3, w.beta_vm, NoticeState::Affected),
                (4, w.priv_img, NoticeState::Affected),
                (5, w.gone_pub, NoticeState::Affected),
            ]
        );
        assert_eq!(
            sorted(
                store
                    .notices_of_artifact(w.acme_vm)
                    .unwrap()
                    .into_iter()
                    .map(|n| (n.id, n.advisory, n.state, n.root, n.path))
                    .collect()
            ),
            vec![
                (2, ADV0, NoticeState::Affected, None, vec![0, w.acme_vm.0]),
                (6, ADV1, NoticeState::Affected, None, vec![0, w.acme_vm.0])
            ]
        );
        let n2 = store.notice(2).unwrap().unwrap();
        assert_eq!(
            (n2.advisory, n2.artifact, n2.tenant, n2.state),
            (ADV0, w.acme_vm, w.acme, NoticeState::Affected)
        );
        assert_eq!(n2.components, G0_COMPONENTS);
        assert_eq!(n2.path, vec![0, w.acme_vm.0]);
        assert_eq!((n2.created_at_ms, n2.updated_at_ms, n2.reminders), (1000, 1000, 0));
        assert_eq!(n2.justification, None);
        assert_eq!(store.notice(999).unwrap(), None);
        assert_eq!(sorted(ids(&store.due_reminders(1500, 100).unwrap())), vec![1, 2, 3, 4, 5]);
        assert_eq!(store.due_reminders(1500, 2).unwrap().len(), 2, "limit");
        assert_eq!(ids(&store.due_reminders(1000, 100).unwrap()), Vec::<i64>::new());

        commit_outbox(
            store.as_mut(),
            &Outbox {
                notice_changes: vec![
                    NoticeChange {
                        id: 2,
                        advisory: ADV0,
                        state: NoticeState::Acknowledged,
                        justification: None,
                        detail: None,
                        at_ms: 3000,
                        regroup: None,
                        remediated_by: None,
                    },
                    NoticeChange {
                        id: 3,
                        advisory: ADV0,
                        state: NoticeState::NotAffected,
                        justification: Some("vulnerable_code_not_present".into()),
                        detail: Some("the package is installed but never run".into()),
                        at_ms: 3100,
                        regroup: None,
                        remediated_by: None,
                    },
                    // Reopened into group 2 at 4000, then notified at 4100.
                    NoticeChange {
                        id: 4,
                        advisory: ADV0,
                        state: NoticeState::Affected,
                        justification: None,
                        detail: None,
                        at_ms: 4000,
                        regroup: Some((2, vec![7, 8], None)),
                        remediated_by: None,
                    },
                    NoticeChange {
                        id: 4,
                        advisory: ADV0,
                        state: NoticeState::Notified,
                        justification: None,
                        detail: None,
                        at_ms: 4100,
                        regroup: None,
                        remediated_by: None,
                    },
                ],
                reminded: vec![(1, 3200), (1, 3300)],
                ..Default::default()
            },
        )
        .unwrap();
        let n2 = store.notice(2).unwrap().unwrap();
        assert_eq!((n2.state, n2.updated_at_ms), (NoticeState::Acknowledged, 3000));
        let n3 = store.notice(3).unwrap().unwrap();
        assert_eq!(n3.state, NoticeState::NotAffected);
        assert_eq!(n3.justification.as_deref(), Some("vulnerable_code_not_present"));
        assert_eq!(
            n3.detail.as_deref(),
            Some("the package is installed but never run")
        );
        assert_eq!(n2.detail, None);
        let n4 = store.notice(4).unwrap().unwrap();
        assert_eq!((n4.state, n4.updated_at_ms), (NoticeState::Notified, 4100));
        assert_eq!((n4.components.as_str(), n4.path.clone()), (G1_COMPONENTS, vec![7, 8]));
        let n1 = store.notice(1).unwrap().unwrap();
        assert_eq!(n1.reminders, 2);
        // Reminded at 3300 (n1), regrouped at 4000 (n4): closed notices
        // (2, 3) are never due.
        assert_eq!(sorted(ids(&store.due_reminders(3300, 100).unwrap())), vec![5, 6]);
        assert_eq!(sorted(ids(&store.due_reminders(3301, 100).unwrap())), vec![1, 5, 6]);
        assert_eq!(sorted(ids(&store.due_reminders(4001, 100).unwrap())), vec![1, 4, 5, 6]);
        // Every change is one transition in the history.
        let history = b.reader().progress_history(ADV0, 1000).unwrap();
        assert_eq!(
            history,
            vec![
                (1000, "affected".to_string(), 5),
                (3000, "acknowledged".to_string(), 1),
                (3000, "not_affected".to_string(), 1),
                (4000, "affected".to_string(), 1),
                (4000, "notified".to_string(), 1),
            ]
        );
    }

    /// A remediation keeps what did it with the notice (until it changes
    /// again) and its cause in the history; progress counts both.
    fn remediation_causes(b: &Backend) {
        let _w = world(b);
        let change = |id: i64, state: NoticeState, at_ms: i64, by: Option<&str>| NoticeChange {
            id,
            advisory: ADV0,
            state,
            justification: None,
            detail: None,
            at_ms,
            regroup: None,
            remediated_by: by.map(|cause| Remediated {
                cause: RemediationCause::parse(cause).unwrap(),
                doc: format!(r#"{{"cause":"{cause}","action":"rebase","artifact":1}}"#),
            }),
        };
        let outbox = Outbox {
            notice_changes: vec![
                change(2, NoticeState::Remediated, 5000, Some("successor")),
                change(3, NoticeState::Remediated, 5000, Some("successor")),
                change(4, NoticeState::Remediated, 6000, Some("removal")),
                change(5, NoticeState::Remediated, 6000, None),
            ],
            ..Default::default()
        };
        commit_outbox(b.store().as_mut(), &outbox).unwrap();
        let mut store = b.store();
        let n2 = store.notice(2).unwrap().unwrap();
        assert_eq!(
            n2.remediated_by.as_deref(),
            Some(r#"{"cause":"successor","action":"rebase","artifact":1}"#)
        );
        assert_eq!(store.notice(5).unwrap().unwrap().remediated_by, None);
        let mut r = b.reader();
        assert_eq!(
            r.remediation_counts(ADV0).unwrap(),
            vec![
                ("removal".to_string(), 1),
                ("successor".to_string(), 2),
                ("unknown".to_string(), 1)
            ]
        );
        assert_eq!(
            r.remediation_history(ADV0, 1000).unwrap(),
            vec![
                (5000, "successor".to_string(), 2),
                (6000, "removal".to_string(), 1)
            ]
        );
        // Reopened: the notice forgets what remediated it; the history
        // keeps it.
        let outbox = Outbox {
            notice_changes: vec![change(2, NoticeState::Affected, 7000, None)],
            ..Default::default()
        };
        commit_outbox(b.store().as_mut(), &outbox).unwrap();
        assert_eq!(b.store().notice(2).unwrap().unwrap().remediated_by, None);
        assert_eq!(r.remediation_counts(ADV0).unwrap()[1], ("successor".to_string(), 1));
        assert_eq!(r.remediation_history(ADV0, 1000).unwrap().len(), 2);
    }

    /// Claims take due deliveries only, oldest due first, each once while
    /// leased; an expired lease puts the delivery back (strictly after the
    /// lease's end); dead deliveries are never claimed.
    fn queue_claims_leases_and_expiry(b: &Backend) {
        world(b);
        let mut q = b.queue();
        assert_eq!(q.next_due().unwrap(), Some(500));
        let c = q.claim(999, 100, 10).unwrap();
        assert_eq!(claimed_ids(&c), vec![3]);
        assert_eq!(
            c[0],
            patchline_store::Claimed {
                id: 3,
                subscription: "sub_b".into(),
                purpose: Purpose::Notice,
                notices: vec![3],
                attempts: 0,
                created_at_ms: 100,
                // The shared queue counts claims (this is the first); the
                // embedded one has no other claimer to fence off.
                claim: match b {
                    Backend::Sqlite(_) => 0,
                    Backend::Postgres(_) => 1,
                },
            }
        );
        assert_eq!(claimed_ids(&q.claim(1000, 100, 10).unwrap()), vec![1]);
        assert_eq!(claimed_ids(&q.claim(1000, 100, 10).unwrap()), Vec::<i64>::new());
        assert_eq!(q.claim(5000, 100, 0).unwrap(), vec![], "limit 0 claims nothing");
        assert_eq!(q.next_due().unwrap(), Some(3000));
        assert_eq!(
            sorted(b.reader().delivery_counts().unwrap()),
            vec![("dead".to_string(), 1), ("in_flight".to_string(), 2), ("pending".to_string(), 1)]
        );
        // Delivery 3 is leased until 1099, delivery 1 until 1100.
        assert_eq!(q.release_expired(1099).unwrap(), 0);
        assert_eq!(q.release_expired(1100).unwrap(), 1);
        // Due again: since its first due time on SQLite; on PostgreSQL a
        // claim dates the row due at its lease's end (so that claims on
        // the shared queue never step over rows other nodes hold).
        let due_again = match b {
            Backend::Sqlite(_) => 500,
            Backend::Postgres(_) => 1099,
        };
        assert_eq!(q.next_due().unwrap(), Some(due_again));
        assert_eq!(claimed_ids(&q.claim(1100, 100, 10).unwrap()), vec![3]);
        assert_eq!(q.release_expired(10_000).unwrap(), 2);
        // Oldest due first, up to the limit; ties by id.
        assert_eq!(claimed_ids(&q.claim(10_000, 100, 2).unwrap()), vec![1, 3]);
        assert_eq!(claimed_ids(&q.claim(10_000, 100, 2).unwrap()), vec![2]);
        let dead = delivery_of(b, "sub_a", 4);
        assert_eq!(dead.state, DeliveryState::Dead);
        assert_eq!(dead.last_error.as_deref(), Some("subscription disabled"));
    }

    /// A live node renews the leases it holds: a renewed delivery is not
    /// put back when its first lease ends, only when the renewed one does;
    /// a delivery no longer in flight is not renewed.
    fn queue_leases_are_renewed(b: &Backend) {
        world(b);
        let mut q = b.queue();
        // Delivery 3 is leased until 1099, delivery 1 until 1100.
        assert_eq!(claimed_ids(&q.claim(999, 100, 10).unwrap()), vec![3]);
        assert_eq!(claimed_ids(&q.claim(1000, 100, 10).unwrap()), vec![1]);
        assert_eq!(q.renew(&[3, 2, 77], 5000).unwrap(), 1, "only 3 is in flight");
        assert_eq!(q.release_expired(1101).unwrap(), 1, "1 ran out, 3 was renewed");
        assert_eq!(q.release_expired(5000).unwrap(), 0);
        assert_eq!(q.release_expired(5001).unwrap(), 1);
        assert_eq!(q.renew(&[], 9000).unwrap(), 0);
    }

    /// Results: a failure is retried at its `next_at` with its attempt
    /// counted, a success marks its notices notified (once, with one
    /// history event), `finish_and_claim` records then claims in one go.
    fn queue_results_and_retry_schedule(b: &Backend) {
        world(b);
        let mut q = b.queue();
        assert_eq!(claimed_ids(&q.claim(1000, 60_000, 10).unwrap()), vec![1, 3]);
        let mut ok = finished(3, DeliveryState::Delivered, 1000, 0);
        ok.notices = vec![3, 3];
        q.finish(&[finished(1, DeliveryState::Failed, 1000, 5000), ok]).unwrap();
        let d1 = delivery_of(b, "sub_a", 1);
        assert_eq!(
            (d1.state, d1.attempts, d1.next_at_ms, d1.last_status, d1.last_error.as_deref()),
            (DeliveryState::Failed, 1, 5000, Some(500), Some("HTTP 500"))
        );
        assert_eq!(d1.delivered_at_ms, None);
        let d3 = delivery_of(b, "sub_b", 3);
        assert_eq!(
            (d3.state, d3.attempts, d3.delivered_at_ms, d3.last_status),
            (DeliveryState::Delivered, 1, Some(1000), Some(200))
        );
        let mut r = b.reader();
        let n3 = r.notice(3).unwrap().unwrap();
        assert_eq!((n3.state, n3.updated_at_ms), (NoticeState::Notified, 1000));
        assert_eq!(q.next_due().unwrap(), Some(3000));
        // Not before its retry time.
        assert_eq!(claimed_ids(&q.claim(4999, 60_000, 10).unwrap()), vec![2]);
        let again = q.claim(5000, 60_000, 10).unwrap();
        assert_eq!(claimed_ids(&again), vec![1]);
        assert_eq!(again[0].attempts, 1);
        // Results, then a claim that sees them, in one call.
        let c = q
            .finish_and_claim(
                &[finished(2, DeliveryState::Failed, 5000, 5500)],
                6000,
                60_000,
                10,
            )
            .unwrap();
        assert_eq!(claimed_ids(&c), vec![2]);
        assert_eq!(c[0].attempts, 1);
        let mut ok = finished(1, DeliveryState::Delivered, 6100, 0);
        ok.notices = vec![2];
        let mut ok2 = finished(2, DeliveryState::Delivered, 6200, 0);
        ok2.notices = vec![6, 3];
        assert_eq!(q.finish_and_claim(&[ok, ok2], 6300, 60_000, 0).unwrap(), vec![]);
        assert_eq!(delivery_of(b, "sub_a", 1).attempts, 2);
        assert_eq!(delivery_of(b, "sub_a", 2).delivered_at_ms, Some(6200));
        assert_eq!(r.notice(2).unwrap().unwrap().state, NoticeState::Notified);
        assert_eq!(r.notice(6).unwrap().unwrap().updated_at_ms, 6200);
        assert_eq!(r.notice(3).unwrap().unwrap().updated_at_ms, 1000, "notified once");
        assert_eq!(q.next_due().unwrap(), None);
        assert_eq!(
            r.progress_history(ADV0, 1000).unwrap(),
            vec![
                (1000, "affected".to_string(), 5),
                (1000, "notified".to_string(), 1),
                (6000, "notified".to_string(), 1),
            ]
        );
        assert_eq!(q.finish(&[]).map(|_| 0).unwrap(), 0, "no results, no commit");
    }

    /// Bury sends a subscription's queued and leased work to the dead
    /// letters with the reason; replay makes its dead letters pending
    /// again from attempt 0; other subscriptions are untouched.
    fn queue_replay_and_bury(b: &Backend) {
        world(b);
        let mut q = b.queue();
        assert_eq!(claimed_ids(&q.claim(1000, 60_000, 1).unwrap()), vec![3]);
        assert_eq!(claimed_ids(&q.claim(1000, 60_000, 1).unwrap()), vec![1]);
        q.finish(&[finished(1, DeliveryState::Failed, 1000, 2000)]).unwrap();
        assert_eq!(q.bury("sub_a", "endpoint gone").unwrap(), 2);
        let mut r = b.reader();
        let dead = r.deliveries("sub_a", Some(DeliveryState::Dead), 100).unwrap();
        assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), vec![4, 2, 1], "newest first");
        assert_eq!(dead[1].last_error.as_deref(), Some("endpoint gone"));
        assert_eq!(q.next_due().unwrap(), None, "delivery 3 is in flight");
        assert_eq!(q.bury("sub_a", "again").unwrap(), 0);
        assert_eq!(q.replay("sub_a", 7000).unwrap(), 3);
        let pending = r.deliveries("sub_a", Some(DeliveryState::Pending), 2).unwrap();
        assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), vec![4, 2], "limit");
        assert!(pending.iter().all(|d| d.attempts == 0 && d.next_at_ms == 7000));
        assert_eq!(q.next_due().unwrap(), Some(7000));
        assert_eq!(q.replay("sub_a", 8000).unwrap(), 0);
        assert_eq!(
            r.deliveries("sub_b", None, 100).unwrap()[0].state,
            DeliveryState::InFlight
        );
        assert_eq!(claimed_ids(&q.claim(7000, 60_000, 10).unwrap()), vec![1, 2, 4]);
        assert_eq!(r.deliveries("nobody", None, 100).unwrap(), vec![]);
    }

    /// A tenant reads its own notices and those about the public, present
    /// artifacts it watches, after a cursor, oldest first; not a private
    /// artifact it watches, not a removed one, not another tenant's.
    fn reader_cursors_and_tenant_scoping(b: &Backend) {
        let w = world(b);
        let mut r = b.reader();
        assert_eq!(ids(&r.notices_after(w.acme, 0, 100).unwrap()), vec![1, 2, 6]);
        assert_eq!(ids(&r.notices_after(w.acme, 0, 1).unwrap()), vec![1]);
        assert_eq!(ids(&r.notices_after(w.acme, 1, 1).unwrap()), vec![2]);
        assert_eq!(ids(&r.notices_after(w.acme, 2, 100).unwrap()), vec![6]);
        assert_eq!(ids(&r.notices_after(w.acme, 6, 100).unwrap()), Vec::<i64>::new());
        assert_eq!(ids(&r.notices_after(w.beta, 0, 100).unwrap()), vec![3]);
        assert_eq!(ids(&r.notices_after(w.canon, 0, 100).unwrap()), vec![1, 4, 5]);
        assert_eq!(ids(&r.notices_after(TenantIdx(99), 0, 100).unwrap()), Vec::<i64>::new());
        let page = r.notices_after(w.acme, 5, 100).unwrap();
        assert_eq!(page[0].components, G1_COMPONENTS);
        assert_eq!(page[0].advisory, ADV1);
        assert_eq!(ids(&r.notices(&[6, 999, 2, 1]).unwrap()), vec![1, 2, 6], "by id, oldest first");
        assert_eq!(r.notices(&[]).unwrap(), vec![]);
        assert_eq!(ids(&b.queue().notices(&[3, 1]).unwrap()), vec![1, 3]);
        let many: Vec<i64> = (1..=2500).collect();
        assert_eq!(ids(&r.notices(&many).unwrap()), vec![1, 2, 3, 4, 5, 6], "long id lists");
        assert_eq!(r.notice(6).unwrap(), b.store().notice(6).unwrap());
    }

    /// Patch notices: stored as given, read back by id (the queue) and by
    /// tenant after a cursor (the reader); their deliveries are claimed
    /// with their purpose; their ids share the notices' sequence.
    fn patch_notices_roundtrip(b: &Backend) {
        let w = world(b);
        let patch = |id: i64, tenant: TenantIdx| PatchRow {
            id,
            tenant,
            record: ADV0,
            successor: w.pub_base,
            doc: format!(r#"{{"v":1,"n":{id}}}"#),
            at_ms: 4000 + id,
        };
        let mut d = delivery(5, "sub_a", &[7], 50, false);
        d.purpose = Purpose::Patch;
        let outbox = Outbox {
            patches: vec![patch(7, w.acme), patch(8, w.beta), patch(9, w.acme)],
            deliveries: vec![d],
            ..Default::default()
        };
        commit_outbox(b.store().as_mut(), &outbox).unwrap();
        let mut r = b.reader();
        let got = r.patches_after(Some(w.acme), 0, 100).unwrap();
        assert_eq!(got, vec![patch(7, w.acme), patch(9, w.acme)]);
        assert_eq!(r.patches_after(Some(w.acme), 7, 100).unwrap(), vec![patch(9, w.acme)]);
        assert_eq!(r.patches_after(Some(w.acme), 0, 1).unwrap(), vec![patch(7, w.acme)]);
        assert_eq!(r.patches_after(Some(w.canon), 0, 100).unwrap(), vec![]);
        let all: Vec<i64> = r.patches_after(None, 0, 100).unwrap().iter().map(|p| p.id).collect();
        assert_eq!(all, vec![7, 8, 9]);
        let mut q = b.queue();
        assert_eq!(q.patches(&[9, 42, 7]).unwrap(), vec![patch(7, w.acme), patch(9, w.acme)]);
        let claimed = q.claim(60, 1000, 1).unwrap();
        assert_eq!(claimed_ids(&claimed), vec![5]);
        assert_eq!((claimed[0].purpose, claimed[0].notices.clone()), (Purpose::Patch, vec![7]));
        assert_eq!(delivery_of(b, "sub_a", 5).purpose, Purpose::Patch);
        // Whom a successor was announced to already.
        let mut told = b.store().announced(w.pub_base).unwrap();
        told.sort();
        assert_eq!(told, sorted(vec![(w.acme, ADV0), (w.acme, ADV0), (w.beta, ADV0)]));
        assert_eq!(b.store().announced(w.beta_vm).unwrap(), vec![]);
        // What a successor's announcement reads: a record's notices on the
        // artifacts it clears, one by one, missing ones left out.
        let mut on = b
            .store()
            .notices_on(ADV0, &[w.beta_vm, w.acme_vm, ArtIdx(999)])
            .unwrap();
        on.sort();
        assert_eq!(
            on,
            vec![
                (2, w.acme_vm, NoticeState::Affected),
                (3, w.beta_vm, NoticeState::Affected)
            ]
        );
        assert_eq!(b.store().notices_on(ADV1, &[w.beta_vm]).unwrap(), vec![]);
        // The next notice id is past every patch notice's.
        assert_eq!(b.store().load_service().unwrap().next_notice_id, 10);
    }

    /// Root causes of grouped notices: stored with their notices, found by
    /// key, their members and open counts read by the store, the queue and
    /// the reader; a reopening moves a notice to another root; ids come
    /// from the notices' sequence; a subscription keeps its grouping.
    fn notice_roots_roundtrip(b: &Backend) {
        let w = world(b);
        let cause = |tenant, step, action| RootCause {
            tenant,
            introduced_by: w.pub_base,
            step,
            action,
        };
        let acme_cause = cause(w.acme, w.pub_base, Action::Relaunch);
        let beta_cause = cause(w.beta, w.pub_base, Action::Relaunch);
        let mut grouped = subscription("sub_g", w.acme, "whsec_g");
        grouped.grouping = Grouping::Grouped;
        let mut n7 = notice(7, ADV1, w.beta_vm, w.beta, 2, 5000);
        n7.root = Some(21);
        let outbox = Outbox {
            subscriptions: vec![grouped],
            roots: vec![
                RootRow {
                    id: 20,
                    advisory: ADV1,
                    cause: acme_cause,
                    waits_for: None,
                    onto: None,
                    at_ms: 5000,
                },
                RootRow {
                    id: 21,
                    advisory: ADV1,
                    cause: beta_cause,
                    waits_for: None,
                    onto: None,
                    at_ms: 5000,
                },
            ],
            notices: vec![n7],
            // Notice 6 (acme-vm, ADV1) reopened under root 20.
            notice_changes: vec![NoticeChange {
                id: 6,
                advisory: ADV1,
                state: NoticeState::Affected,
                justification: None,
                detail: None,
                at_ms: 5000,
                regroup: Some((2, vec![w.pub_base.0, w.acme_vm.0], Some(20))),
                remediated_by: None,
            }],
            ..Default::default()
        };
        commit_outbox(b.store().as_mut(), &outbox).unwrap();
        let mut store = b.store();
        let other = cause(w.acme, w.acme_vm, Action::Rebuild);
        assert_eq!(
            store.root_ids(ADV1, &[beta_cause, other, acme_cause]).unwrap(),
            vec![Some(21), None, Some(20)]
        );
        assert_eq!(store.root_ids(ADV0, &[acme_cause]).unwrap(), vec![None]);
        assert_eq!(
            store.root_members(20).unwrap(),
            Some(RootMembers {
                tenant: w.acme,
                advisory: ADV1,
                members: vec![patchline_store::RootMember {
                    id: 6,
                    advisory: ADV1,
                    artifact: w.acme_vm,
                    state: NoticeState::Affected,
                }],
            })
        );
        assert_eq!(store.root_members(6).unwrap(), None, "a notice id is no root");
        let root = store.notice(7).unwrap().unwrap().root;
        assert_eq!(
            root,
            Some(StoredRoot {
                id: 21,
                advisory: ADV1,
                introduced_by: w.pub_base,
                step: w.pub_base,
                action: Action::Relaunch,
                waits_for: None,
                onto: None,
            })
        );
        assert_eq!(store.notice(2).unwrap().unwrap().root, None);
        // The roots near an artifact: by step, what it waits for, its
        // successor; of one record when asked.
        let plan = |tenant, waits_for, onto| patchline_store::RootPlan {
            tenant,
            advisory: ADV1,
            step: w.pub_base,
            action: Action::Relaunch,
            waits_for,
            onto,
        };
        assert_eq!(
            store.root_plans_near(&[w.pub_base], None).unwrap(),
            vec![plan(w.acme, None, None), plan(w.beta, None, None)]
        );
        assert_eq!(store.root_plans_near(&[w.pub_base], Some(ADV0)).unwrap(), vec![]);
        assert_eq!(store.root_plans_near(&[w.acme_vm, w.gone_pub], None).unwrap(), vec![]);
        // A successor announced for acme's relaunch from pub-base: its
        // roots of that record and step move onto it.
        commit_outbox(
            store.as_mut(),
            &Outbox {
                root_plans: vec![plan(w.acme, Some(w.pub_base), Some(w.gone_pub))],
                ..Default::default()
            },
        )
        .unwrap();
        let root = store.notice(6).unwrap().unwrap().root.unwrap();
        assert_eq!(
            (root.id, root.waits_for, root.onto),
            (20, Some(w.pub_base), Some(w.gone_pub))
        );
        assert_eq!(store.notice(7).unwrap().unwrap().root.unwrap().onto, None, "beta's not");
        // Found by its successor and by what it waits for now.
        for near in [w.gone_pub, w.pub_base] {
            assert_eq!(
                store.root_plans_near(&[near], Some(ADV1)).unwrap()[0],
                plan(w.acme, Some(w.pub_base), Some(w.gone_pub))
            );
        }
        // A later plan takes both back (the successor gone).
        commit_outbox(
            store.as_mut(),
            &Outbox {
                root_plans: vec![plan(w.acme, Some(w.pub_base), None)],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(store.notice(6).unwrap().unwrap().root.unwrap().onto, None);
        assert_eq!(store.root_plans_near(&[w.gone_pub], None).unwrap(), vec![]);

        // A record that agrees with ADV1 (aliases one vulnerability)
        // joins its root on the same artifact: the root is still ADV1's,
        // and the artifact counts once among the open.
        commit_outbox(
            store.as_mut(),
            &Outbox {
                notice_changes: vec![NoticeChange {
                    id: 2,
                    advisory: ADV0,
                    state: NoticeState::Affected,
                    justification: None,
                    detail: None,
                    at_ms: 5500,
                    regroup: Some((1, vec![w.pub_base.0, w.acme_vm.0], Some(20))),
                    remediated_by: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let joined = store.notice(2).unwrap().unwrap();
        assert_eq!((joined.advisory, joined.root.map(|r| (r.id, r.advisory))), (ADV0, Some((20, ADV1))));
        assert_eq!(b.queue().root_open_counts(&[20, 21, 99]).unwrap(), vec![(20, 1), (21, 1), (99, 0)]);
        let mut r = b.reader();
        assert_eq!(ids(&r.root_notices_after(20, 0, 10).unwrap()), vec![2, 6]);
        assert_eq!(ids(&r.root_notices_after(20, 6, 10).unwrap()), Vec::<i64>::new());
        assert_eq!(r.notices(&[6]).unwrap()[0].root.map(|r| r.id), Some(20));
        // Remediated members are not open.
        commit_outbox(
            store.as_mut(),
            &Outbox {
                notice_changes: vec![NoticeChange {
                    id: 7,
                    advisory: ADV1,
                    state: NoticeState::Remediated,
                    justification: None,
                    detail: None,
                    at_ms: 6000,
                    regroup: None,
                    remediated_by: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.root_open_counts(&[21]).unwrap(), vec![(21, 0)]);
        assert_eq!(store.notice(7).unwrap().unwrap().root.map(|r| r.id), Some(21), "kept");
        let state = store.load_service().unwrap();
        assert_eq!(state.next_notice_id, 22, "root ids come from the notices' sequence");
        let g = state.subscriptions.iter().find(|s| s.id == "sub_g").unwrap();
        assert_eq!(g.grouping, Grouping::Grouped);
        let a = state.subscriptions.iter().find(|s| s.id == "sub_a").unwrap();
        assert_eq!(a.grouping, Grouping::Artifact);
        // One key, one root: a second row of it is refused whole.
        let dup = Outbox {
            roots: vec![RootRow {
                id: 30,
                advisory: ADV1,
                cause: acme_cause,
                waits_for: None,
                    onto: None,
                    at_ms: 7000,
            }],
            ..Default::default()
        };
        assert!(commit_outbox(store.as_mut(), &dup).is_err());
        drop(store);
        assert_eq!(b.store().root_ids(ADV1, &[acme_cause]).unwrap(), vec![Some(20)]);
        // An open notice placed again (its lineage changed): group, path
        // and root move, its state and history do not.
        commit_outbox(
            b.store().as_mut(),
            &Outbox {
                notice_moves: vec![patchline_store::service::NoticeMove {
                    id: 6,
                    group: 1,
                    path: vec![w.gone_pub.0, w.acme_vm.0],
                    root: Some(21),
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let moved = b.store().notice(6).unwrap().unwrap();
        assert_eq!(
            (moved.root.map(|r| r.id), moved.path, moved.state),
            (Some(21), vec![w.gone_pub.0, w.acme_vm.0], NoticeState::Affected)
        );

    }

    /// A digest subscription's items: its window holds the notices routed
    /// to it in the window and those closed or acknowledged in it; its open
    /// groups count the tenant's own open notices by root; the schedule
    /// text is kept with the subscription.
    fn digest_items_and_windows(b: &Backend) {
        let w = world(b);
        let mut sub = subscription("sub_d", w.acme, "whsec_d");
        sub.grouping = Grouping::Digest;
        sub.digest = Some(r#"{"schedule":{"every":"day","at":"08:00","time_zone":"UTC"},"last_ms":0}"#.into());
        let cause = RootCause {
            tenant: w.acme,
            introduced_by: w.pub_base,
            step: w.pub_base,
            action: Action::Relaunch,
        };
        // Notice 2 (acme-vm, ADV0) gets a root; notices 2 and 6 are
        // routed to the digest at 1500 and 2500; notice 3 (beta's) too
        // (a watcher's item: never in the open groups).
        let outbox = Outbox {
            subscriptions: vec![sub],
            roots: vec![RootRow {
                id: 40,
                advisory: ADV0,
                cause,
                waits_for: None,
                    onto: None,
                    at_ms: 1000,
            }],
            notice_changes: vec![NoticeChange {
                id: 2,
                advisory: ADV0,
                state: NoticeState::Affected,
                justification: None,
                detail: None,
                at_ms: 1000,
                regroup: Some((1, vec![w.pub_base.0, w.acme_vm.0], Some(40))),
                remediated_by: None,
            }],
            digest_items: vec![
                ("sub_d".into(), 2, 1500),
                ("sub_d".into(), 6, 2500),
                ("sub_d".into(), 3, 2500),
                ("sub_a".into(), 4, 2500),
            ],
            ..Default::default()
        };
        commit_outbox(b.store().as_mut(), &outbox).unwrap();
        let mut store = b.store();
        let win = store.digest_window("sub_d", w.acme, 0, 2000, 100).unwrap();
        assert_eq!((win.notices.clone(), win.total, win.open), (vec![2], 1, 2));
        let win = store.digest_window("sub_d", w.acme, 2000, 2500, 1).unwrap();
        assert_eq!(win.total, 0, "the window's end is not in it");
        let win = store.digest_window("sub_d", w.acme, 2500, 3000, 1).unwrap();
        assert_eq!((win.notices.clone(), win.total), (vec![3], 2), "capped, counted");
        // Notice 2 acknowledged at 3500: in the next window as changed.
        commit_outbox(
            store.as_mut(),
            &Outbox {
                notice_changes: vec![NoticeChange {
                    id: 2,
                    advisory: ADV0,
                    state: NoticeState::Acknowledged,
                    justification: None,
                    detail: None,
                    at_ms: 3500,
                    regroup: None,
                    remediated_by: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let win = store.digest_window("sub_d", w.acme, 3000, 4000, 100).unwrap();
        assert_eq!((win.notices, win.total, win.open), (vec![2], 1, 2));
        let open = b.queue().digest_open("sub_d", w.acme, 10).unwrap();
        assert_eq!(open.len(), 1, "notice 6 has no root: no group");
        assert_eq!((open[0].root.id, open[0].advisory, open[0].open), (40, ADV0, 1));
        assert_eq!(open[0].root.action, Action::Relaunch);
        assert_eq!(b.queue().digest_open("sub_d", w.beta, 10).unwrap(), vec![]);
        assert_eq!(b.queue().digest_open("sub_a", w.acme, 10).unwrap(), vec![]);
        let state = store.load_service().unwrap();
        let d = state.subscriptions.iter().find(|s| s.id == "sub_d").unwrap();
        assert_eq!(d.grouping, Grouping::Digest);
        assert!(d.digest.as_deref().unwrap().contains("\"at\":\"08:00\""));
        // A delivery of purpose digest is stored and claimed as such.
        let mut d = delivery(9, "sub_d", &[2], 50, false);
        d.purpose = Purpose::Digest;
        commit_outbox(
            store.as_mut(),
            &Outbox {
                deliveries: vec![d],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(delivery_of(b, "sub_d", 9).purpose, Purpose::Digest);
    }

    /// Notices read through pull or a stream become notified once (one
    /// history event); progress counts by artifact kind and state.
    fn reader_marks_and_progress(b: &Backend) {
        let w = world(b);
        let _ = w;
        let mut r = b.reader();
        r.mark_notified(&[1, 4, 4, 999], 2500).unwrap();
        r.mark_notified(&[1], 2600).unwrap();
        r.mark_notified(&[], 2700).unwrap();
        let n1 = r.notice(1).unwrap().unwrap();
        assert_eq!((n1.state, n1.updated_at_ms), (NoticeState::Notified, 2500));
        let image = Kind::Image.code();
        let instance = Kind::Instance.code();
        assert_eq!(
            sorted(r.progress_counts(ADV0).unwrap()),
            vec![
                (image, "affected".to_string(), 1),
                (image, "notified".to_string(), 2),
                (instance, "affected".to_string(), 2),
            ]
        );
        assert_eq!(
            r.progress_counts(ADV1).unwrap(),
            vec![(instance, "affected".to_string(), 1)]
        );
        assert_eq!(r.progress_counts(AdvIdx(7)).unwrap(), vec![]);
        assert_eq!(
            r.progress_history(ADV0, 1000).unwrap(),
            vec![(1000, "affected".to_string(), 5), (2000, "notified".to_string(), 2)]
        );
        assert_eq!(
            r.progress_history(ADV0, 0).unwrap(),
            vec![(1000, "affected".to_string(), 5), (2500, "notified".to_string(), 2)],
            "a bucket of 0 ms counts as 1 ms"
        );
    }

    /// A fan-out of 20,000 notices and 200 deliveries in one commit is
    /// stored whole and read back (the million-notice figure is measured by
    /// hand with the `fanout` example).
    fn bulk_fanout_in_one_commit(b: &Backend) {
        let w = world(b);
        let mut store = b.store();
        const N: i64 = 20_000;
        let first = store.load_service().unwrap().next_notice_id;
        let notices: Vec<NoticeRow> = (0..N)
            .map(|i| notice(first + i, AdvIdx(10 + i as u32), w.acme_vm, w.acme, 1, 9000 + i))
            .collect();
        let deliveries: Vec<DeliveryRow> = (0..200)
            .map(|d| {
                let ids: Vec<i64> = (0..N / 200).map(|k| first + d * (N / 200) + k).collect();
                delivery(100 + d, "sub_a", &ids, 9000, false)
            })
            .collect();
        let started = std::time::Instant::now();
        commit_outbox(
            store.as_mut(),
            &Outbox { notices, deliveries, ..Default::default() },
        )
        .unwrap();
        eprintln!("{}: {N} notices committed in {:?}", b.name(), started.elapsed());
        let s = store.load_service().unwrap();
        assert_eq!((s.next_notice_id, s.next_delivery_id), (first + N, 300));
        let mut r = b.reader();
        let page = r.notices_after(w.acme, first + N - 3, 100).unwrap();
        assert_eq!(ids(&page), vec![first + N - 2, first + N - 1]);
        assert_eq!(page[1].created_at_ms, 9000 + N - 1);
        assert_eq!(page[1].path, vec![0, w.acme_vm.0]);
        assert!(sorted(r.delivery_counts().unwrap()).contains(&("pending".to_string(), 203)));
        let d = b.queue().claim(9000, 1000, 500).unwrap();
        assert_eq!(d.len(), 203, "the 200 new ones and the world's 1, 2 and 3");
        let last = d.iter().find(|c| c.id == 299).unwrap();
        assert_eq!(last.notices.len() as i64, N / 200);
        assert_eq!(last.notices[0], first + 199 * (N / 200));
        assert_eq!(
            b.raw_count("SELECT count(*) FROM notices"),
            N + 6
        );
    }
}
