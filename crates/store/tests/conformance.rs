//! The conformance suite every `CatalogStore` backend runs: what is
//! committed is loaded back exactly (artifacts, inventories, tenants,
//! advisories, failures), across re-parenting, re-inventorying, removal and
//! republishing, and the answers computed from a reloaded store are the
//! answers computed before.

use std::collections::BTreeMap;

use patchline_core::advisory::Failure;
use patchline_core::propagate;
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    Actor, AdvIdx, Advisory, AdvisoryDb, AdvisoryId, ArtifactId, ArtifactSpec, Catalog,
    Inheritance, Kind, Mode, Record, TenantId, Visibility,
};
use patchline_store::CatalogStore;
use patchline_store::sqlite::SqliteStore;

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
        fixes: vec![],
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
    for s in [
        spec("base-pub", Kind::Image, None, Some(&[ssl, zlib])),
        spec(
            "derived",
            Kind::Image,
            Some("base-pub"),
            Some(&[ssl_fixed, zlib]),
        ),
        spec("tpl", Kind::Template, Some("base-pub"), None),
        spec("rep", Kind::Replica, Some("tpl"), None),
        spec("vm1", Kind::Instance, Some("rep"), None),
        spec("vm2", Kind::Instance, Some("derived"), None),
        spec("beta-vm", Kind::Instance, Some("base-pub"), None),
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

#[test]
fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    conformance(&move || Box::new(SqliteStore::open(&path).unwrap()));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let conn = rusqlite_conn(dir.path());
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema'", [])
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("newer patchline"), "{err}");
}

fn rusqlite_conn(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(patchline_store::DB_FILE)).unwrap()
}
