//! Patched successors and remedy plans, rule by rule, on a small cloud:
//! a publisher's base image and its successor, a tenant's template,
//! replica and instances under it, another tenant's instances launched
//! straight from the base, and a tenant's own image that brought the
//! failure in itself. (The plans on random forests are checked against a
//! naive reference in `propagation.rs`.)

use std::collections::BTreeMap;

use patchline_core::propagate::{self, Inheritance};
use patchline_core::remedy::{self, Action, PlanFor};
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    Actor, AdvIdx, AdvisoryDb, AdvisoryId, ArtifactId, ArtifactSpec, Catalog, CatalogError,
    Failure, Kind, Mode, Record, TenantId, Visibility,
};

fn spec(id: &str, kind: Kind, tenant: &str, parent: Option<&str>) -> ArtifactSpec {
    ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind,
        tenant: TenantId::new(tenant).unwrap(),
        name: None,
        parent: parent.map(|p| ArtifactId::new(p).unwrap()),
        relation: None,
        visibility: Visibility::Public,
        labels: BTreeMap::new(),
        components: None,
        fixes: vec![],
        supersedes: None,
        warnings: vec![],
    }
}

fn successor(mut s: ArtifactSpec, of: &str) -> ArtifactSpec {
    s.supersedes = Some(ArtifactId::new(of).unwrap());
    s
}

fn add(c: &mut Catalog, s: ArtifactSpec) {
    c.apply(&s, Mode::Create, &Actor::Admin)
        .unwrap_or_else(|e| panic!("{}: {e}", s.id));
}

fn fail(db: &mut AdvisoryDb, c: &Catalog, id: &str, on: &str) -> AdvIdx {
    let modified = "2024-01-01T00:00:00Z";
    db.publish(Record::Failure(Failure {
        id: AdvisoryId::new(id).unwrap(),
        artifact: c.lookup(on).unwrap(),
        summary: "broken sshd config".into(),
        details: None,
        severity: None,
        modified: parse_rfc3339(modified).unwrap(),
        modified_text: modified.into(),
        withdrawn: false,
    }))
    .unwrap();
    db.iter().find(|(_, r)| r.id().as_str() == id).unwrap().0
}

/// base (canonical) ← tpl (acme) ← rep (acme) ← vm1..vm3 (acme);
/// base ← u1, u2 (umbrella instances); base ← own (acme image, where a
/// failure of its own starts); own ← own-vm (acme).
fn cloud() -> Catalog {
    let mut c = Catalog::new();
    add(&mut c, spec("base", Kind::Image, "canonical", None));
    add(&mut c, spec("tpl", Kind::Template, "acme", Some("base")));
    add(&mut c, spec("rep", Kind::Replica, "acme", Some("tpl")));
    for i in 1..=3 {
        add(
            &mut c,
            spec(&format!("vm{i}"), Kind::Instance, "acme", Some("rep")),
        );
    }
    add(&mut c, spec("u1", Kind::Instance, "umbrella", Some("base")));
    add(&mut c, spec("u2", Kind::Instance, "umbrella", Some("base")));
    add(&mut c, spec("own", Kind::Image, "acme", Some("base")));
    add(&mut c, spec("own-vm", Kind::Instance, "acme", Some("own")));
    c
}

type Row = (
    String,
    String,
    &'static str,
    Option<String>,
    Option<String>,
    Vec<String>,
);

fn rows(c: &Catalog, steps: &[remedy::Step]) -> Vec<Row> {
    let id = |i| c.node(i).id.to_string();
    steps
        .iter()
        .map(|s| {
            (
                c.tenant_id(s.tenant).to_string(),
                id(s.artifact),
                s.action.as_str(),
                s.onto.map(id),
                s.waits_for.map(id),
                s.clears.iter().map(|&a| id(a)).collect(),
            )
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_plan_has_one_step_per_top_most_owned_artifact() {
    let c = cloud();
    let mut db = AdvisoryDb::new();
    let f = fail(&mut db, &c, "FAIL-BASE", "base");
    let inh = Inheritance::build(&c);
    let impact = propagate::impact(&c, &inh, &db, f);
    let steps = remedy::plan(&c, &impact, PlanFor::All, &Actor::Admin);
    assert_eq!(
        rows(&c, &steps),
        vec![
            // canonical owns the base itself: where it came in.
            (
                "canonical".into(),
                "base".into(),
                "rebuild",
                None,
                None,
                strs(&["base"])
            ),
            // Instances launched from the base: one relaunch, waiting for
            // the base's successor.
            (
                "umbrella".into(),
                "base".into(),
                "relaunch",
                None,
                Some("base".into()),
                strs(&["u1", "u2"])
            ),
            (
                "acme".into(),
                "own".into(),
                "rebase",
                None,
                Some("base".into()),
                strs(&["own", "own-vm"])
            ),
            (
                "acme".into(),
                "tpl".into(),
                "rebase",
                None,
                Some("base".into()),
                strs(&["tpl", "rep", "vm1", "vm2", "vm3"])
            ),
        ]
    );
    // One tenant's plan is its part of everyone's.
    let acme = c.tenant_idx("acme").unwrap();
    let mine = remedy::plan(&c, &impact, PlanFor::Tenant(acme), &Actor::Admin);
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|s| s.tenant == acme));
    assert!(mine.iter().all(|s| s.action == Action::Rebase));
}

#[test]
fn a_failure_brought_in_by_the_tenant_is_rebuilt_where_it_came_in() {
    let c = cloud();
    let mut db = AdvisoryDb::new();
    let f = fail(&mut db, &c, "FAIL-OWN", "own");
    let inh = Inheritance::build(&c);
    let impact = propagate::impact(&c, &inh, &db, f);
    let steps = remedy::plan(&c, &impact, PlanFor::All, &Actor::Admin);
    assert_eq!(
        rows(&c, &steps),
        vec![(
            "acme".into(),
            "own".into(),
            "rebuild",
            None,
            None,
            strs(&["own", "own-vm"])
        )]
    );
}

#[test]
fn steps_move_onto_the_newest_clean_successor() {
    let mut c = cloud();
    // base-v2 supersedes base; base-v3 supersedes base-v2 but derives
    // from base (so it still carries the failure): the plan names v2.
    add(
        &mut c,
        successor(spec("base-v2", Kind::Image, "canonical", None), "base"),
    );
    add(
        &mut c,
        successor(
            spec("base-v3", Kind::Image, "canonical", Some("base")),
            "base-v2",
        ),
    );
    let mut db = AdvisoryDb::new();
    let f = fail(&mut db, &c, "FAIL-BASE", "base");
    let inh = Inheritance::build(&c);
    let impact = propagate::impact(&c, &inh, &db, f);
    let steps = remedy::plan(&c, &impact, PlanFor::All, &Actor::Admin);
    let tpl = steps
        .iter()
        .find(|s| c.node(s.artifact).id.as_str() == "tpl")
        .unwrap();
    assert_eq!(
        tpl.onto.map(|i| c.node(i).id.to_string()).as_deref(),
        Some("base-v2")
    );
    assert_eq!(tpl.waits_for, None);
    let relaunch = steps.iter().find(|s| s.action == Action::Relaunch).unwrap();
    assert_eq!(
        relaunch.onto.map(|i| c.node(i).id.to_string()).as_deref(),
        Some("base-v2")
    );

    // A newer successor of the same base the tenant may not see (a
    // private staging image) hides nothing: acme still moves onto v2.
    let mut staging = successor(spec("base-staging", Kind::Image, "canonical", None), "base");
    staging.visibility = Visibility::Private;
    add(&mut c, staging);
    let inh = Inheritance::build(&c);
    let impact = propagate::impact(&c, &inh, &db, f);
    let acme = c.tenant_idx("acme").unwrap();
    let viewer = Actor::Tenant(TenantId::new("acme").unwrap());
    let mine = remedy::plan(&c, &impact, PlanFor::Tenant(acme), &viewer);
    assert!(
        mine.iter()
            .all(|s| s.onto.map(|i| c.node(i).id.as_str()) == Some("base-v2")),
        "{mine:?}"
    );

    // A successor the tenant may not see is not named.
    let mut c2 = cloud();
    let mut hidden = successor(spec("base-v2", Kind::Image, "canonical", None), "base");
    hidden.visibility = Visibility::Private;
    add(&mut c2, hidden);
    let f2 = {
        let mut db2 = AdvisoryDb::new();
        let f = fail(&mut db2, &c2, "FAIL-BASE", "base");
        db = db2;
        f
    };
    let inh = Inheritance::build(&c2);
    let impact = propagate::impact(&c2, &inh, &db, f2);
    let acme = c2.tenant_idx("acme").unwrap();
    let steps = remedy::plan(&c2, &impact, PlanFor::Tenant(acme), &Actor::Admin);
    assert!(
        steps
            .iter()
            .all(|s| s.onto.is_none() && s.waits_for.is_some())
    );
}

#[test]
fn successors_and_exposure_are_counted() {
    let c = cloud();
    let mut db = AdvisoryDb::new();
    let f = fail(&mut db, &c, "FAIL-BASE", "base");
    let inh = Inheritance::build(&c);
    let impact = propagate::impact(&c, &inh, &db, f);
    let base = remedy::if_successor_of(&c, &impact, c.lookup("base").unwrap());
    // Everything below the base: tpl, rep, vm1-3, u1, u2, own, own-vm.
    assert_eq!((base.artifacts, base.tenants), (9, 2));
    assert_eq!(base.by_kind, [1, 1, 1, 6]);
    let tpl = remedy::if_successor_of(&c, &impact, c.lookup("tpl").unwrap());
    assert_eq!((tpl.artifacts, tpl.tenants), (4, 1));
    let vm = remedy::if_successor_of(&c, &impact, c.lookup("vm1").unwrap());
    assert_eq!(vm.artifacts, 0);
    let ranking = remedy::ranking(&c, &impact, &Actor::Admin, 2);
    let named: Vec<&str> = ranking
        .iter()
        .map(|(u, _)| c.node(*u).id.as_str())
        .collect();
    assert_eq!(named, ["base", "tpl"]);
    let exposed = remedy::exposure(&c, c.lookup("base").unwrap());
    assert_eq!((exposed.artifacts, exposed.tenants), (9, 2));
}

#[test]
fn supersedes_is_checked() {
    let mut c = cloud();
    let acme = Actor::Tenant(TenantId::new("acme").unwrap());
    let refuse = |c: &mut Catalog, s: ArtifactSpec, actor: &Actor, want: &str| {
        let err = c.apply(&s, Mode::Upsert, actor).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CatalogError::Invalid(_)), "{text}");
        assert!(text.contains(want), "{text}");
    };
    // Another tenant's artifact, a different kind, a missing one.
    refuse(
        &mut c,
        successor(spec("my-base", Kind::Image, "acme", None), "base"),
        &acme,
        "only its owner",
    );
    refuse(
        &mut c,
        successor(spec("tpl-v2", Kind::Template, "acme", Some("base")), "own"),
        &acme,
        "the kind of what it supersedes",
    );
    refuse(
        &mut c,
        successor(
            spec("tpl-v2", Kind::Template, "acme", Some("base")),
            "nosuch",
        ),
        &acme,
        "unknown artifact",
    );
    // An admin may declare any owner's successor; chains are allowed,
    // cycles are not.
    add(
        &mut c,
        successor(spec("base-v2", Kind::Image, "canonical", None), "base"),
    );
    add(
        &mut c,
        successor(spec("base-v3", Kind::Image, "canonical", None), "base-v2"),
    );
    refuse(
        &mut c,
        successor(spec("base", Kind::Image, "canonical", None), "base-v3"),
        &Actor::Admin,
        "cycle",
    );
    refuse(
        &mut c,
        successor(spec("base-v2", Kind::Image, "canonical", None), "base-v2"),
        &Actor::Admin,
        "itself",
    );
    refuse(
        &mut c,
        successor(
            spec("brand-new", Kind::Image, "canonical", None),
            "brand-new",
        ),
        &Actor::Admin,
        "itself",
    );
    // A cycle longer than the lineage depth bound is refused too.
    let mut prev = "long-0".to_string();
    add(&mut c, spec(&prev, Kind::Image, "canonical", None));
    for i in 1..=1100 {
        let id = format!("long-{i}");
        add(
            &mut c,
            successor(spec(&id, Kind::Image, "canonical", None), &prev),
        );
        prev = id;
    }
    refuse(
        &mut c,
        successor(spec("long-0", Kind::Image, "canonical", None), &prev),
        &Actor::Admin,
        "cycle",
    );
    let v3 = c.lookup("base-v3").unwrap();
    let chain: Vec<&str> = c.predecessors(v3).map(|p| c.node(p).id.as_str()).collect();
    assert_eq!(chain, ["base-v2", "base"]);
    // Declaring a successor is a change like any other: `Create` with a
    // different `supersedes` conflicts, the same is a no-op.
    let same = successor(spec("base-v3", Kind::Image, "canonical", None), "base-v2");
    assert!(c.apply(&same, Mode::Create, &Actor::Admin).is_ok());
    let other = successor(spec("base-v3", Kind::Image, "canonical", None), "base");
    let err = c.apply(&other, Mode::Create, &Actor::Admin).unwrap_err();
    assert!(err.to_string().contains("supersedes"), "{err}");
    // The spec round-trips.
    assert_eq!(c.spec_of(v3).supersedes.unwrap().as_str(), "base-v2");
}

/// The order of a plan's steps never depends on ids the reader may not
/// see: at one depth, the reader's visible steps come first (by id), then
/// the hidden ones (in creation order), whatever the hidden ids spell
/// (found from outside: sorting by the real id let the place of
/// `(private)` among a tenant's own steps spell another tenant's id out).
#[test]
fn hidden_ids_never_order_a_plan() {
    for hidden in ["aaa-secret", "mmm-secret", "zzz-secret"] {
        let mut c = Catalog::new();
        add(&mut c, spec("base", Kind::Image, "canonical", None));
        let mut private = spec(hidden, Kind::Template, "owner", Some("base"));
        private.visibility = Visibility::Private;
        add(&mut c, private);
        add(&mut c, spec("atk-vm", Kind::Instance, "atk", Some(hidden)));
        for img in ["bbb", "nnn", "yyy"] {
            let mut s = spec(img, Kind::Image, "atk", Some("base"));
            s.visibility = Visibility::Private;
            add(&mut c, s);
        }
        let mut db = AdvisoryDb::new();
        let adv = fail(&mut db, &c, "FAIL-1", "base");
        let inh = Inheritance::build(&c);
        let impact = propagate::impact(&c, &inh, &db, adv);
        let atk = Actor::Tenant(TenantId::new("atk").unwrap());
        let t = c.tenant_idx("atk").unwrap();
        let steps = remedy::plan(&c, &impact, PlanFor::Tenant(t), &atk);
        let shown: Vec<String> = steps
            .iter()
            .map(|s| {
                if c.may_see_idx(&atk, s.artifact) {
                    c.node(s.artifact).id.to_string()
                } else {
                    "(private)".to_string()
                }
            })
            .collect();
        assert_eq!(shown, ["bbb", "nnn", "yyy", "(private)"], "{hidden}");
    }
}
