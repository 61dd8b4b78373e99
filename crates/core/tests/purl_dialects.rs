//! Purls as scanners write them: the release in `distro=` as a bare
//! version or codename read with the purl namespace, the source package in
//! `source=`/`source_version=` (deb), `origin=` (apk) and `sourcerpm=`
//! (rpm) besides syft's `upstream=`, and the Go toolchain as `go`/`stdlib`
//! with `go1.x` versions. Each case goes through the catalog and
//! `check_artifact`, the path every import takes: the record must affect
//! the component, and a record of another release must not.
//!
//! The purls come from the tools' own test data (see
//! `testdata/purls/osv-scalibr-ecosystems.tsv`, `testdata/SOURCES.md`);
//! where a tool's tests build the purl from fields, the text is the one its
//! writer produces (qualifiers sorted by key).

use std::collections::BTreeMap;
use std::path::PathBuf;

use patchline_core::propagate;
use patchline_core::{
    Actor, Advisory, AdvisoryDb, ArtifactId, ArtifactSpec, Catalog, Kind, Mode, Published, Record,
    TenantId, Visibility,
};
use patchline_formats::inventory::{Format, Hint, parse};
use patchline_formats::osv;
use serde_json::{Value, json};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// An OSV record with one `affected` entry per (ecosystem, events).
fn record(id: &str, name: &str, entries: &[(&str, &str, Value)]) -> Value {
    let affected: Vec<Value> = entries
        .iter()
        .map(|(ecosystem, range_type, events)| {
            json!({
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": range_type, "events": events}],
            })
        })
        .collect();
    json!({"id": id, "modified": "2024-01-01T00:00:00Z", "affected": affected})
}

/// Record id -> `fixed` of every record that affects an image holding
/// exactly `purls`.
fn affected_by(purls: &[&str], records: &[Value]) -> BTreeMap<String, Option<String>> {
    let mut catalog = Catalog::new();
    let mut db = AdvisoryDb::new();
    for r in records {
        let parsed = osv::parse_json(r.to_string().as_bytes()).unwrap();
        let compiled = Advisory::compile(parsed).unwrap();
        assert!(
            compiled.unsupported.is_empty(),
            "{}",
            compiled.unsupported.join("; ")
        );
        assert!(matches!(
            db.publish(Record::Advisory(compiled)),
            Ok(Published::New(_))
        ));
    }
    let spec = ArtifactSpec {
        id: ArtifactId::new("img").unwrap(),
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
    catalog
        .apply(&spec, Mode::Create, &Actor::Admin)
        .unwrap_or_else(|e| panic!("{purls:?}: {e}"));
    let a = catalog.lookup("img").unwrap();
    propagate::check_artifact(&catalog, &db, a)
        .into_iter()
        .map(|m| {
            let fixed = m
                .hits
                .iter()
                .find_map(|h| h.fixed.as_deref().map(str::to_string));
            (db.get(m.advisory).id().to_string(), fixed)
        })
        .collect()
}

fn ids(found: &BTreeMap<String, Option<String>>) -> Vec<&str> {
    found.keys().map(String::as_str).collect()
}

/// A release of the same distribution that the component is not on.
fn other_release(ecosystem: &str) -> Option<&'static str> {
    let (family, release) = ecosystem.split_once(':')?;
    if release.is_empty() {
        return None;
    }
    match family {
        "Alpine" => Some("Alpine:v3.1"),
        "Debian" => Some("Debian:3"),
        "Ubuntu" => Some("Ubuntu:14.04:LTS"),
        _ => None,
    }
}

/// osv-scalibr's own table of purl -> OSV ecosystem (TestFromPURL): every
/// row whose ecosystem patchline evaluates matches that ecosystem's record,
/// and rows that name a release do not match another release's.
#[test]
fn osv_scalibr_purls_match_the_ecosystem_osv_scalibr_derives() {
    let table = std::fs::read_to_string(testdata("purls/osv-scalibr-ecosystems.tsv")).unwrap();
    let mut checked = 0;
    let mut not_evaluated = Vec::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.split('\t');
        let (purl, want, desc) = (
            cols.next().unwrap(),
            cols.next().unwrap(),
            cols.next().unwrap(),
        );
        let (name, fix) = match purl {
            p if p.starts_with("pkg:npm/") => ("foo", "1.0.1"),
            _ => ("nginx", "1.18.1"),
        };
        // osv-scalibr gives no ecosystem for npm purls with `distro`; they
        // are npm packages all the same, and the qualifier is ignored.
        let ecosystem = match want {
            "" => "npm",
            // Not osv.dev ecosystems: the purl names no release (just the
            // distribution), and a purl whose release is unknown matches
            // every release of its distribution.
            "Ubuntu:ubuntu" => "Ubuntu",
            "Debian:debian" => "Debian",
            other => other,
        };
        if patchline_core::ecosystem::Target::parse(ecosystem).is_err() {
            not_evaluated.push(ecosystem.to_string());
            continue;
        }
        let events = json!([{"introduced": "0"}, {"fixed": fix}]);
        let mut records = vec![record(
            "WANT-1",
            name,
            &[(ecosystem, "ECOSYSTEM", events.clone())],
        )];
        if let Some(other) = other_release(ecosystem) {
            records.push(record(
                "OTHER-1",
                name,
                &[(other, "ECOSYSTEM", events.clone())],
            ));
        }
        let found = affected_by(&[purl], &records);
        assert_eq!(ids(&found), ["WANT-1"], "{desc}: {purl} (want {want})");
        assert_eq!(found["WANT-1"].as_deref(), Some(fix), "{desc}: {purl}");
        // Fixed at the component's own version: not affected.
        let at =
            json!([{"introduced": "0"}, {"fixed": if name == "foo" { "1.0.0" } else { "1.18.0" }}]);
        let found = affected_by(
            &[purl],
            &[record("WANT-2", name, &[(ecosystem, "ECOSYSTEM", at)])],
        );
        assert!(found.is_empty(), "{desc}: {purl}: {found:?}");
        checked += 1;
    }
    assert!(not_evaluated.is_empty(), "{not_evaluated:?}");
    assert_eq!(checked, 30);
}

/// osv-scalibr writes os-release's VERSION_ID alone for apk, and the apk
/// origin; the real record CVE-2022-27449 (osv.dev's Alpine test data)
/// names the origin `mariadb` in `Alpine:v3.12`.
#[test]
fn apk_bare_distro_and_origin() {
    let text = std::fs::read_to_string(testdata("advisories/alpine/CVE-2022-27449.json")).unwrap();
    let cve: Value = serde_json::from_str(&text).unwrap();
    let found = affected_by(
        &["pkg:apk/alpine/mariadb-client@10.4.24-r0?arch=x86_64&distro=3.12.12&origin=mariadb"],
        std::slice::from_ref(&cve),
    );
    assert_eq!(
        found.get("CVE-2022-27449"),
        Some(&Some("10.4.25-r0".into()))
    );
    // The same package on 3.13 is held to 3.13's fix (10.5.16-r0), and the
    // fixed build on 3.12 is not affected.
    let found = affected_by(
        &["pkg:apk/alpine/mariadb-client@10.5.15-r0?arch=x86_64&distro=3.13.10&origin=mariadb"],
        std::slice::from_ref(&cve),
    );
    assert_eq!(
        found.get("CVE-2022-27449"),
        Some(&Some("10.5.16-r0".into()))
    );
    let found = affected_by(
        &["pkg:apk/alpine/mariadb-client@10.4.25-r0?arch=x86_64&distro=3.12.12&origin=mariadb"],
        std::slice::from_ref(&cve),
    );
    assert!(found.is_empty(), "{found:?}");
    // syft's spelling of the same package still matches.
    let found = affected_by(
        &[
            "pkg:apk/alpine/mariadb-client@10.4.24-r0?arch=x86_64&upstream=mariadb&distro=alpine-3.12.12",
        ],
        std::slice::from_ref(&cve),
    );
    assert_eq!(
        found.get("CVE-2022-27449"),
        Some(&Some("10.4.25-r0".into()))
    );
}

/// trivy's CycloneDX without an operating-system component: the release is
/// only in the purl (`distro=3.16.0`).
#[test]
fn trivy_sbom_with_bare_apk_distro() {
    let bytes = std::fs::read(testdata("sboms/trivy-no-os.cdx.json")).unwrap();
    let inv = parse(Format::CycloneDxJson, &bytes, &Hint::default()).unwrap();
    let purls: Vec<String> = inv.components.iter().map(|p| p.to_string()).collect();
    assert_eq!(purls[0], "pkg:apk/alpine/musl@1.2.3-r0?distro=3.16.0");
    let events = json!([{"introduced": "0"}, {"fixed": "1.2.3-r2"}]);
    let records = [
        record(
            "ALPINE-MUSL-316",
            "musl",
            &[("Alpine:v3.16", "ECOSYSTEM", events.clone())],
        ),
        record(
            "ALPINE-MUSL-317",
            "musl",
            &[("Alpine:v3.17", "ECOSYSTEM", events)],
        ),
    ];
    let refs: Vec<&str> = purls.iter().map(String::as_str).collect();
    let found = affected_by(&refs, &records);
    assert_eq!(ids(&found), ["ALPINE-MUSL-316"]);
}

/// osv-scalibr's deb purls: `source` and `source_version` qualifiers, the
/// release as a codename or VERSION_ID; and dpkg's `Source: NAME (VERSION)`
/// spelling. USN-4038-1 is Ubuntu's real record for bzip2.
#[test]
fn deb_source_and_source_version() {
    let text = std::fs::read_to_string(testdata("advisories/ubuntu/USN-4038-1.json")).unwrap();
    let usn: Value = serde_json::from_str(&text).unwrap();
    for purl in [
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&distro=bionic&source=bzip2&source_version=1.0.6-8.1",
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&distro=18.04&source=bzip2&source_version=1.0.6-8.1",
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&distro=18.04&source=bzip2",
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&distro=18.04&source=bzip2%20%281.0.6-8.1%29",
        // syft's spelling, as before.
        "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04",
    ] {
        let found = affected_by(&[purl], std::slice::from_ref(&usn));
        assert_eq!(
            found.get("USN-4038-1"),
            Some(&Some("1.0.6-8.1ubuntu0.1".into())),
            "{purl}"
        );
    }
    // The fixed build is not affected, however the source is spelt.
    let found = affected_by(
        &[
            "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1ubuntu0.1?arch=amd64&distro=18.04&source=bzip2&source_version=1.0.6-8.1ubuntu0.1",
        ],
        std::slice::from_ref(&usn),
    );
    assert!(found.is_empty(), "{found:?}");

    // The source version decides, not the binary's (bsdutils has its own
    // epoch): Debian 12's bsdutils from util-linux 2.38.1-5.
    let events = json!([{"introduced": "0"}, {"fixed": "2.38.1-5+deb12u1"}]);
    let records = [
        record(
            "DSA-UL-12",
            "util-linux",
            &[("Debian:12", "ECOSYSTEM", events.clone())],
        ),
        record(
            "DSA-UL-11",
            "util-linux",
            &[("Debian:11", "ECOSYSTEM", events)],
        ),
    ];
    for purl in [
        "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?arch=amd64&distro=bookworm&source=util-linux&source_version=2.38.1-5",
        "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?arch=amd64&distro=12&source=util-linux&source_version=2.38.1-5",
        "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?arch=amd64&distro=12&source=util-linux%20%282.38.1-5%29",
    ] {
        let found = affected_by(&[purl], &records);
        assert_eq!(ids(&found), ["DSA-UL-12"], "{purl}");
        assert_eq!(found["DSA-UL-12"].as_deref(), Some("2.38.1-5+deb12u1"));
    }
    // `upstream` wins over `source` when a purl has both.
    let found = affected_by(
        &[
            "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?distro=12&source=other&upstream=util-linux%402.38.1-5",
        ],
        &records,
    );
    assert_eq!(ids(&found), ["DSA-UL-12"]);
}

/// osv-scalibr's rpm purl (binary/proto/result_test.go): the source RPM in
/// `sourcerpm`, the epoch apart, the release as `rhel-8.9`.
#[test]
fn rpm_sourcerpm() {
    let purl = "pkg:rpm/rhel/openssh-clients@5.3p1?arch=x86_64&distro=rhel-8.9&epoch=2&sourcerpm=openssh-5.3p1-124.el6_10.src.rpm";
    let events = json!([{"introduced": "0"}, {"fixed": "2:5.4p1-1.el8"}]);
    let records = [
        record(
            "RHSA-OPENSSH-8",
            "openssh",
            &[(
                "Red Hat:enterprise_linux:8::baseos",
                "ECOSYSTEM",
                events.clone(),
            )],
        ),
        record(
            "RHSA-OPENSSH-9",
            "openssh",
            &[("Red Hat:enterprise_linux:9::baseos", "ECOSYSTEM", events)],
        ),
    ];
    let found = affected_by(&[purl], &records);
    assert_eq!(ids(&found), ["RHSA-OPENSSH-8"]);
    // Without the epoch the fix (epoch 2) would be far above; with it the
    // package at 2:5.4p1 is fixed.
    let fixed = "pkg:rpm/rhel/openssh-clients@5.4p1-1.el8?arch=x86_64&distro=rhel-8.9&epoch=2&sourcerpm=openssh-5.4p1-1.el8.src.rpm";
    assert!(affected_by(&[fixed], &records).is_empty());
    // The binary name still matches records that name it.
    let events = json!([{"introduced": "0"}, {"fixed": "2:5.4p1-1.el8"}]);
    let by_binary = [record(
        "RHSA-CLIENTS-8",
        "openssh-clients",
        &[("Red Hat:enterprise_linux:8::baseos", "ECOSYSTEM", events)],
    )];
    assert_eq!(ids(&affected_by(&[purl], &by_binary)), ["RHSA-CLIENTS-8"]);
}

/// The Go toolchain: osv-scalibr names it `go` (binaries' build info,
/// version `1.18`) or `stdlib` (go.mod's `go` line); Go's own tags are
/// `go1.21.3` and `go1.21rc2`. OSV's Go records name it `stdlib` with
/// SemVer ranges (introduced `1.21.0-0` for the release candidates).
#[test]
fn go_toolchain_matches_stdlib() {
    let events = json!([
        {"introduced": "0"}, {"fixed": "1.17.11"},
        {"introduced": "1.18.0-0"}, {"fixed": "1.18.3"},
        {"introduced": "1.21.0-0"}, {"fixed": "1.21.4"}
    ]);
    let records = [record(
        "GO-TEST-STDLIB",
        "stdlib",
        &[("Go", "SEMVER", events)],
    )];
    for (purl, fix) in [
        ("pkg:golang/go@1.18", Some("1.18.3")),
        ("pkg:golang/stdlib@1.17", Some("1.17.11")),
        ("pkg:golang/go@go1.18", Some("1.18.3")),
        ("pkg:golang/stdlib@go1.21.3", Some("1.21.4")),
        ("pkg:golang/go@go1.21rc2", Some("1.21.4")),
        ("pkg:golang/go@1.21.3", Some("1.21.4")),
        ("pkg:golang/go@1.18.3", None),
        ("pkg:golang/go@go1.21.4", None),
        ("pkg:golang/stdlib@1.19", None),
    ] {
        let found = affected_by(&[purl], &records);
        match fix {
            Some(fix) => assert_eq!(
                found.get("GO-TEST-STDLIB"),
                Some(&Some(fix.to_string())),
                "{purl}"
            ),
            None => assert!(found.is_empty(), "{purl}: {found:?}"),
        }
    }
    // A module named `go` under a namespace is a module, not the toolchain.
    let found = affected_by(&["pkg:golang/example.com/go@1.18.0"], &records);
    assert!(found.is_empty(), "{found:?}");
}
