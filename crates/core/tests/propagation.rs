//! Propagation (CONTRACT.md §4) checked against a naive reference.
//!
//! The reference below is written from the product brief alone and shares
//! nothing with `propagate.rs`: effective inventories are recomputed by
//! walking parents, OSV ranges are evaluated by a declarative rule (the
//! greatest applying event, the last listed at equal versions, must be an
//! introduction), `introduced_by` is found by walking up while the parent's
//! effective inventory still holds the exact same canonical purl, and
//! failures by walking up to their origin looking for `fixes`. Only the
//! version oracle (`Scheme::Dpkg.compare`) and the purl parser are shared.
//!
//! Random lineage forests are checked through `propagate::impact` (every
//! record) and `propagate::check_artifact` (every artifact), before and
//! after random re-parentings and re-inventories (`Mode::Upsert`); a random
//! part of the forest is created after the advisories are published.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::str::FromStr;

use patchline_core::propagate::{self, Inheritance};
use patchline_core::remedy::{self, PlanFor};
use patchline_core::timestamp::parse_rfc3339;
use patchline_core::{
    Actor, AdvIdx, Advisory, AdvisoryDb, AdvisoryId, ArtIdx, ArtifactId, ArtifactSpec, Catalog,
    ComponentHit, Failure, Kind, Mode, Published, Record, Relation, TenantId, Visibility,
};
use patchline_formats::osv;
use patchline_formats::purl::Purl;
use patchline_versions::Scheme;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;

const MODIFIED: &str = "2024-01-01T00:00:00Z";

// ---------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------

const OPENSSL_U1: &str = "pkg:deb/debian/openssl@3.0.11-1~deb12u1?arch=amd64&distro=debian-12";
const OPENSSL_U2: &str = "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12";
const OPENSSL_13: &str = "pkg:deb/debian/openssl@3.0.13-1~deb12u1?arch=amd64&distro=debian-12";
const LIBSSL3_U1: &str =
    "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&upstream=openssl&distro=debian-12";
/// Source named, binary version used.
const LIBSSL3_BIN: &str =
    "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&upstream=openssl&distro=debian-12";
/// A binNMU: source named with its version, which is used instead.
const LIBSSL3_SRCV: &str =
    "pkg:deb/debian/libssl3@3.0.11-1+b1?arch=amd64&upstream=openssl%403.0.11-1&distro=debian-12";
const BASH_B2: &str =
    "pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64&upstream=bash%405.2.15-2&distro=debian-12";
const BASH_B7: &str =
    "pkg:deb/debian/bash@5.2.15-2+b7?arch=amd64&upstream=bash%405.2.15-2&distro=debian-12";
const BASH_21: &str = "pkg:deb/debian/bash@5.2.21-2?arch=amd64&distro=debian-12";
const ZLIB_13: &str =
    "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib&distro=debian-12";
const ZLIB_3: &str = "pkg:deb/debian/zlib1g@1:1.3.dfsg-3?arch=amd64&upstream=zlib&distro=debian-12";
const OPENSSL_D11: &str = "pkg:deb/debian/openssl@3.0.11-1~deb11u1?arch=amd64&distro=debian-11";
const OPENSSL_UBU: &str = "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.10?arch=amd64&distro=ubuntu-22.04";
/// Binary epoch above the source version: only the source version matches.
const BSDUTILS_B1: &str = "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?arch=amd64&upstream=util-linux%402.38.1-5&distro=debian-12";
const BSDUTILS_U1: &str =
    "pkg:deb/debian/bsdutils@2.38.1-5+deb12u1?arch=amd64&upstream=util-linux&distro=debian-12";

/// The purls random inventories are drawn from.
const UNIVERSE: [&str; 15] = [
    OPENSSL_U1,
    OPENSSL_U2,
    OPENSSL_13,
    LIBSSL3_U1,
    LIBSSL3_BIN,
    LIBSSL3_SRCV,
    BASH_B2,
    BASH_B7,
    BASH_21,
    ZLIB_13,
    ZLIB_3,
    OPENSSL_D11,
    OPENSSL_UBU,
    BSDUTILS_B1,
    BSDUTILS_U1,
];

/// Universe indexes per package slot: an edit replaces, removes or adds a
/// version within one slot (upgrades, downgrades, reintroductions).
const SLOTS: [&[usize]; 5] = [
    &[0, 1, 2, 11, 12],
    &[3, 4, 5],
    &[6, 7, 8],
    &[9, 10],
    &[13, 14],
];

/// The same purl with its qualifiers in reverse order: another spelling of
/// the same component.
fn respell(purl: &str) -> String {
    let (head, qualifiers) = purl.split_once('?').unwrap();
    let mut q: Vec<&str> = qualifiers.split('&').collect();
    q.reverse();
    format!("{head}?{}", q.join("&"))
}

fn canonical(purl: &str) -> String {
    Purl::from_str(purl).unwrap().to_string()
}

fn universe_index(canonical_purl: &str) -> usize {
    UNIVERSE
        .iter()
        .position(|u| canonical(u) == canonical_purl)
        .unwrap()
}

// ---------------------------------------------------------------------------
// The naive reference
// ---------------------------------------------------------------------------

fn dpkg(a: &str, b: &str) -> Ordering {
    Scheme::Dpkg
        .compare(a, b)
        .unwrap_or_else(|e| panic!("test data: {e}"))
}

/// What matching needs from a deb purl, read from its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RefComp {
    canonical: String,
    /// The purl namespace: `debian`, `ubuntu`.
    family: String,
    /// `distro=debian-12.5` -> `12`, `distro=ubuntu-22.04` -> `22.04`.
    release: Option<String>,
    /// The source package (`upstream=` name) or the binary name.
    source: String,
    /// The source version (`upstream=name@version`) or the binary version.
    match_version: String,
}

fn ref_comp(text: &str) -> RefComp {
    let purl = Purl::from_str(text).unwrap();
    assert_eq!(purl.ty, "deb", "the reference knows deb purls only");
    let family = purl.namespace.clone().unwrap();
    let release = purl.qualifier("distro").map(|d| {
        let (id, release) = d.split_once('-').unwrap();
        assert_eq!(id, family);
        if id == "debian" {
            release.split('.').next().unwrap().to_string()
        } else {
            release.to_string()
        }
    });
    let version = purl.version.clone().unwrap();
    let (source, match_version) = match purl.qualifier("upstream") {
        None => (purl.name.clone(), version),
        Some(up) => match up.split_once('@') {
            Some((name, v)) => (name.to_string(), v.to_string()),
            None => (up.to_string(), version),
        },
    };
    RefComp {
        canonical: purl.to_string(),
        family,
        release,
        source,
        match_version,
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

#[derive(Clone, Debug)]
struct RefEntry {
    ecosystem: String,
    name: String,
    /// ECOSYSTEM ranges, events in document order.
    ranges: Vec<Vec<Ev>>,
    versions: Vec<String>,
}

#[derive(Clone, Debug)]
struct RefAdvisory {
    id: String,
    withdrawn: bool,
    entries: Vec<RefEntry>,
}

impl RefAdvisory {
    fn osv_json(&self) -> String {
        let affected: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                let ranges: Vec<_> = e
                    .ranges
                    .iter()
                    .map(|events| {
                        let events: Vec<_> = events
                            .iter()
                            .map(|ev| match ev {
                                Ev::Introduced(v) => json!({ "introduced": v }),
                                Ev::Fixed(v) => json!({ "fixed": v }),
                                Ev::LastAffected(v) => json!({ "last_affected": v }),
                                Ev::Limit(v) => json!({ "limit": v }),
                            })
                            .collect();
                        json!({ "type": "ECOSYSTEM", "events": events })
                    })
                    .collect();
                json!({
                    "package": { "ecosystem": e.ecosystem, "name": e.name },
                    "ranges": ranges,
                    "versions": e.versions,
                })
            })
            .collect();
        let mut doc = json!({ "id": self.id, "modified": MODIFIED, "affected": affected });
        if self.withdrawn {
            doc["withdrawn"] = json!(MODIFIED);
        }
        doc.to_string()
    }

    /// `Some(fix)` when `c` is affected; the first matching entry decides.
    fn hit(&self, c: &RefComp) -> Option<Option<String>> {
        if self.withdrawn {
            return None;
        }
        self.entries.iter().find_map(|e| e.hit(c))
    }
}

/// The first of the smallest versions.
fn first_min<'a>(versions: impl Iterator<Item = &'a String>) -> Option<String> {
    let mut best: Option<&String> = None;
    for v in versions {
        if best.is_none_or(|b| dpkg(v, b) == Ordering::Less) {
            best = Some(v);
        }
    }
    best.cloned()
}

/// One range: the events that apply to `v` are the introductions at or
/// below it (`0` is below everything), the `fixed` at or below it and the
/// `last_affected` strictly below it. `v` is inside when the greatest of them
/// by version, and at equal versions the one listed last, is an introduction,
/// and `v` is below some `limit` when there are limits. The fix is the
/// smallest `fixed` above that introduction.
fn range_hit(events: &[Ev], v: &str) -> Option<Option<String>> {
    let limits: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Limit(l) => Some(l),
            _ => None,
        })
        .collect();
    if !limits.is_empty() && !limits.iter().any(|l| dpkg(v, l) == Ordering::Less) {
        return None;
    }
    // (version, is an introduction); `None` stands for "0".
    let applying: Vec<(Option<&str>, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Introduced(i) if i == "0" => Some((None, true)),
            Ev::Introduced(i) if dpkg(i, v) != Ordering::Greater => Some((Some(i.as_str()), true)),
            Ev::Fixed(f) if dpkg(f, v) != Ordering::Greater => Some((Some(f.as_str()), false)),
            Ev::LastAffected(l) if dpkg(l, v) == Ordering::Less => Some((Some(l.as_str()), false)),
            _ => None,
        })
        .collect();
    let order = |a: Option<&str>, b: Option<&str>| match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => dpkg(a, b),
    };
    // The last of the greatest: `max_by` keeps the last of equal elements.
    let (intro, is_intro) = applying.into_iter().max_by(|a, b| order(a.0, b.0))?;
    if !is_intro {
        return None;
    }
    Some(first_min(events.iter().filter_map(|e| match e {
        Ev::Fixed(f) if intro.is_none_or(|i| dpkg(f, i) == Ordering::Greater) => Some(f),
        _ => None,
    })))
}

impl RefEntry {
    fn hit(&self, c: &RefComp) -> Option<Option<String>> {
        let (family, release) = match self.ecosystem.split_once(':') {
            Some((f, r)) => (f, Some(r)),
            None => (self.ecosystem.as_str(), None),
        };
        if family.to_ascii_lowercase() != c.family || self.name != c.source {
            return None;
        }
        if let (Some(want), Some(have)) = (release, c.release.as_deref())
            && want != have
        {
            return None;
        }
        let v = c.match_version.as_str();
        if let Some(fix) = self.ranges.iter().find_map(|r| range_hit(r, v)) {
            return Some(fix);
        }
        if self
            .versions
            .iter()
            .any(|x| x == v || dpkg(x, v) == Ordering::Equal)
        {
            // Listed explicitly: the smallest fix above it, if any.
            return Some(first_min(self.ranges.iter().flatten().filter_map(
                |e| match e {
                    Ev::Fixed(f) if dpkg(f, v) == Ordering::Greater => Some(f),
                    _ => None,
                },
            )));
        }
        None
    }
}

/// One artifact of the reference forest.
#[derive(Clone, Debug)]
struct RNode {
    id: String,
    kind: Kind,
    tenant: String,
    parent: Option<usize>,
    /// Own inventory as given (any spelling); `None` inherits.
    inv: Option<Vec<String>>,
    fixes: Vec<String>,
    /// Removed with `Catalog::remove` (a leaf leaving the forest).
    removed: bool,
}

#[derive(Clone, Debug)]
struct RFailure {
    id: String,
    artifact: usize,
    withdrawn: bool,
}

/// A catalog, advisories and failures, in the order they are created:
/// `forest[..early]`, then the advisories, then the rest of the forest, then
/// the failures.
#[derive(Clone, Debug)]
struct World {
    forest: Vec<RNode>,
    advisories: Vec<RefAdvisory>,
    failures: Vec<RFailure>,
    early: usize,
}

/// (artifact, advisory or failure, canonical purl or "failure",
/// introduced_by, fixed, path).
type Hit = (String, String, String, String, Option<String>, Vec<String>);

/// Canonical purls of the effective inventory.
fn effective(forest: &[RNode], a: usize) -> BTreeSet<String> {
    match (&forest[a].inv, forest[a].parent) {
        (Some(inv), _) => inv.iter().map(|p| canonical(p)).collect(),
        (None, Some(p)) => effective(forest, p),
        (None, None) => BTreeSet::new(),
    }
}

/// Ids from `top` down to `a`.
fn chain(forest: &[RNode], top: usize, a: usize) -> Vec<String> {
    let mut path = vec![forest[a].id.clone()];
    let mut x = a;
    while x != top {
        x = forest[x].parent.expect("top is an ancestor");
        path.push(forest[x].id.clone());
    }
    path.reverse();
    path
}

fn reference(world: &World) -> BTreeSet<Hit> {
    let forest = &world.forest;
    let eff: Vec<BTreeSet<String>> = (0..forest.len()).map(|a| effective(forest, a)).collect();
    let mut out = BTreeSet::new();
    for a in 0..forest.len() {
        if forest[a].removed {
            continue;
        }
        for purl in &eff[a] {
            let comp = ref_comp(purl);
            for adv in &world.advisories {
                let Some(fixed) = adv.hit(&comp) else {
                    continue;
                };
                let mut top = a;
                while let Some(p) = forest[top].parent
                    && eff[p].contains(purl)
                {
                    top = p;
                }
                out.insert((
                    forest[a].id.clone(),
                    adv.id.clone(),
                    purl.clone(),
                    forest[top].id.clone(),
                    fixed,
                    chain(forest, top, a),
                ));
            }
        }
        for f in world.failures.iter().filter(|f| !f.withdrawn) {
            let mut path = vec![a];
            let mut x = a;
            while x != f.artifact
                && let Some(p) = forest[x].parent
            {
                x = p;
                path.push(x);
            }
            if x == f.artifact && !path.iter().any(|&p| forest[p].fixes.contains(&f.id)) {
                out.insert((
                    forest[a].id.clone(),
                    f.id.clone(),
                    "failure".into(),
                    forest[f.artifact].id.clone(),
                    None,
                    chain(forest, f.artifact, a),
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The real implementation
// ---------------------------------------------------------------------------

fn spec_of(forest: &[RNode], i: usize) -> ArtifactSpec {
    let n = &forest[i];
    ArtifactSpec {
        id: ArtifactId::new(&n.id).unwrap(),
        kind: n.kind,
        tenant: TenantId::new(&n.tenant).unwrap(),
        name: None,
        parent: n.parent.map(|p| ArtifactId::new(&forest[p].id).unwrap()),
        relation: None,
        visibility: Visibility::Private,
        labels: BTreeMap::new(),
        components: n.inv.clone(),
        supersedes: None,
        fixes: n
            .fixes
            .iter()
            .map(|f| AdvisoryId::new(f).unwrap())
            .collect(),
        warnings: Vec::new(),
    }
}

fn create(catalog: &mut Catalog, forest: &[RNode], i: usize) {
    catalog
        .apply(&spec_of(forest, i), Mode::Create, &Actor::Admin)
        .unwrap_or_else(|e| panic!("creating {}: {e}", forest[i].id));
}

fn build(world: &World) -> (Catalog, AdvisoryDb) {
    let mut catalog = Catalog::new();
    let mut db = AdvisoryDb::new();
    for i in 0..world.early {
        create(&mut catalog, &world.forest, i);
    }
    for adv in &world.advisories {
        let record = osv::parse_json(adv.osv_json().as_bytes()).unwrap();
        let compiled = Advisory::compile(record).unwrap();
        assert!(
            compiled.unsupported.is_empty(),
            "{:?}",
            compiled.unsupported
        );
        assert!(matches!(
            db.publish(Record::Advisory(compiled)),
            Ok(Published::New(_))
        ));
    }
    for i in world.early..world.forest.len() {
        create(&mut catalog, &world.forest, i);
    }
    for f in &world.failures {
        let artifact = catalog.lookup(&world.forest[f.artifact].id).unwrap();
        let record = Record::Failure(Failure {
            id: AdvisoryId::new(&f.id).unwrap(),
            artifact,
            summary: "broken sshd config".into(),
            details: None,
            severity: None,
            modified: parse_rfc3339(MODIFIED).unwrap(),
            modified_text: MODIFIED.into(),
            withdrawn: f.withdrawn,
        });
        assert!(matches!(db.publish(record), Ok(Published::New(_))));
    }
    (catalog, db)
}

fn hit_tuple(catalog: &Catalog, db: &AdvisoryDb, a: ArtIdx, adv: AdvIdx, h: &ComponentHit) -> Hit {
    let id = |i: ArtIdx| catalog.node(i).id.to_string();
    let what = match h.component {
        Some(c) => {
            // Identity is the canonical purl; answers show it as first given.
            let comp = catalog.components().get(c);
            assert_eq!(canonical(&comp.purl), *comp.canonical);
            comp.canonical.to_string()
        }
        None => "failure".into(),
    };
    let path = propagate::path(catalog, h.introduced_by, a)
        .into_iter()
        .map(id)
        .collect();
    (
        id(a),
        db.get(adv).id().to_string(),
        what,
        id(h.introduced_by),
        h.fixed.as_deref().map(str::to_string),
        path,
    )
}

/// `propagate::impact` of every record.
fn real_impact(catalog: &Catalog, db: &AdvisoryDb) -> BTreeSet<Hit> {
    let inheritance = Inheritance::build(catalog);
    let mut out = BTreeSet::new();
    for (adv, record) in db.iter() {
        let impact = propagate::impact(catalog, &inheritance, db, adv);
        for (a, hits) in impact.iter() {
            assert!(
                !hits.is_empty(),
                "{} listed without hits",
                catalog.node(a).id
            );
            for h in hits {
                assert_eq!(
                    h.component.is_none(),
                    matches!(record, Record::Failure(_)),
                    "component hits are for advisories only"
                );
                let t = hit_tuple(catalog, db, a, adv, h);
                assert!(out.insert(t.clone()), "impact lists {t:?} twice");
            }
        }
    }
    out
}

/// `propagate::check_artifact` of every artifact.
fn real_checks(catalog: &Catalog, db: &AdvisoryDb, forest: &[RNode]) -> BTreeSet<Hit> {
    let mut out = BTreeSet::new();
    for node in forest {
        let a = catalog.lookup(&node.id).unwrap();
        if node.removed {
            assert!(propagate::check_artifact(catalog, db, a).is_empty());
            continue;
        }
        for m in propagate::check_artifact(catalog, db, a) {
            assert!(!m.hits.is_empty(), "{} matched without hits", node.id);
            for h in &m.hits {
                let t = hit_tuple(catalog, db, a, m.advisory, h);
                assert!(out.insert(t.clone()), "check_artifact lists {t:?} twice");
            }
        }
    }
    out
}

fn describe(world: &World) -> String {
    let mut s = String::from("forest:\n");
    for n in &world.forest {
        let _ = writeln!(
            s,
            "  {}{} {} parent={} inv={} fixes={:?}",
            n.id,
            if n.removed { " (removed)" } else { "" },
            n.kind,
            n.parent.map_or("-", |p| world.forest[p].id.as_str()),
            n.inv
                .as_ref()
                .map_or("inherit".to_string(), |i| format!("{i:?}")),
            n.fixes
        );
    }
    let _ = writeln!(s, "created before the advisories: {}", world.early);
    for adv in &world.advisories {
        let _ = writeln!(s, "advisory: {}", adv.osv_json());
    }
    for f in &world.failures {
        let _ = writeln!(
            s,
            "failure {} on {} withdrawn={}",
            f.id, world.forest[f.artifact].id, f.withdrawn
        );
    }
    s
}

fn difference(name: &str, expected: &BTreeSet<Hit>, actual: &BTreeSet<Hit>) -> String {
    let mut s = String::new();
    for h in expected.difference(actual) {
        let _ = writeln!(s, "  {name} misses {h:?}");
    }
    for h in actual.difference(expected) {
        let _ = writeln!(s, "  {name} adds   {h:?}");
    }
    s
}

/// Real `impact` and `check_artifact` must both equal the reference.
fn verify(world: &World, catalog: &Catalog, db: &AdvisoryDb, when: &str) -> BTreeSet<Hit> {
    let expected = reference(world);
    let impact = real_impact(catalog, db);
    let checks = real_checks(catalog, db, &world.forest);
    if impact != expected || checks != expected {
        panic!(
            "disagreement {when}\n{}{}{}",
            describe(world),
            difference("impact", &expected, &impact),
            difference("check_artifact", &expected, &checks)
        );
    }
    expected
}

/// (tenant, step artifact, action, waits_for, clears) of a remedy step.
type RefStep = (String, String, &'static str, Option<String>, Vec<String>);

/// The remedy plans of every record, from the reference hits, by the
/// rules of `patchline_core::remedy` read literally: for each affected
/// artifact and each of its distinct introductions, the chain from there
/// down; the first artifact of that chain its owner owns; rebuild when
/// that is the introduction, relaunch from the parent for an instance,
/// rebase otherwise (no successors in these worlds: every step that is
/// not a rebuild waits for the parent).
fn reference_plans(world: &World, hits: &BTreeSet<Hit>) -> BTreeMap<String, BTreeSet<RefStep>> {
    let forest = &world.forest;
    let index: BTreeMap<&str, usize> = forest
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut steps: BTreeMap<(String, String, String, &'static str), BTreeSet<String>> =
        BTreeMap::new();
    for (artifact, record, _, _, _, path) in hits {
        let tenant = &forest[index[artifact.as_str()]].tenant;
        let x = path
            .iter()
            .find(|id| forest[index[id.as_str()]].tenant == *tenant)
            .expect("the artifact itself is owned");
        let xi = index[x.as_str()];
        let (at, action) = if *x == path[0] {
            (x.clone(), "rebuild")
        } else if forest[xi].kind == Kind::Instance {
            (forest[forest[xi].parent.unwrap()].id.clone(), "relaunch")
        } else {
            (x.clone(), "rebase")
        };
        steps
            .entry((record.clone(), tenant.clone(), at, action))
            .or_default()
            .insert(artifact.clone());
    }
    let mut out: BTreeMap<String, BTreeSet<RefStep>> = BTreeMap::new();
    for ((record, tenant, at, action), clears) in steps {
        let waits_for = match action {
            "rebuild" => None,
            "relaunch" => Some(at.clone()),
            _ => forest[index[at.as_str()]]
                .parent
                .map(|p| forest[p].id.clone()),
        };
        out.entry(record).or_default().insert((
            tenant,
            at,
            action,
            waits_for,
            clears.into_iter().collect(),
        ));
    }
    out
}

/// What a successor of each artifact would clear, from the reference
/// hits: the artifacts strictly below it whose every chain passes through
/// it, and their tenants.
fn reference_clearances(
    world: &World,
    hits: &BTreeSet<Hit>,
) -> BTreeMap<String, BTreeMap<String, (BTreeSet<String>, u64)>> {
    let forest = &world.forest;
    let tenant_of: BTreeMap<&str, &str> = forest
        .iter()
        .map(|n| (n.id.as_str(), n.tenant.as_str()))
        .collect();
    // (record, artifact) -> the chains of its hits.
    let mut chains: BTreeMap<(&str, &str), Vec<&Vec<String>>> = BTreeMap::new();
    for (artifact, record, _, _, _, path) in hits {
        chains.entry((record, artifact)).or_default().push(path);
    }
    // record -> U -> (artifacts cleared, their tenants)
    type Cleared<'a> = BTreeMap<String, (BTreeSet<&'a str>, BTreeSet<&'a str>)>;
    let mut per: BTreeMap<String, Cleared<'_>> = BTreeMap::new();
    for ((record, artifact), paths) in &chains {
        for u in &paths[0][..paths[0].len() - 1] {
            if paths.iter().all(|p| p.contains(u)) {
                let e = per
                    .entry(record.to_string())
                    .or_default()
                    .entry(u.clone())
                    .or_default();
                e.0.insert(artifact);
                e.1.insert(tenant_of[artifact]);
            }
        }
    }
    per.into_iter()
        .map(|(r, m)| {
            let m = m
                .into_iter()
                .map(|(u, (a, t))| {
                    let a: BTreeSet<String> = a.into_iter().map(str::to_string).collect();
                    (u, (a, t.len() as u64))
                })
                .collect();
            (r, m)
        })
        .collect()
}

/// `remedy::plan` and `remedy::clearances` against the reference, for
/// every record, every tenant at once and one tenant at a time.
fn verify_remedy(
    world: &World,
    catalog: &Catalog,
    db: &AdvisoryDb,
    hits: &BTreeSet<Hit>,
    when: &str,
) {
    // The packed owner/parent table mirrors the nodes through every
    // mutation (re-parenting, removal, revival).
    for (i, n) in catalog.nodes() {
        let link = catalog.link(i);
        assert_eq!(
            (link.tenant, link.parent()),
            (n.tenant, n.parent),
            "{} {when}",
            n.id
        );
    }
    let expected = reference_plans(world, hits);
    let expected_clear = reference_clearances(world, hits);
    let inheritance = Inheritance::build(catalog);
    let id = |i: ArtIdx| catalog.node(i).id.to_string();
    for (adv, record) in db.iter() {
        let impact = propagate::impact(catalog, &inheritance, db, adv);
        let steps = remedy::plan(catalog, &impact, PlanFor::All, &Actor::Admin);
        let depths: Vec<usize> = steps.iter().map(|s| s.depth).collect();
        assert!(depths.is_sorted(), "steps not top-down {when}: {depths:?}");
        let actual: BTreeSet<RefStep> = steps
            .iter()
            .map(|s| {
                (
                    catalog.tenant_id(s.tenant).to_string(),
                    id(s.artifact),
                    s.action.as_str(),
                    s.waits_for.map(id),
                    s.clears
                        .iter()
                        .map(|&a| id(a))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                )
            })
            .collect();
        let want = expected
            .get(record.id().as_str())
            .cloned()
            .unwrap_or_default();
        if actual != want {
            panic!(
                "remedy of {} disagrees {when}\n{}expected {want:#?}\nactual {actual:#?}",
                record.id(),
                describe(world)
            );
        }
        for t in 0..3 {
            let Some(ti) = catalog.tenant_idx(&format!("t{t}")) else {
                continue;
            };
            let mine = remedy::plan(catalog, &impact, PlanFor::Tenant(ti), &Actor::Admin);
            let from_all: Vec<&remedy::Step> = steps.iter().filter(|s| s.tenant == ti).collect();
            assert_eq!(
                mine.iter().collect::<Vec<_>>(),
                from_all,
                "tenant t{t} {when}"
            );
        }
        let clear: BTreeMap<String, (u64, u64)> = remedy::clearances(catalog, &impact)
            .into_iter()
            .map(|(u, c)| (id(u), (c.artifacts, c.tenants)))
            .collect();
        let want_sets = expected_clear
            .get(record.id().as_str())
            .cloned()
            .unwrap_or_default();
        let want: BTreeMap<String, (u64, u64)> = want_sets
            .iter()
            .map(|(u, (a, t))| (u.clone(), (a.len() as u64, *t)))
            .collect();
        // What a patch notice is about: the artifacts themselves, for
        // every artifact that could be superseded.
        for (u, _) in catalog.nodes() {
            let got: BTreeSet<String> = remedy::cleared_by(catalog, &impact, u)
                .into_iter()
                .map(|c| id(c.artifact))
                .collect();
            let want = want_sets
                .get(&id(u))
                .map(|(a, _)| a.clone())
                .unwrap_or_default();
            assert_eq!(got, want, "cleared_by({}) of {} {when}", id(u), record.id());
        }
        assert_eq!(
            clear,
            want,
            "clearances of {} {when}\n{}",
            record.id(),
            describe(world)
        );
    }
}

// ---------------------------------------------------------------------------
// Random worlds
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct NodeSeed {
    kind: u8,
    parent: Option<Index>,
    inv: u8,
    edits: [u8; 5],
    fixes: u8,
    spelling: u8,
}

fn node_seed() -> impl Strategy<Value = NodeSeed> {
    (
        0u8..10,
        prop::option::weighted(0.85, any::<Index>()),
        0u8..100,
        any::<[u8; 5]>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(kind, parent, inv, edits, fixes, spelling)| NodeSeed {
            kind,
            parent,
            inv,
            edits,
            fixes,
            spelling,
        })
}

#[derive(Clone, Debug)]
struct RangeSeed {
    last_affected: bool,
    intros: Vec<(bool, Index)>,
    closers: Vec<Index>,
    limit: Option<Index>,
}

#[derive(Clone, Debug)]
struct EntrySeed {
    package: u8,
    ecosystem: u8,
    ranges: Vec<RangeSeed>,
    versions: Vec<Index>,
}

fn range_seed() -> impl Strategy<Value = RangeSeed> {
    (
        prop::bool::weighted(0.3),
        prop::collection::vec((prop::bool::weighted(0.3), any::<Index>()), 1..=2),
        prop::collection::vec(any::<Index>(), 0..=2),
        prop::option::weighted(0.1, any::<Index>()),
    )
        .prop_map(|(last_affected, intros, closers, limit)| RangeSeed {
            last_affected,
            intros,
            closers,
            limit,
        })
}

fn entry_seed() -> impl Strategy<Value = EntrySeed> {
    (
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(range_seed(), 1..=2),
        prop_oneof![
            7 => Just(Vec::new()),
            3 => prop::collection::vec(any::<Index>(), 1..=2),
        ],
    )
        .prop_map(|(package, ecosystem, ranges, versions)| EntrySeed {
            package,
            ecosystem,
            ranges,
            versions,
        })
}

#[derive(Clone, Debug)]
struct MutSeed {
    target: Index,
    op: u8,
    parent: Option<Index>,
    inv: u8,
    edits: [u8; 5],
    spelling: u8,
}

fn mut_seed() -> impl Strategy<Value = MutSeed> {
    (
        any::<Index>(),
        0u8..4,
        prop::option::weighted(0.85, any::<Index>()),
        0u8..100,
        any::<[u8; 5]>(),
        any::<u8>(),
    )
        .prop_map(|(target, op, parent, inv, edits, spelling)| MutSeed {
            target,
            op,
            parent,
            inv,
            edits,
            spelling,
        })
}

#[derive(Clone, Debug)]
struct WorldSeed {
    nodes: Vec<NodeSeed>,
    early: Index,
    advisories: Vec<Vec<EntrySeed>>,
    failures: Vec<(Index, u8)>,
}

fn world_seed() -> impl Strategy<Value = WorldSeed> {
    (
        prop::collection::vec(node_seed(), 1..=20),
        any::<Index>(),
        prop::collection::vec(prop::collection::vec(entry_seed(), 1..=2), 2..=3),
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..=2),
    )
        .prop_map(|(nodes, early, advisories, failures)| WorldSeed {
            nodes,
            early,
            advisories,
            failures,
        })
}

const OPENSSL_VERSIONS: &[&str] = &[
    "3.0.2-0ubuntu1.10",
    "3.0.2-0ubuntu1.12",
    "3.0.9-1",
    "3.0.11-1~deb11u1",
    "3.0.11-1~deb12u1",
    "3.0.11-1~deb12u2",
    "0:3.0.11-1~deb12u2",
    "3.0.11-1",
    "3.0.11-1+b1",
    "3.0.12-1",
    "3.0.13-1~deb12u1",
];
const BASH_VERSIONS: &[&str] = &[
    "5.1-6",
    "5.2.15-2",
    "0:5.2.15-2",
    "5.2.15-2+b2",
    "5.2.15-2+b7",
    "5.2.15-3",
    "5.2.21-2",
];
const ZLIB_VERSIONS: &[&str] = &[
    "1.3-1",
    "1:1.2.13.dfsg-1",
    "1:1.2.13.dfsg-1+b1",
    "1:1.3.dfsg-3~bpo",
    "1:1.3.dfsg-3",
];
const UTIL_LINUX_VERSIONS: &[&str] = &["2.38.1-5", "2.38.1-5+deb12u1", "1:2.38.1-5+b1", "2.38.1-6"];

/// Advisory package names (source packages, plus binary names that must
/// never match a binary whose source differs), weighted.
const PACKAGES: [(&str, &[&str]); 12] = [
    ("openssl", OPENSSL_VERSIONS),
    ("openssl", OPENSSL_VERSIONS),
    ("openssl", OPENSSL_VERSIONS),
    ("openssl", OPENSSL_VERSIONS),
    ("bash", BASH_VERSIONS),
    ("bash", BASH_VERSIONS),
    ("bash", BASH_VERSIONS),
    ("zlib", ZLIB_VERSIONS),
    ("zlib", ZLIB_VERSIONS),
    ("util-linux", UTIL_LINUX_VERSIONS),
    ("util-linux", UTIL_LINUX_VERSIONS),
    ("libssl3", OPENSSL_VERSIONS),
];
const ECOSYSTEMS: [&str; 10] = [
    "Debian:12",
    "Debian:12",
    "Debian:12",
    "Debian:12",
    "Debian:12",
    "Debian:12",
    "Debian",
    "Debian",
    "Debian:11",
    "Ubuntu:22.04",
];

fn kind_of(seed: u8) -> Kind {
    match seed % 10 {
        0..=3 => Kind::Image,
        4 | 5 => Kind::Template,
        6 | 7 => Kind::Replica,
        _ => Kind::Instance,
    }
}

/// An inventory edited slot by slot from `base` (universe indexes);
/// `grand` is the effective inventory of the parent's parent, which an edit
/// may restore (a reintroduction when the parent changed it).
fn edit(
    base: &BTreeSet<usize>,
    grand: Option<&BTreeSet<usize>>,
    edits: &[u8; 5],
    root: bool,
) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for (slot, &op) in SLOTS.iter().zip(edits) {
        let pick = |k: u8| slot[usize::from(k) % slot.len()];
        if root {
            if op % 4 != 0 {
                out.insert(pick(op / 4));
            }
            continue;
        }
        let in_slot = |set: &BTreeSet<usize>| -> Vec<usize> {
            set.iter().copied().filter(|i| slot.contains(i)).collect()
        };
        let current = in_slot(base);
        let restored = grand.map(in_slot).unwrap_or_default();
        match op % 16 {
            0..=6 => out.extend(current),
            7..=9 => {} // removed
            10..=12 => {
                // upgraded, downgraded, reintroduced or left as is
                out.insert(pick(op / 16));
            }
            _ if !restored.is_empty() => out.extend(restored),
            _ => {
                // another version alongside
                out.extend(current);
                out.insert(pick(op / 16));
            }
        }
    }
    out
}

fn spell(items: &BTreeSet<usize>, spelling: u8) -> Vec<String> {
    let mut list: Vec<String> = items
        .iter()
        .map(|&i| {
            if (spelling >> (i % 7)) & 1 == 1 {
                respell(UNIVERSE[i])
            } else {
                UNIVERSE[i].to_string()
            }
        })
        .collect();
    if spelling & 0x80 != 0 {
        list.reverse();
    }
    list
}

fn effective_items(forest: &[RNode], a: usize) -> BTreeSet<usize> {
    effective(forest, a)
        .iter()
        .map(|c| universe_index(c))
        .collect()
}

fn fixes_of(seed: u8) -> Vec<String> {
    let mut fixes = Vec::new();
    if seed.is_multiple_of(6) {
        fixes.push("FAIL-1".to_string());
    }
    if (seed / 6).is_multiple_of(6) {
        fixes.push("FAIL-2".to_string());
    }
    if (seed / 36).is_multiple_of(4) {
        fixes.push("FAIL-OTHER".to_string());
    }
    fixes
}

fn realize_forest(seeds: &[NodeSeed]) -> Vec<RNode> {
    let mut forest: Vec<RNode> = Vec::new();
    for (i, s) in seeds.iter().enumerate() {
        let kind = kind_of(s.kind);
        let candidates: Vec<usize> = (0..i)
            .filter(|&j| Relation::between(forest[j].kind, kind).is_some())
            .collect();
        // Half the time one of the latest candidates: deeper chains.
        let parent = s.parent.filter(|_| !candidates.is_empty()).map(|ix| {
            let len = candidates.len();
            match ix.index(2 * len) {
                k if k < len => candidates[k],
                k => candidates[len - 1 - (k - len) % len.min(3)],
            }
        });
        let threshold = match (parent, kind) {
            (None, _) => 85,
            (Some(_), Kind::Image) => 65,
            _ => 25,
        };
        let inv = (s.inv < threshold).then(|| {
            let base = parent
                .map(|p| effective_items(&forest, p))
                .unwrap_or_default();
            let grand = parent
                .and_then(|p| forest[p].parent)
                .map(|g| effective_items(&forest, g));
            spell(
                &edit(&base, grand.as_ref(), &s.edits, parent.is_none()),
                s.spelling,
            )
        });
        forest.push(RNode {
            id: format!("a{i}"),
            kind,
            tenant: format!("t{}", i % 3),
            parent,
            inv,
            fixes: fixes_of(s.fixes),
            removed: false,
        });
    }
    forest
}

fn realize_advisory(k: usize, seeds: &[EntrySeed]) -> RefAdvisory {
    let entries = seeds
        .iter()
        .map(|e| {
            let (name, pool) = PACKAGES[usize::from(e.package) % PACKAGES.len()];
            let pick = |ix: &Index| pool[ix.index(pool.len())].to_string();
            let ranges = e
                .ranges
                .iter()
                .map(|r| {
                    let mut events: Vec<Ev> = r
                        .intros
                        .iter()
                        .map(|(zero, ix)| Ev::Introduced(if *zero { "0".into() } else { pick(ix) }))
                        .collect();
                    events.extend(r.closers.iter().map(|ix| {
                        if r.last_affected {
                            Ev::LastAffected(pick(ix))
                        } else {
                            Ev::Fixed(pick(ix))
                        }
                    }));
                    events.extend(r.limit.iter().map(|ix| Ev::Limit(pick(ix))));
                    // Document order is not version order.
                    if r.intros.len() == 2 && r.intros[1].1.index(2) == 1 {
                        events.reverse();
                    }
                    events
                })
                .collect();
            RefEntry {
                ecosystem: ECOSYSTEMS[usize::from(e.ecosystem) % ECOSYSTEMS.len()].into(),
                name: name.into(),
                ranges,
                versions: e.versions.iter().map(pick).collect(),
            }
        })
        .collect();
    RefAdvisory {
        id: format!("DSA-{k}"),
        withdrawn: false,
        entries,
    }
}

/// Would affect nearly everything, were it not withdrawn.
fn withdrawn_advisory() -> RefAdvisory {
    RefAdvisory {
        id: "WD-1".into(),
        withdrawn: true,
        entries: ["openssl", "bash", "zlib", "util-linux"]
            .iter()
            .map(|name| RefEntry {
                ecosystem: "Debian".into(),
                name: (*name).into(),
                ranges: vec![vec![Ev::Introduced("0".into())]],
                versions: vec![],
            })
            .collect(),
    }
}

fn realize(seed: &WorldSeed) -> World {
    let forest = realize_forest(&seed.nodes);
    let n = forest.len();
    let mut advisories: Vec<RefAdvisory> = seed
        .advisories
        .iter()
        .enumerate()
        .map(|(k, a)| realize_advisory(k + 1, a))
        .collect();
    advisories.insert(seed.early.index(advisories.len() + 1), withdrawn_advisory());
    let failures = seed
        .failures
        .iter()
        .enumerate()
        .map(|(k, (ix, w))| RFailure {
            id: format!("FAIL-{}", k + 1),
            artifact: ix.index(n),
            withdrawn: w % 10 == 0,
        })
        .collect();
    World {
        forest,
        advisories,
        failures,
        early: seed.early.index(n + 1),
    }
}

fn is_descendant(forest: &[RNode], j: usize, t: usize) -> bool {
    let mut x = j;
    while let Some(p) = forest[x].parent {
        if p == t {
            return true;
        }
        x = p;
    }
    false
}

/// Re-parents and/or re-inventories one artifact (op 0: parent, 1:
/// inventory, 2: both), in the reference and through
/// `Catalog::apply(Mode::Upsert)`, which also brings a removed artifact
/// back; or removes a leaf (op 3).
fn mutate(world: &mut World, catalog: &mut Catalog, m: &MutSeed) -> String {
    let forest = &mut world.forest;
    let n = forest.len();
    let t = m.target.index(n);
    if m.op == 3 {
        let live_children = (0..n).any(|c| !forest[c].removed && forest[c].parent == Some(t));
        if forest[t].removed || live_children {
            return format!("nothing ({} cannot be removed)", forest[t].id);
        }
        catalog
            .remove(&forest[t].id, &Actor::Admin)
            .unwrap_or_else(|e| panic!("removing {}: {e}", forest[t].id));
        forest[t].removed = true;
        return format!("remove {}", forest[t].id);
    }
    let mut node = forest[t].clone();
    let parent_gone = node.parent.is_some_and(|p| forest[p].removed);
    if m.op != 1 || parent_gone {
        let candidates: Vec<usize> = (0..n)
            .filter(|&j| {
                j != t
                    && !forest[j].removed
                    && !is_descendant(forest, j, t)
                    && Relation::between(forest[j].kind, node.kind).is_some()
            })
            .collect();
        node.parent = m
            .parent
            .filter(|_| !candidates.is_empty())
            .map(|ix| candidates[ix.index(candidates.len())]);
    }
    if m.op != 0 {
        node.inv = if m.inv < 25 && node.parent.is_some() {
            None
        } else {
            let base = effective_items(forest, t);
            let grand = node.parent.map(|p| effective_items(forest, p));
            Some(spell(
                &edit(&base, grand.as_ref(), &m.edits, false),
                m.spelling,
            ))
        };
    }
    let what = format!(
        "upsert {}{} parent={} inv={:?}",
        node.id,
        if node.removed { " (back)" } else { "" },
        node.parent.map_or("-", |p| forest[p].id.as_str()),
        node.inv
    );
    node.removed = false;
    forest[t] = node;
    catalog
        .apply(&spec_of(forest, t), Mode::Upsert, &Actor::Admin)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    what
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 800,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn propagation_matches_the_naive_reference(
        seed in world_seed(),
        mutations in prop::collection::vec(mut_seed(), 0..=4),
    ) {
        let mut world = realize(&seed);
        let (mut catalog, db) = build(&world);
        let hits = verify(&world, &catalog, &db, "after creation");
        verify_remedy(&world, &catalog, &db, &hits, "after creation");
        let mut done = Vec::new();
        for m in &mutations {
            done.push(mutate(&mut world, &mut catalog, m));
            let hits = verify(&world, &catalog, &db, &format!("after {done:?}"));
            verify_remedy(&world, &catalog, &db, &hits, &format!("after {done:?}"));
        }
    }
}

/// What a world's hits show, for the coverage test.
fn features(world: &World, hits: &BTreeSet<Hit>) -> BTreeSet<&'static str> {
    let forest = &world.forest;
    let index = |id: &str| forest.iter().position(|n| n.id == id).unwrap();
    let eff: Vec<BTreeSet<String>> = (0..forest.len()).map(|a| effective(forest, a)).collect();
    let mut seen = BTreeSet::new();
    for (art, _, what, intro, fixed, _) in hits {
        let (a, x) = (index(art), index(intro));
        if what == "failure" {
            continue;
        }
        seen.insert(if fixed.is_some() {
            "fixed known"
        } else {
            "no fix"
        });
        if a != x {
            seen.insert("inherited or passed down");
        }
        // Reintroduced: some ancestor above the introducer held it too.
        let mut y = forest[x].parent;
        while let Some(p) = y {
            if eff[p].contains(what) {
                seen.insert("reintroduced");
            }
            y = forest[p].parent;
        }
        // Masked: a child of an affected artifact without the component.
        for (c, node) in forest.iter().enumerate() {
            if node.parent == Some(a) && !node.removed && !eff[c].contains(what) {
                seen.insert("masked");
            }
        }
    }
    let failed = |a: &str| hits.iter().any(|h| h.0 == a && h.2 == "failure");
    for node in forest.iter().filter(|n| !n.removed) {
        if let Some(p) = node.parent {
            if failed(&forest[p].id) && !failed(&node.id) {
                seen.insert("failure masked by fixes");
            }
            if node.inv.is_none() {
                seen.insert("inherits");
            }
        }
    }
    if hits.iter().any(|h| index(&h.0) >= world.early) {
        seen.insert("late artifact affected");
    }
    seen
}

/// The generator exercises what it is meant to: inheritance, masking,
/// reintroduction, fixes with and without a version, failures masked by
/// `fixes`, artifacts created after the advisories, and mutations that
/// change the answer.
#[test]
fn random_worlds_cover_the_interesting_cases() {
    let mut runner = TestRunner::deterministic();
    let strategy = (world_seed(), prop::collection::vec(mut_seed(), 1..=4));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let cases = 300;
    for _ in 0..cases {
        let (seed, mutations) = strategy.new_tree(&mut runner).unwrap().current();
        let mut world = realize(&seed);
        let (mut catalog, _db) = build(&world);
        let mut hits = reference(&world);
        let mut seen = features(&world, &hits);
        for m in &mutations {
            let what = mutate(&mut world, &mut catalog, m);
            let after = reference(&world);
            if after != hits {
                seen.insert(match what.split(' ').next() {
                    Some("remove") => "a removal changed the answer",
                    _ if what.contains("(back)") => "a revival changed the answer",
                    _ if m.op == 0 => "a re-parenting changed the answer",
                    _ => "a re-inventory changed the answer",
                });
            }
            hits = after;
            seen.extend(features(&world, &hits));
        }
        for s in seen {
            *counts.entry(s).or_default() += 1;
        }
    }
    eprintln!("cases out of {cases} with: {counts:#?}");
    for what in [
        "fixed known",
        "no fix",
        "inherited or passed down",
        "reintroduced",
        "masked",
        "failure masked by fixes",
        "inherits",
        "late artifact affected",
        "a removal changed the answer",
        "a re-parenting changed the answer",
        "a re-inventory changed the answer",
    ] {
        let n = counts.get(what).copied().unwrap_or(0);
        assert!(n >= cases / 20, "only {n} of {cases} cases have: {what}");
    }
}

// ---------------------------------------------------------------------------
// Hand-written cases
// ---------------------------------------------------------------------------

#[test]
fn universe_is_well_formed() {
    let canonicals: BTreeSet<String> = UNIVERSE.iter().map(|u| canonical(u)).collect();
    assert_eq!(canonicals.len(), UNIVERSE.len());
    // The reference reads the same facts as the catalog does.
    let mut catalog = Catalog::new();
    let forest = vec![RNode {
        id: "all".into(),
        kind: Kind::Image,
        tenant: "t".into(),
        parent: None,
        inv: Some(UNIVERSE.iter().map(|u| respell(u)).collect()),
        fixes: vec![],
        removed: false,
    }];
    create(&mut catalog, &forest, 0);
    for u in UNIVERSE {
        assert_eq!(canonical(u), canonical(&respell(u)));
        let r = ref_comp(u);
        let id = catalog.components().find(&r.canonical).unwrap();
        assert_eq!(
            catalog.components().get(id).match_version(),
            r.match_version
        );
    }
    let r = ref_comp(LIBSSL3_SRCV);
    assert_eq!(
        (r.source.as_str(), r.match_version.as_str()),
        ("openssl", "3.0.11-1")
    );
    let r = ref_comp(BASH_B2);
    assert_eq!(
        (r.source.as_str(), r.match_version.as_str()),
        ("bash", "5.2.15-2")
    );
    let r = ref_comp(OPENSSL_UBU);
    assert_eq!(
        (r.family.as_str(), r.release.as_deref()),
        ("ubuntu", Some("22.04"))
    );
    assert_eq!(ref_comp(OPENSSL_D11).release.as_deref(), Some("11"));
}

#[test]
fn reference_range_rule() {
    let ev = |s: &str| {
        let (k, v) = s.split_once('=').unwrap();
        let v = v.to_string();
        match k {
            "i" => Ev::Introduced(v),
            "f" => Ev::Fixed(v),
            "l" => Ev::LastAffected(v),
            _ => Ev::Limit(v),
        }
    };
    let r = |events: &str, v: &str| {
        let events: Vec<Ev> = events.split(' ').map(ev).collect();
        range_hit(&events, v)
    };
    assert_eq!(r("i=0 f=1.2-1", "1.1-1"), Some(Some("1.2-1".into())));
    assert_eq!(r("i=0 f=1.2-1", "1.2-1"), None);
    assert_eq!(
        r("i=0 f=1.2-1", "1.2-1~deb12u1"),
        Some(Some("1.2-1".into()))
    );
    assert_eq!(
        r("i=2.0-1 f=2.5-1 i=0 f=1.5-1", "2.1-1"),
        Some(Some("2.5-1".into()))
    );
    assert_eq!(r("i=2.0-1 f=2.5-1 i=0 f=1.5-1", "1.6-1"), None);
    assert_eq!(
        r("i=0 f=1.5-1 i=2.0-1 f=2.5-1", "1.0-1"),
        Some(Some("1.5-1".into()))
    );
    assert_eq!(r("i=0 l=1.5-1", "1.5-1"), Some(None));
    assert_eq!(r("i=0 l=1.5-1", "1.5-2"), None);
    assert_eq!(r("i=1.0-1 f=1.0-1", "1.0-1"), None);
    // Equal versions keep their listed order.
    assert_eq!(
        r("i=0 f=1.0-1 i=1.0-1 f=2.0-1", "1.0-1"),
        Some(Some("2.0-1".into()))
    );
    assert_eq!(
        r("i=0 f=1.0-1 i=1.0-1 f=2.0-1", "0.9-1"),
        Some(Some("1.0-1".into()))
    );
    assert_eq!(r("i=0 f=1.0-1 i=1.0-1 f=2.0-1", "2.0-1"), None);
    assert_eq!(r("i=1.0-1 l=1.0-1", "1.0-1"), Some(None));
    assert_eq!(r("i=1.0-1 l=1.0-1", "1.0-2"), None);
    assert_eq!(r("i=1.0-1 x=2.0-1", "1.9-1"), Some(None));
    assert_eq!(r("i=1.0-1 x=2.0-1", "2.0-1"), None);
}

/// One artifact of a hand-written case.
#[derive(Clone, Debug)]
struct Art {
    id: &'static str,
    kind: Kind,
    parent: Option<&'static str>,
    inv: Option<Vec<&'static str>>,
    fixes: Vec<&'static str>,
    late: bool,
}

fn art(id: &'static str, kind: Kind, parent: Option<&'static str>) -> Art {
    Art {
        id,
        kind,
        parent,
        inv: None,
        fixes: vec![],
        late: false,
    }
}

impl Art {
    fn inv(mut self, purls: &[&'static str]) -> Art {
        self.inv = Some(purls.to_vec());
        self
    }

    fn fixes(mut self, ids: &[&'static str]) -> Art {
        self.fixes = ids.to_vec();
        self
    }

    /// Created after the advisories are published.
    fn late(mut self) -> Art {
        self.late = true;
        self
    }
}

fn advisory(id: &str, ecosystem: &str, name: &str, events: &[(&str, &str)]) -> RefAdvisory {
    RefAdvisory {
        id: id.into(),
        withdrawn: false,
        entries: vec![RefEntry {
            ecosystem: ecosystem.into(),
            name: name.into(),
            ranges: vec![
                events
                    .iter()
                    .map(|&(k, v)| match k {
                        "introduced" => Ev::Introduced(v.into()),
                        "fixed" => Ev::Fixed(v.into()),
                        "last_affected" => Ev::LastAffected(v.into()),
                        _ => Ev::Limit(v.into()),
                    })
                    .collect(),
            ],
            versions: vec![],
        }],
    }
}

/// Builds the case, checks `impact` against `expected` (artifact, record,
/// purl or "failure", introduced_by), then `impact`, `check_artifact` and the
/// reference against each other. Answers every hit in full.
fn check(
    arts: &[Art],
    advisories: &[RefAdvisory],
    failures: &[(&str, &str)],
    expected: &[(&str, &str, &str, &str)],
) -> BTreeSet<Hit> {
    let index = |id: &str| arts.iter().position(|a| a.id == id).unwrap();
    let early = arts.iter().take_while(|a| !a.late).count();
    assert!(arts[early..].iter().all(|a| a.late));
    let world = World {
        forest: arts
            .iter()
            .map(|a| RNode {
                id: a.id.into(),
                kind: a.kind,
                tenant: "acme".into(),
                parent: a.parent.map(index),
                inv: a
                    .inv
                    .as_ref()
                    .map(|i| i.iter().map(|p| p.to_string()).collect()),
                fixes: a.fixes.iter().map(|f| f.to_string()).collect(),
                removed: false,
            })
            .collect(),
        advisories: advisories.to_vec(),
        failures: failures
            .iter()
            .map(|&(id, on)| RFailure {
                id: id.into(),
                artifact: index(on),
                withdrawn: false,
            })
            .collect(),
        early,
    };
    let (catalog, db) = build(&world);
    let got: BTreeSet<(String, String, String, String)> = real_impact(&catalog, &db)
        .into_iter()
        .map(|h| (h.0, h.1, h.2, h.3))
        .collect();
    let want: BTreeSet<(String, String, String, String)> = expected
        .iter()
        .map(|&(a, r, p, i)| {
            let p = if p == "failure" {
                p.to_string()
            } else {
                canonical(p)
            };
            (a.to_string(), r.to_string(), p, i.to_string())
        })
        .collect();
    assert_eq!(got, want, "\n{}", describe(&world));
    verify(&world, &catalog, &db, "hand-written")
}

fn openssl_fixed_in_u2() -> RefAdvisory {
    advisory(
        "DSA-1",
        "Debian:12",
        "openssl",
        &[("introduced", "0"), ("fixed", "3.0.11-1~deb12u2")],
    )
}

#[test]
fn masking_by_upgrade() {
    let hits = check(
        &[
            art("base", Kind::Image, None).inv(&[OPENSSL_U1, BASH_B2]),
            art("tpl", Kind::Template, Some("base")),
            art("upg", Kind::Image, Some("base")).inv(&[OPENSSL_U2, BASH_B2]),
            art("vm", Kind::Instance, Some("upg")),
        ],
        &[openssl_fixed_in_u2()],
        &[],
        &[
            ("base", "DSA-1", OPENSSL_U1, "base"),
            ("tpl", "DSA-1", OPENSSL_U1, "base"),
        ],
    );
    assert!(
        hits.iter()
            .all(|h| h.4.as_deref() == Some("3.0.11-1~deb12u2"))
    );
    let paths: Vec<&Vec<String>> = hits.iter().map(|h| &h.5).collect();
    assert_eq!(
        paths,
        [
            &vec!["base".to_string()],
            &vec!["base".into(), "tpl".into()]
        ]
    );
}

#[test]
fn masking_by_removal() {
    check(
        &[
            art("base", Kind::Image, None).inv(&[OPENSSL_U1, BASH_B2]),
            art("vm0", Kind::Instance, Some("base")),
            art("slim", Kind::Image, Some("base")).inv(&[BASH_B2]),
            art("tpl", Kind::Template, Some("slim")),
            art("rep", Kind::Replica, Some("tpl")),
            art("vm", Kind::Instance, Some("rep")),
        ],
        &[openssl_fixed_in_u2()],
        &[],
        &[
            ("base", "DSA-1", OPENSSL_U1, "base"),
            ("vm0", "DSA-1", OPENSSL_U1, "base"),
        ],
    );
}

#[test]
fn reintroduction_further_down() {
    check(
        &[
            art("base", Kind::Image, None).inv(&[OPENSSL_U1, BASH_B2]),
            art("mid", Kind::Image, Some("base")).inv(&[BASH_B2]),
            art("re", Kind::Image, Some("mid")).inv(&[OPENSSL_U1, BASH_B2]),
            art("tpl", Kind::Template, Some("re")),
            art("vm", Kind::Instance, Some("tpl")),
            // Its own inventory, same purl (spelled differently): the
            // chain holding it goes on up to `re`.
            art("again", Kind::Image, Some("re"))
                .inv(&["pkg:deb/debian/openssl@3.0.11-1~deb12u1?distro=debian-12&arch=amd64"]),
            art("up", Kind::Image, Some("re")).inv(&[OPENSSL_U2]),
            art("vm2", Kind::Instance, Some("up")),
        ],
        &[openssl_fixed_in_u2()],
        &[],
        &[
            ("base", "DSA-1", OPENSSL_U1, "base"),
            ("re", "DSA-1", OPENSSL_U1, "re"),
            ("tpl", "DSA-1", OPENSSL_U1, "re"),
            ("vm", "DSA-1", OPENSSL_U1, "re"),
            ("again", "DSA-1", OPENSSL_U1, "re"),
        ],
    );
}

#[test]
fn source_packages_match_through_upstream() {
    check(
        &[
            art("img", Kind::Image, None).inv(&[LIBSSL3_BIN, LIBSSL3_SRCV, BSDUTILS_B1]),
            art("vm", Kind::Instance, Some("img")),
        ],
        &[
            // The binary version of LIBSSL3_SRCV is the fix, its source
            // version is below it.
            advisory(
                "DSA-SRC",
                "Debian:12",
                "openssl",
                &[("introduced", "0"), ("fixed", "3.0.11-1+b1")],
            ),
            // Only binary versions are at or above the introduction.
            advisory(
                "DSA-BIN",
                "Debian:12",
                "openssl",
                &[("introduced", "3.0.11-1+b1")],
            ),
            // The binary's epoch puts it above the fix; the source is not.
            advisory(
                "DSA-UL",
                "Debian",
                "util-linux",
                &[("introduced", "0"), ("fixed", "2.38.1-5+deb12u1")],
            ),
            // Distribution advisories name source packages.
            advisory("DSA-NAME", "Debian:12", "libssl3", &[("introduced", "0")]),
            advisory("DSA-11", "Debian:11", "openssl", &[("introduced", "0")]),
            advisory("USN-1", "Ubuntu:22.04", "openssl", &[("introduced", "0")]),
        ],
        &[],
        &[
            ("img", "DSA-SRC", LIBSSL3_BIN, "img"),
            ("img", "DSA-SRC", LIBSSL3_SRCV, "img"),
            ("img", "DSA-UL", BSDUTILS_B1, "img"),
            ("vm", "DSA-SRC", LIBSSL3_BIN, "img"),
            ("vm", "DSA-SRC", LIBSSL3_SRCV, "img"),
            ("vm", "DSA-UL", BSDUTILS_B1, "img"),
        ],
    );
}

#[test]
fn failure_masked_by_fixes_on_a_template() {
    check(
        &[
            art("base", Kind::Image, None).inv(&[BASH_B2]),
            art("bvm", Kind::Instance, Some("base")),
            art("child", Kind::Image, Some("base")),
            art("cvm", Kind::Instance, Some("child")),
            art("tpl", Kind::Template, Some("base")).fixes(&["F-1"]),
            art("tvm", Kind::Instance, Some("tpl")),
            art("rep", Kind::Replica, Some("tpl")),
            art("rvm", Kind::Instance, Some("rep")),
        ],
        &[],
        &[("F-1", "base"), ("F-2", "tpl")],
        &[
            ("base", "F-1", "failure", "base"),
            ("bvm", "F-1", "failure", "base"),
            ("child", "F-1", "failure", "base"),
            ("cvm", "F-1", "failure", "base"),
            // `fixes` is per failure: F-2 is not fixed on the template.
            ("tpl", "F-2", "failure", "tpl"),
            ("tvm", "F-2", "failure", "tpl"),
            ("rep", "F-2", "failure", "tpl"),
            ("rvm", "F-2", "failure", "tpl"),
        ],
    );
}

#[test]
fn withdrawn_advisory_affects_nothing() {
    let hits = check(
        &[
            art("base", Kind::Image, None).inv(&[OPENSSL_U1, BASH_B2, ZLIB_13]),
            art("vm", Kind::Instance, Some("base")).late(),
        ],
        &[withdrawn_advisory(), openssl_fixed_in_u2()],
        &[],
        &[
            ("base", "DSA-1", OPENSSL_U1, "base"),
            ("vm", "DSA-1", OPENSSL_U1, "base"),
        ],
    );
    assert!(hits.iter().all(|h| h.1 != "WD-1"));
}

#[test]
fn late_instance_is_checked_like_impact() {
    let arts = [
        art("base", Kind::Image, None).inv(&[OPENSSL_U1, BASH_B2]),
        art("tpl", Kind::Template, Some("base")),
        art("vm", Kind::Instance, Some("tpl")).late(),
        art("vm-new", Kind::Instance, Some("tpl"))
            .late()
            .inv(&[OPENSSL_13, BASH_B2]),
    ];
    let advisories = [openssl_fixed_in_u2()];
    check(
        &arts,
        &advisories,
        &[],
        &[
            ("base", "DSA-1", OPENSSL_U1, "base"),
            ("tpl", "DSA-1", OPENSSL_U1, "base"),
            ("vm", "DSA-1", OPENSSL_U1, "base"),
        ],
    );
    // And explicitly, as the engine calls it for a new artifact.
    let forest: Vec<RNode> = arts
        .iter()
        .enumerate()
        .map(|(i, a)| RNode {
            id: a.id.into(),
            kind: a.kind,
            tenant: "acme".into(),
            parent: a
                .parent
                .map(|p| arts[..i].iter().position(|x| x.id == p).unwrap()),
            inv: a
                .inv
                .as_ref()
                .map(|v| v.iter().map(|p| p.to_string()).collect()),
            fixes: vec![],
            removed: false,
        })
        .collect();
    let world = World {
        forest,
        advisories: advisories.to_vec(),
        failures: vec![],
        early: 2,
    };
    let (catalog, db) = build(&world);
    let vm = catalog.lookup("vm").unwrap();
    let matches = propagate::check_artifact(&catalog, &db, vm);
    assert_eq!(matches.len(), 1);
    assert_eq!(db.get(matches[0].advisory).id().as_str(), "DSA-1");
    let [hit] = matches[0].hits.as_slice() else {
        panic!("{matches:?}")
    };
    assert_eq!(catalog.node(hit.introduced_by).id.as_str(), "base");
    assert_eq!(hit.fixed.as_deref(), Some("3.0.11-1~deb12u2"));
    let path: Vec<&str> = propagate::path(&catalog, hit.introduced_by, vm)
        .into_iter()
        .map(|a| catalog.node(a).id.as_str())
        .collect();
    assert_eq!(path, ["base", "tpl", "vm"]);
    let fresh = catalog.lookup("vm-new").unwrap();
    assert!(propagate::check_artifact(&catalog, &db, fresh).is_empty());
}

/// A batch that is rolled back must not leave anything of the components it
/// interned behind: `Components::truncate` forgets a dropped component's
/// first spelling and canonical form, but not the other spellings that
/// `intern` remembered for it, so once the index is reused by another
/// component those spellings resolve to the wrong package.
#[test]
fn rollback_forgets_every_spelling_of_dropped_components() {
    let spec = |id: &str, purls: &[&str]| ArtifactSpec {
        id: ArtifactId::new(id).unwrap(),
        kind: Kind::Image,
        tenant: TenantId::new("acme").unwrap(),
        name: None,
        parent: None,
        relation: None,
        visibility: Visibility::Private,
        labels: BTreeMap::new(),
        components: Some(purls.iter().map(|p| p.to_string()).collect()),
        supersedes: None,
        fixes: vec![],
        warnings: Vec::new(),
    };
    let mut catalog = Catalog::new();
    catalog
        .apply(&spec("keep", &[BASH_B2]), Mode::Create, &Actor::Admin)
        .unwrap();
    catalog.take_changes();
    // A batch (one imported file) that fails half-way: rolled back.
    let checkpoint = catalog.checkpoint();
    let other_spelling = respell(OPENSSL_U1);
    catalog
        .apply(&spec("x", &[OPENSSL_U1]), Mode::Create, &Actor::Admin)
        .unwrap();
    catalog
        .apply(&spec("y", &[&other_spelling]), Mode::Create, &Actor::Admin)
        .unwrap();
    catalog.rollback(checkpoint);
    // The retry: a new component takes the freed index, then `y` again.
    catalog
        .apply(&spec("z", &[ZLIB_13]), Mode::Create, &Actor::Admin)
        .unwrap();
    catalog
        .apply(&spec("y", &[&other_spelling]), Mode::Create, &Actor::Admin)
        .unwrap();
    let y = catalog.lookup("y").unwrap();
    let held: Vec<String> = catalog
        .effective_components(y)
        .into_iter()
        .map(|c| catalog.components().get(c).canonical.to_string())
        .collect();
    assert_eq!(
        held,
        [canonical(OPENSSL_U1)],
        "y lists openssl but the catalog holds something else"
    );
    // And so propagation misses it.
    let mut db = AdvisoryDb::new();
    let osv = osv::parse_json(openssl_fixed_in_u2().osv_json().as_bytes()).unwrap();
    let adv = db
        .publish(Record::Advisory(Advisory::compile(osv).unwrap()))
        .unwrap()
        .idx();
    let inheritance = Inheritance::build(&catalog);
    let impact = propagate::impact(&catalog, &inheritance, &db, adv);
    assert!(impact.iter().any(|(a, _)| a == y), "y is not reported");
}

/// Lineages deeper than the delta chains inventories are stored with: the
/// answer must not depend on where a chain is cut.
#[test]
fn long_lineages_with_deltas() {
    let mut forest: Vec<RNode> = Vec::new();
    for i in 0..24usize {
        let mut inv = vec![
            BASH_B2.to_string(),
            format!("pkg:deb/debian/filler{i}@1.0-1?arch=amd64&distro=debian-12"),
        ];
        if !(10..14).contains(&i) {
            inv.push(if i % 5 == 4 {
                respell(OPENSSL_U1)
            } else {
                OPENSSL_U1.to_string()
            });
        }
        if i % 3 == 0 {
            inv.push(ZLIB_13.to_string());
        }
        forest.push(RNode {
            id: format!("img{i}"),
            kind: Kind::Image,
            tenant: "acme".into(),
            parent: i.checked_sub(1),
            // Every other image inherits.
            inv: (i % 2 == 0 || i == 13).then_some(inv),
            fixes: vec![],
            removed: false,
        });
    }
    let world = World {
        forest,
        advisories: vec![
            openssl_fixed_in_u2(),
            advisory("DSA-Z", "Debian", "zlib", &[("introduced", "0")]),
        ],
        failures: vec![],
        early: 24,
    };
    let (catalog, db) = build(&world);
    let hits = verify(&world, &catalog, &db, "on a long lineage");
    let intro = |art: &str| {
        hits.iter()
            .find(|h| h.0 == art && h.1 == "DSA-1")
            .map(|h| h.3.as_str())
    };
    assert_eq!(intro("img9"), Some("img0"));
    assert_eq!(intro("img12"), None);
    assert_eq!(intro("img14"), Some("img14"));
    assert_eq!(intro("img23"), Some("img14"));
}
