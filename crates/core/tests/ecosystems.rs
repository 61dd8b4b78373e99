//! The ecosystems beyond the first ten, end to end: an OSV record in the
//! ecosystem (its exact string from the schema's list) against an image
//! holding a purl of that ecosystem, through the catalog and
//! `check_artifact`, the path every import takes. For each: versions below
//! the fix are affected (with that fix), the fix and later are not, and a
//! record of another release or distribution does not match.
//!
//! The Maven case at the end is a real record, GHSA-838r-hvwh-24h8, with
//! osv.dev's own expansion of its range into versions
//! (`testdata/advisories/maven/`, see `testdata/advisories/SOURCES.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use patchline_core::propagate;
use patchline_core::{
    Actor, Advisory, AdvisoryDb, ArtifactId, ArtifactSpec, Catalog, Kind, Mode, Published, Record,
    TenantId, Visibility,
};
use patchline_formats::osv;
use serde_json::{Value, json};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn record(id: &str, ecosystem: &str, name: &str, introduced: &str, fixed: &str) -> Value {
    json!({
        "id": id,
        "modified": "2024-01-01T00:00:00Z",
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": name},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": introduced}, {"fixed": fixed}]}],
        }],
    })
}

/// Record id -> `fixed` of every record that affects an image holding
/// exactly `purls`. Every record must compile with nothing unsupported.
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

/// One ecosystem's case: the record's ecosystem and package name, its
/// range, a purl template (`{v}` is the version), versions inside and
/// outside the range, and ecosystems whose record of the same package must
/// not match this purl.
struct Case {
    ecosystem: &'static str,
    name: &'static str,
    introduced: &'static str,
    fixed: &'static str,
    purl: &'static str,
    inside: &'static [&'static str],
    outside: &'static [&'static str],
    others: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        ecosystem: "Maven",
        name: "org.apache.logging.log4j:log4j-core",
        introduced: "2.13.0",
        fixed: "2.15.0",
        purl: "pkg:maven/org.apache.logging.log4j/log4j-core@{v}?type=jar",
        inside: &["2.13.0", "2.14.1", "2.15.0-rc1", "2.15.0-SNAPSHOT"],
        outside: &["2.12.4", "2.15.0", "2.15.0.Final", "2.15.1", "2.16.0"],
        others: &["NuGet"],
    },
    Case {
        ecosystem: "RubyGems",
        name: "rack",
        introduced: "3.0.0.beta1",
        fixed: "3.0.4.2",
        purl: "pkg:gem/rack@{v}",
        inside: &["3.0.0.beta1", "3.0.0.rc1", "3.0.0", "3.0.4.1"],
        outside: &["2.2.6", "3.0.0.alpha", "3.0.4.2", "3.0.4.2.0", "3.0.5"],
        others: &["Hex"],
    },
    Case {
        ecosystem: "NuGet",
        name: "Newtonsoft.Json",
        introduced: "0",
        fixed: "13.0.1",
        purl: "pkg:nuget/newtonsoft.json@{v}",
        inside: &["12.0.3", "13.0.1-beta1", "13.0.1-BETA2"],
        outside: &["13.0.1", "13.0.1.0", "13.0.2"],
        others: &["Maven"],
    },
    Case {
        ecosystem: "Packagist",
        name: "symfony/http-kernel",
        introduced: "5.0.0",
        fixed: "5.4.20",
        purl: "pkg:composer/symfony/http-kernel@{v}",
        inside: &["5.0.0", "v5.4.19", "5.4.20-RC1", "5.4.20-beta2"],
        outside: &["4.4.50", "5.0.0-RC1", "5.4.20", "v5.4.20", "6.0.0"],
        others: &["npm"],
    },
    Case {
        ecosystem: "Hex",
        name: "plug",
        introduced: "0",
        fixed: "1.3.5",
        purl: "pkg:hex/plug@{v}",
        inside: &["1.3.4", "1.3.5-rc.0"],
        outside: &["1.3.5", "1.4.0"],
        others: &["RubyGems"],
    },
    Case {
        ecosystem: "SwiftURL",
        name: "github.com/apple/swift-nio",
        introduced: "2.0.0",
        fixed: "2.29.1",
        purl: "pkg:swift/github.com/apple/swift-nio@{v}",
        inside: &["2.0.0", "2.29.0"],
        outside: &["1.14.0", "2.29.1", "2.30.0"],
        others: &["Go"],
    },
    Case {
        ecosystem: "Bitnami",
        name: "wordpress",
        introduced: "0",
        fixed: "6.2.1",
        purl: "pkg:bitnami/wordpress@{v}?arch=arm64&distro=debian-12",
        inside: &["6.2.0"],
        outside: &["6.2.1", "6.3.0"],
        others: &["Debian:12"],
    },
    Case {
        ecosystem: "Pub",
        name: "http",
        introduced: "0",
        fixed: "0.13.3",
        purl: "pkg:pub/http@{v}",
        inside: &["0.13.2", "0.13.3-dev", "0.13.3-dev+1"],
        outside: &["0.13.3", "0.13.3+1", "1.0.0"],
        others: &["Hex"],
    },
    Case {
        ecosystem: "Hackage",
        name: "aeson",
        introduced: "0",
        fixed: "2.0.1.0",
        purl: "pkg:hackage/aeson@{v}",
        inside: &["1.5.6.0", "2.0", "2.0.0.0", "2.0.1"],
        outside: &["2.0.1.0", "2.0.1.0.1", "2.1"],
        others: &["CRAN"],
    },
    Case {
        ecosystem: "CRAN",
        name: "commonmark",
        introduced: "0",
        fixed: "1.8",
        purl: "pkg:cran/commonmark@{v}",
        inside: &["1.7", "1.7-1", "0.9.12"],
        outside: &["1.8", "1.8.0", "1.8-1", "1.9"],
        others: &["Hackage"],
    },
    Case {
        ecosystem: "Wolfi",
        name: "openssl",
        introduced: "0",
        fixed: "3.1.0-r1",
        purl: "pkg:apk/wolfi/openssl@{v}?arch=x86_64",
        inside: &["3.0.8-r2", "3.1.0-r0"],
        outside: &["3.1.0-r1", "3.1.1-r0"],
        others: &["Alpine", "Chainguard", "MinimOS"],
    },
    Case {
        ecosystem: "Chainguard",
        name: "openssl",
        introduced: "0",
        fixed: "3.1.0-r1",
        purl: "pkg:apk/chainguard/openssl@{v}",
        inside: &["3.1.0-r0"],
        outside: &["3.1.0-r1"],
        others: &["Alpine", "Wolfi", "MinimOS"],
    },
    Case {
        ecosystem: "MinimOS",
        name: "openssl",
        introduced: "0",
        fixed: "3.1.0-r1",
        purl: "pkg:apk/minimos/openssl@{v}",
        inside: &["3.1.0-r0"],
        outside: &["3.1.0-r1"],
        others: &["Alpine", "Wolfi", "Chainguard"],
    },
    Case {
        ecosystem: "SUSE:Linux Enterprise Server 15 SP5",
        name: "openssl-3",
        introduced: "0",
        fixed: "3.0.8-150500.5.8.1",
        purl: "pkg:rpm/suse/openssl-3@{v}?arch=x86_64&distro=sles-15.5",
        inside: &["3.0.8-150500.5.7.1", "3.0.8-150500.3.1"],
        outside: &["3.0.8-150500.5.8.1", "3.0.8-150500.5.10.1"],
        others: &[
            "SUSE:Linux Enterprise Server 15 SP4",
            "SUSE:Linux Enterprise Micro 5.5",
            "openSUSE:Leap 15.5",
            "Red Hat:enterprise_linux:9::baseos",
        ],
    },
    Case {
        ecosystem: "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
        name: "openssl-3",
        introduced: "0",
        fixed: "3.0.8-150500.5.8.1",
        // syft names the namespace after os-release's ID and writes the
        // release alone.
        purl: "pkg:rpm/sles/openssl-3@{v}?distro=15.5",
        inside: &["3.0.8-150500.5.7.1"],
        outside: &["3.0.8-150500.5.8.1"],
        others: &["SUSE:Linux Enterprise Server 12 SP5"],
    },
    Case {
        ecosystem: "openSUSE:Leap 15.5",
        name: "curl",
        introduced: "0",
        fixed: "8.0.1-150400.5.26.1",
        purl: "pkg:rpm/opensuse/curl@{v}?distro=opensuse-leap-15.5",
        inside: &["8.0.1-150400.5.23.1"],
        outside: &["8.0.1-150400.5.26.1"],
        others: &[
            "openSUSE:Leap 15.4",
            "openSUSE:Tumbleweed",
            "SUSE:Linux Enterprise Server 15 SP5",
        ],
    },
    Case {
        ecosystem: "openSUSE:Leap 15.5",
        name: "curl",
        introduced: "0",
        fixed: "8.0.1-150400.5.26.1",
        // trivy names the family `opensuse.leap`.
        purl: "pkg:rpm/opensuse.leap/curl@{v}?distro=opensuse.leap-15.5",
        inside: &["8.0.1-150400.5.23.1"],
        outside: &["8.0.1-150400.5.26.1"],
        others: &["openSUSE:Leap 15.4", "openSUSE:Tumbleweed"],
    },
    Case {
        ecosystem: "openSUSE:Tumbleweed",
        name: "curl",
        introduced: "0",
        fixed: "8.5.0-1.1",
        purl: "pkg:rpm/opensuse-tumbleweed/curl@{v}?distro=20231201",
        inside: &["8.4.0-1.1"],
        outside: &["8.5.0-1.1"],
        others: &["openSUSE:Leap 15.5"],
    },
    Case {
        ecosystem: "Photon OS:5.0",
        name: "openssl",
        introduced: "0",
        fixed: "3.0.9-2.ph5",
        purl: "pkg:rpm/photon/openssl@{v}?distro=photon-5.0",
        inside: &["3.0.9-1.ph5"],
        outside: &["3.0.9-2.ph5", "3.0.9-3.ph5"],
        others: &["Photon OS:4.0", "Mageia:5"],
    },
    Case {
        ecosystem: "Mageia:9",
        name: "curl",
        introduced: "0",
        fixed: "8.4.0-1.1.mga9",
        purl: "pkg:rpm/mageia/curl@{v}?distro=mageia-9",
        inside: &["8.4.0-1.mga9"],
        outside: &["8.4.0-1.1.mga9"],
        others: &["Mageia:8", "Photon OS:9.0"],
    },
    Case {
        ecosystem: "openEuler:24.03-LTS-SP1",
        name: "openssl",
        introduced: "0",
        fixed: "1:3.0.12-15.oe2403sp1",
        purl: "pkg:rpm/openEuler/openssl@{v}?distro=openEuler-24.03-LTS-SP1&epoch=1",
        inside: &["3.0.12-14.oe2403sp1"],
        outside: &["3.0.12-15.oe2403sp1"],
        others: &["openEuler:24.03-LTS", "openEuler:22.03-LTS-SP1"],
    },
    Case {
        ecosystem: "Azure Linux:3.0",
        name: "openssl",
        introduced: "0",
        fixed: "3.3.0-2.azl3",
        purl: "pkg:rpm/azurelinux/openssl@{v}?distro=azurelinux-3.0",
        inside: &["3.3.0-1.azl3"],
        outside: &["3.3.0-2.azl3"],
        others: &["Azure Linux:2", "Red Hat:enterprise_linux:9::baseos"],
    },
];

#[test]
fn every_new_ecosystem_matches_its_own_components_only() {
    for case in CASES {
        let at = |v: &str| case.purl.replace("{v}", v);
        let want = record(
            "WANT-1",
            case.ecosystem,
            case.name,
            case.introduced,
            case.fixed,
        );
        for v in case.inside {
            let purl = at(v);
            let found = affected_by(&[&purl], std::slice::from_ref(&want));
            assert_eq!(
                found.get("WANT-1"),
                Some(&Some(case.fixed.to_string())),
                "{}: {purl} is inside [{}, {})",
                case.ecosystem,
                case.introduced,
                case.fixed
            );
        }
        for v in case.outside {
            let purl = at(v);
            let found = affected_by(&[&purl], std::slice::from_ref(&want));
            assert!(found.is_empty(), "{}: {purl}: {found:?}", case.ecosystem);
        }
        // Another release, distribution or ecosystem naming the same
        // package does not reach this component.
        let purl = at(case.inside[0]);
        for other in case.others {
            let found = affected_by(
                &[&purl],
                &[record("OTHER-1", other, case.name, "0", "999999")],
            );
            assert!(found.is_empty(), "{} record vs {purl}: {found:?}", other);
        }
    }
}

/// GHSA-838r-hvwh-24h8 (Maven, `org.apache.any23:apache-any23`, introduced
/// 0, fixed 2.5) against osv.dev's expected stored record, which expands
/// the range into the package's released versions: each of them is
/// affected, with 2.5 as the fix; 2.5 and later are not.
#[test]
fn real_maven_record_agrees_with_osv_dev() {
    let text =
        std::fs::read_to_string(testdata("advisories/maven/GHSA-838r-hvwh-24h8.json")).unwrap();
    let ghsa: Value = serde_json::from_str(&text).unwrap();
    let expected =
        std::fs::read_to_string(testdata("advisories/maven/UpdateTest_update_maven.txt")).unwrap();
    // The `versions` list of the affected package, a Python list literal.
    let list = expected
        .split("'versions': [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("versions list");
    let versions: Vec<&str> = list
        .split(',')
        .map(|v| v.trim().trim_matches('\''))
        .collect();
    assert_eq!(versions.len(), 10, "{versions:?}");
    let purl = |v: &str| format!("pkg:maven/org.apache.any23/apache-any23@{v}");
    for v in &versions {
        let found = affected_by(&[&purl(v)], std::slice::from_ref(&ghsa));
        assert_eq!(
            found.get("GHSA-838r-hvwh-24h8"),
            Some(&Some("2.5".to_string())),
            "{v}"
        );
    }
    for v in ["2.5", "2.6", "2.7", "3.0"] {
        let found = affected_by(&[&purl(v)], std::slice::from_ref(&ghsa));
        assert!(found.is_empty(), "{v}: {found:?}");
    }
    // Another artifact of the same group is not the package.
    let found = affected_by(
        &["pkg:maven/org.apache.any23/apache-any23-core@2.4"],
        std::slice::from_ref(&ghsa),
    );
    assert!(found.is_empty(), "{found:?}");
}
