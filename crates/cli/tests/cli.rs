//! End-to-end tests of the `patchline` binary on the real fixtures: every
//! command runs as its own process, so every answer here is also an answer
//! after a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// A data directory and the binary.
struct Pl {
    dir: tempfile::TempDir,
}

impl Pl {
    fn new() -> Pl {
        Pl {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_patchline"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs and expects success.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "patchline {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects exit `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "patchline {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    fn affected(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["affected", id, "--json"])).unwrap()
    }
}

fn affected_ids(doc: &Value) -> Vec<String> {
    doc["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["artifact"].as_str().unwrap().to_string())
        .collect()
}

/// The expected-results table of testdata/advisories/SOURCES.md, read from
/// the file itself: (advisory, fixed version, affected?).
fn expected_table() -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(testdata("advisories/SOURCES.md")).unwrap();
    let rows: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("| USN-") || l.starts_with("| UBUNTU-"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | Advisory | Ecosystem | Source | Installed | Fixed | Result | In versions |
            (cells.len() >= 8 && !cells[1].ends_with(".json")).then(|| {
                (
                    cells[1].to_string(),
                    cells[5].to_string(),
                    cells[6].starts_with("AFFECTED"),
                )
            })
        })
        .collect();
    assert_eq!(rows.len(), 19, "the table has 19 rows");
    rows
}

#[test]
fn sources_table_end_to_end() {
    let pl = Pl::new();
    let artifacts = pl.file(
        "a.jsonl",
        r#"{"id":"bionic","kind":"image","tenant":"canonical","visibility":"public"}
{"id":"web-tpl","kind":"template","tenant":"acme","parent":"bionic"}
{"id":"web-vm","kind":"instance","tenant":"acme","parent":"web-tpl","labels":{"region":"eu"}}
"#,
    );
    pl.ok(&["import", "artifacts", &artifacts]);
    let status = testdata("inventories/ubuntu-18.04.dpkg-status");
    pl.ok(&[
        "import",
        "inventory",
        "bionic",
        status.to_str().unwrap(),
        "--distro",
        "ubuntu-18.04",
    ]);
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/ubuntu").to_str().unwrap(),
    ]);
    let mut affected_count = 0;
    for (advisory, fixed, affected) in expected_table() {
        let doc = pl.affected(&advisory);
        assert_eq!(doc["advisory"], advisory.as_str());
        let ids = affected_ids(&doc);
        if !affected {
            assert!(
                ids.is_empty(),
                "{advisory} must not affect anything, got {ids:?}"
            );
            continue;
        }
        affected_count += 1;
        assert_eq!(ids, ["bionic", "web-tpl", "web-vm"], "{advisory}");
        for a in doc["affected"].as_array().unwrap() {
            let comps = a["components"].as_array().unwrap();
            assert!(!comps.is_empty(), "{advisory}");
            for c in comps {
                assert_eq!(c["introduced_by"], "bionic", "{advisory}");
                assert_eq!(c["fixed"], fixed.as_str(), "{advisory} {c}");
                assert!(c["purl"].as_str().unwrap().starts_with("pkg:deb/ubuntu/"));
            }
        }
        let vm = doc["affected"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["artifact"] == "web-vm")
            .unwrap();
        assert_eq!(
            vm["path"],
            serde_json::json!(["bionic", "web-tpl", "web-vm"])
        );
        assert_eq!(vm["kind"], "instance");
        assert_eq!(vm["tenant"], "acme");
    }
    assert_eq!(affected_count, 11, "11 AFFECTED rows");
    // util-linux is matched through the source version, not bsdutils' 1:2.31.1.
    let doc = pl.affected("USN-4512-1");
    let purls: Vec<&str> = doc["affected"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    assert!(
        purls
            .iter()
            .any(|p| p.starts_with("pkg:deb/ubuntu/bsdutils@1:2.31.1")),
        "{purls:?}"
    );
}

#[test]
fn a_bad_line_rejects_the_whole_file() {
    let pl = Pl::new();
    let good = pl.file(
        "good.jsonl",
        "{\"id\":\"base\",\"kind\":\"image\",\"tenant\":\"t\"}\n",
    );
    pl.ok(&["import", "artifacts", &good]);
    let bad = pl.file(
        "bad.jsonl",
        "{\"id\":\"a\",\"kind\":\"image\",\"tenant\":\"t\",\"parent\":\"base\"}\n\n{\"id\":\"b\",\"kind\":\"instance\",\"tenant\":\"t\",\"parent\":\"a\"}\n{\"id\":\"c\",\"kind\":\"replica\",\"tenant\":\"t\",\"parent\":\"b\"}\n",
    );
    let err = pl.fails(3, &["import", "artifacts", &bad]);
    assert!(err.contains("bad.jsonl:4"), "{err}");
    assert!(err.contains("replica"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    pl.fails(4, &["lineage", "a"]);
    let tree = pl.ok(&["lineage", "base"]);
    assert!(tree.contains("descendants: nothing"), "{tree}");

    for (content, needle) in [
        ("{\"id\":\"x\",\"kind\":\"image\"", "line"),
        (
            "{\"id\":\"x\",\"kind\":\"vm\",\"tenant\":\"t\"}",
            "unknown kind",
        ),
        (
            "{\"id\":\"x\",\"kind\":\"image\",\"tenant\":\"t\",\"parent\":\"nope\"}",
            "unknown parent nope",
        ),
        (
            "{\"id\":\"x y\",\"kind\":\"image\",\"tenant\":\"t\"}",
            "may only hold ASCII letters",
        ),
        (
            "{\"id\":\"x\",\"kind\":\"image\",\"tenant\":\"t\",\"components\":[\"pkg:deb/debian/zlib\"]}",
            "version",
        ),
        (
            "{\"id\":\"base\",\"kind\":\"image\",\"tenant\":\"t\",\"labels\":{\"a\":\"b\"}}",
            "different content",
        ),
        (
            "{\"id\":\"x\",\"kind\":\"image\",\"tenant\":\"t\",\"sbom\":{\"bomFormat\":\"CycloneDX\",\"components\":\"nope\"}}",
            "sbom",
        ),
        (
            "{\"id\":\"x\",\"kind\":\"image\",\"tenant\":\"t\",\"sbom\":{\"hello\":1}}",
            "sbom",
        ),
    ] {
        let f = pl.file("one.jsonl", &format!("{content}\n"));
        let err = pl.fails(3, &["import", "artifacts", &f]);
        assert!(err.contains("one.jsonl:1"), "{content}: {err}");
        assert!(
            err.contains(needle),
            "{content}: expected {needle:?} in {err}"
        );
    }
}

#[test]
fn reparenting_checks_cycles_and_reevaluates() {
    let pl = Pl::new();
    let f = pl.file(
        "a.jsonl",
        r#"{"id":"a","kind":"image","tenant":"t","components":["pkg:pypi/django@4.1.1"]}
{"id":"b","kind":"image","tenant":"t","parent":"a"}
{"id":"c","kind":"image","tenant":"t","parent":"b"}
{"id":"z","kind":"image","tenant":"t","components":["pkg:pypi/django@4.1.2"]}
"#,
    );
    pl.ok(&["import", "artifacts", &f]);
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/pypi").to_str().unwrap(),
    ]);
    assert_eq!(
        affected_ids(&pl.affected("PYSEC-2022-304")),
        ["a", "b", "c"]
    );
    let cycle = pl.file("cycle.jsonl", "{\"id\":\"a\",\"kind\":\"image\",\"tenant\":\"t\",\"parent\":\"c\",\"components\":[\"pkg:pypi/django@4.1.1\"]}\n");
    let err = pl.fails(3, &["import", "artifacts", &cycle, "--update"]);
    assert!(err.contains("cycle"), "{err}");
    // Without --update a different line is a conflict.
    let moved = pl.file(
        "moved.jsonl",
        "{\"id\":\"b\",\"kind\":\"image\",\"tenant\":\"t\",\"parent\":\"z\"}\n",
    );
    pl.fails(3, &["import", "artifacts", &moved]);
    pl.ok(&["import", "artifacts", &moved, "--update"]);
    // b and c now inherit z's fixed Django.
    assert_eq!(affected_ids(&pl.affected("PYSEC-2022-304")), ["a"]);
}

#[test]
fn late_artifacts_and_masking_and_failures() {
    let pl = Pl::new();
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/pypi").to_str().unwrap(),
    ]);
    let f = pl.file(
        "a.jsonl",
        r#"{"id":"base","kind":"image","tenant":"pub","visibility":"public","components":["pkg:pypi/urllib3@1.26.5","pkg:pypi/py@1.11.0"]}
{"id":"patched","kind":"image","tenant":"acme","parent":"base","components":["pkg:pypi/urllib3@1.26.18","pkg:pypi/py@1.11.0"],"fixes":["FAIL-1"]}
{"id":"vm","kind":"instance","tenant":"acme","parent":"patched"}
{"id":"again","kind":"image","tenant":"acme","parent":"patched","components":["pkg:pypi/urllib3@1.26.5","pkg:pypi/py@1.11.0"]}
"#,
    );
    let out = pl.ok(&["import", "artifacts", &f]);
    assert!(out.contains("affected by open advisories"), "{out}");
    let doc = pl.affected("PYSEC-2023-212");
    assert_eq!(affected_ids(&doc), ["again", "base"]);
    let again = &doc["affected"][0];
    assert_eq!(
        again["components"][0]["introduced_by"], "again",
        "reintroduced below a fix"
    );
    assert_eq!(again["path"], serde_json::json!(["again"]));
    // last_affected 1.11.0 includes 1.11.0, and it is inherited from base.
    let doc = pl.affected("PYSEC-2022-42969");
    assert_eq!(affected_ids(&doc), ["again", "base", "patched", "vm"]);
    let vm = doc["affected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "vm")
        .unwrap();
    assert_eq!(vm["components"][0]["introduced_by"], "base");
    assert_eq!(vm["path"], serde_json::json!(["base", "patched", "vm"]));
    assert!(
        vm["components"][0].get("fixed").is_none(),
        "last_affected has no fix"
    );
    // Withdrawn advisories affect nothing.
    let doc = pl.affected("PYSEC-2021-13");
    assert_eq!(doc["withdrawn"], true);
    assert!(affected_ids(&doc).is_empty());
    // A failure on base, declared fixed on patched.
    pl.ok(&[
        "fail",
        "base",
        "--id",
        "FAIL-1",
        "--summary",
        "broken sshd config",
    ]);
    assert_eq!(affected_ids(&pl.affected("FAIL-1")), ["base"]);
    // A late instance under base is caught.
    let late = pl.file(
        "late.jsonl",
        "{\"id\":\"late\",\"kind\":\"instance\",\"tenant\":\"beta\",\"parent\":\"base\"}\n",
    );
    let out = pl.ok(&["import", "artifacts", &late]);
    assert!(out.contains("3 (artifact, advisory) pairs"), "{out}");
    assert_eq!(affected_ids(&pl.affected("FAIL-1")), ["base", "late"]);
    // Tenant view: only its own artifacts, foreign private ids hidden.
    let doc: Value = serde_json::from_str(&pl.ok(&[
        "affected",
        "PYSEC-2022-42969",
        "--json",
        "--tenant",
        "acme",
    ]))
    .unwrap();
    assert_eq!(affected_ids(&doc), ["again", "patched", "vm"]);
    pl.fails(4, &["affected", "NOPE-1", "--json"]);
    // Removing the instance takes it out of every answer.
    pl.ok(&["remove", "late"]);
    assert_eq!(affected_ids(&pl.affected("FAIL-1")), ["base"]);
    pl.fails(3, &["remove", "base"]);
}

#[test]
fn inventory_formats_from_fixtures() {
    let pl = Pl::new();
    let f = pl.file(
        "a.jsonl",
        "{\"id\":\"img\",\"kind\":\"image\",\"tenant\":\"t\"}\n",
    );
    pl.ok(&["import", "artifacts", &f]);
    for (file, count_hint) in [
        ("sboms/postgres-11.15-stretch.cdx.xml", "components"),
        ("sboms/alpine-3.17.2.cdx.xml", "components"),
        ("sboms/alpine-zlib.cdx.json", "components"),
        ("sboms/centos-7.cdx.json", "components"),
        ("sboms/centos-7.spdx.json", "components"),
        ("sboms/postgresql.spdx.json", "components"),
        ("inventories/debian-12.dpkg-status", "components"),
        ("inventories/alpine-3.18.apk-installed", "components"),
        ("inventories/alpine-trivy.apk-installed", "components"),
    ] {
        let out = pl.ok(&[
            "import",
            "inventory",
            "img",
            testdata(file).to_str().unwrap(),
        ]);
        assert!(out.contains(count_hint), "{file}: {out}");
    }
    let err = pl.fails(
        3,
        &[
            "import",
            "inventory",
            "img",
            testdata("sboms/invalid.spdx.json").to_str().unwrap(),
            "--format",
            "spdx-json",
        ],
    );
    assert!(err.contains("invalid.spdx.json"), "{err}");
    let err = pl.fails(
        3,
        &[
            "import",
            "inventory",
            "img",
            testdata("qcow2/invalid.qcow2").to_str().unwrap(),
        ],
    );
    assert!(err.contains("cannot tell the format"), "{err}");
    pl.fails(
        4,
        &[
            "import",
            "inventory",
            "nope",
            testdata("sboms/alpine-zlib.cdx.json").to_str().unwrap(),
        ],
    );
}

#[test]
fn distribution_releases_and_alpine() {
    let pl = Pl::new();
    let f = pl.file(
        "a.jsonl",
        r#"{"id":"a316","kind":"image","tenant":"t","components":["pkg:apk/alpine/mariadb@10.6.7-r0?arch=x86_64&distro=alpine-3.16.2"]}
{"id":"a316fixed","kind":"image","tenant":"t","components":["pkg:apk/alpine/mariadb@10.6.8-r0?arch=x86_64&distro=alpine-3.16.2"]}
{"id":"a318","kind":"image","tenant":"t","components":["pkg:apk/alpine/mariadb@10.6.7-r0?arch=x86_64&distro=alpine-3.18.0"]}
{"id":"a313","kind":"image","tenant":"t","components":["pkg:apk/alpine/mariadb-client@10.5.15-r0?arch=x86_64&upstream=mariadb&distro=alpine-3.13.5"]}
{"id":"wheezy","kind":"image","tenant":"t","components":["pkg:deb/debian/nginx-full@1.2.1-2.2+wheezy2?arch=amd64&upstream=nginx&distro=debian-7"]}
{"id":"wheezy-fixed","kind":"image","tenant":"t","components":["pkg:deb/debian/nginx@1.2.1-2.2+wheezy3?arch=amd64&distro=debian-7.11"]}
{"id":"jessie","kind":"image","tenant":"t","components":["pkg:deb/debian/nginx@1.2.1-2.2+wheezy2?arch=amd64&distro=debian-8"]}
"#,
    );
    pl.ok(&["import", "artifacts", &f]);
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/alpine").to_str().unwrap(),
        testdata("advisories/debian").to_str().unwrap(),
    ]);
    assert_eq!(
        affected_ids(&pl.affected("CVE-2022-27449")),
        ["a313", "a316"]
    );
    assert_eq!(affected_ids(&pl.affected("DSA-3029-1")), ["wheezy"]);
}

#[test]
fn demo_runs_and_reruns() {
    let pl = Pl::new();
    let out = pl.ok(&["demo"]);
    assert!(out.contains("USN-4038-1"), "{out}");
    assert!(out.contains("match it at once"), "{out}");
    // The patch: the successor and where each tenant patches.
    assert!(
        out.contains("relaunch the instances of ubuntu-18.04 onto ubuntu-18.04-v2"),
        "{out}"
    );
    // Rerunning starts afresh in a demo directory.
    pl.ok(&["demo"]);
    let doc = pl.affected("USN-4038-1");
    assert_eq!(
        affected_ids(&doc),
        ["acme-batch", "globex-late-vm", "ubuntu-18.04"]
    );
    // The demo refuses to wipe a catalog it did not make.
    let other = Pl::new();
    let f = other.file(
        "a.jsonl",
        "{\"id\":\"x\",\"kind\":\"image\",\"tenant\":\"t\"}\n",
    );
    other.ok(&["import", "artifacts", &f]);
    other.fails(3, &["demo"]);
}

#[test]
fn a_bad_sbom_component_is_skipped_and_kept_as_a_warning() {
    let pl = Pl::new();
    let f = pl.file(
        "a.jsonl",
        "{\"id\":\"img\",\"kind\":\"image\",\"tenant\":\"t\"}\n",
    );
    pl.ok(&["import", "artifacts", &f]);
    let osv = pl.file(
        "dsa.json",
        r#"{"id":"DSA-T-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.13-1~deb12u1"}]}]}]}"#,
    );
    pl.ok(&["import", "advisories", &osv]);
    let sbom = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [
        {"name": "libssl3", "purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"},
        {"name": "broken", "purl": "not-a-purl"},
        {"name": "zlib1g", "purl": "pkg:deb/debian/zlib1g?distro=debian-12"},
        {"name": "a", "purl": "pkg:npm/a@latest"}
    ]});
    let sbom_file = pl.file("partial.cdx.json", &sbom.to_string());

    // Strict: the first bad component rejects the file, nothing changes.
    let err = pl.fails(3, &["import", "inventory", "img", &sbom_file, "--strict"]);
    assert!(
        err.contains("partial.cdx.json")
            && err.contains("components[1].purl")
            && err.contains("not-a-purl"),
        "{err}"
    );
    assert!(pl.ok(&["show", "img"]).contains("inventory: none"));

    // Lenient (the default): the bad ones are named, the rest imported.
    let out = pl.run(&["import", "inventory", "img", &sbom_file]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("img: 2 components") && stdout.contains("2 skipped"),
        "{stdout}"
    );
    for fragment in [
        "components[1].purl",
        "not-a-purl",
        "components[2].purl",
        "pkg:deb/debian/zlib1g",
        "no version",
        "components[3].purl",
        "invalid semver version \"latest\"",
    ] {
        assert!(stderr.contains(fragment), "{fragment}: {stderr}");
    }
    let affected = pl.affected("DSA-T-1");
    assert_eq!(affected_ids(&affected), ["img"]);

    // Kept with the artifact.
    let shown = pl.ok(&["show", "img"]);
    assert_eq!(shown.matches("inventory warning: ").count(), 3, "{shown}");
    assert!(shown.contains("not-a-purl"), "{shown}");
    let doc: Value = serde_json::from_str(&pl.ok(&["show", "img", "--json"])).unwrap();
    assert_eq!(
        doc["inventory_warnings"].as_array().unwrap().len(),
        3,
        "{doc}"
    );

    // Nothing valid left: refused.
    let bad = pl.file(
        "bad.cdx.json",
        &serde_json::json!({"bomFormat": "CycloneDX", "components": [{"purl": "x"}, {"purl": "pkg:npm/y"}]})
            .to_string(),
    );
    let err = pl.fails(3, &["import", "inventory", "img", &bad]);
    assert!(
        err.contains("no valid component left") && err.contains("2 skipped"),
        "{err}"
    );

    // The same rule for inline SBOMs of `import artifacts`.
    let line =
        serde_json::json!({"id": "img2", "kind": "image", "tenant": "t", "sbom": sbom}).to_string();
    let arts = pl.file("b.jsonl", &format!("{line}\n"));
    let err = pl.fails(3, &["import", "artifacts", &arts, "--strict"]);
    assert!(err.contains("components[1].purl"), "{err}");
    let out = pl.run(&["import", "artifacts", &arts]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("artifact img2: sbom: ") && stderr.contains("not-a-purl"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_str(&pl.ok(&["show", "img2", "--json"])).unwrap();
    assert_eq!(
        doc["inventory_warnings"].as_array().unwrap().len(),
        3,
        "{doc}"
    );
    assert_eq!(affected_ids(&pl.affected("DSA-T-1")), ["img", "img2"]);
}

/// A real Maven record (GHSA-838r-hvwh-24h8, `org.apache.any23:apache-any23`
/// before 2.5) against CycloneDX inventories: the image holding 2.4 is
/// affected with fix 2.5 and passes it to its child; a child that upgraded
/// to 2.5 is not affected (masking); an image with the fixed version, or
/// another artifact of the same group, is not.
#[test]
fn maven_record_against_sbom_inventories() {
    let pl = Pl::new();
    let f = pl.file(
        "a.jsonl",
        r#"{"id":"app","kind":"image","tenant":"t"}
{"id":"app-tpl","kind":"template","tenant":"t","parent":"app"}
{"id":"app-fixed","kind":"image","tenant":"t","parent":"app"}
{"id":"other","kind":"image","tenant":"t"}
"#,
    );
    pl.ok(&["import", "artifacts", &f]);
    let sbom = |purls: &[&str]| {
        let components: Vec<Value> = purls
            .iter()
            .map(|p| serde_json::json!({"type": "library", "name": "x", "purl": p}))
            .collect();
        serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components})
            .to_string()
    };
    let any23 = "pkg:maven/org.apache.any23/apache-any23";
    let vulnerable = pl.file(
        "app.cdx.json",
        &sbom(&[
            &format!("{any23}@2.4?type=jar"),
            "pkg:maven/org.apache.commons/commons-lang3@3.12.0?type=jar",
        ]),
    );
    pl.ok(&["import", "inventory", "app", &vulnerable]);
    let fixed = pl.file(
        "fixed.cdx.json",
        &sbom(&[
            &format!("{any23}@2.5?type=jar"),
            "pkg:maven/org.apache.commons/commons-lang3@3.12.0?type=jar",
        ]),
    );
    pl.ok(&["import", "inventory", "app-fixed", &fixed]);
    let other = pl.file(
        "other.cdx.json",
        &sbom(&["pkg:maven/org.apache.any23/apache-any23-core@2.4"]),
    );
    pl.ok(&["import", "inventory", "other", &other]);
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/maven").to_str().unwrap(),
    ]);
    let doc = pl.affected("GHSA-838r-hvwh-24h8");
    assert_eq!(affected_ids(&doc), ["app", "app-tpl"], "{doc}");
    assert!(doc.get("unsupported").is_none(), "{doc}");
    for a in doc["affected"].as_array().unwrap() {
        let comps = a["components"].as_array().unwrap();
        assert_eq!(comps.len(), 1, "{doc}");
        assert_eq!(comps[0]["purl"], format!("{any23}@2.4?type=jar"));
        assert_eq!(comps[0]["fixed"], "2.5");
        assert_eq!(comps[0]["introduced_by"], "app");
    }
}

/// The data-directory commands say so when `PATCHLINE_STORE` is set (found
/// by a new user: with it exported for `serve`, an import made a local
/// catalog and said nothing), and never print the URL.
#[test]
fn data_directory_commands_say_they_do_not_use_the_store() {
    let pl = Pl::new();
    let file = pl.file(
        "a.jsonl",
        r#"{"id": "img", "kind": "image", "tenant": "acme", "components": []}"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_patchline"))
        .arg("--data-dir")
        .arg(pl.dir.path().join("data"))
        .args(["import", "artifacts", &file])
        .env("PATCHLINE_STORE", "postgres://u:s3cret@127.0.0.1:5432/db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PATCHLINE_STORE is set") && stderr.contains("use the API"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Without it, nothing of the kind.
    let out = pl.run(&["import", "artifacts", &file]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("PATCHLINE_STORE"));
}

/// Patched successors and remedy plans from the command line, on the real
/// PYSEC-2023-212 record (urllib3 fixed in 1.26.18): a publisher's base and
/// its successor, a tenant's template, replica and instances, another
/// tenant's instances launched from the base, and a tenant image that
/// brought the old urllib3 back in itself.
#[test]
fn remedy_plans_and_successors() {
    let pl = Pl::new();
    pl.ok(&[
        "import",
        "advisories",
        testdata("advisories/pypi").to_str().unwrap(),
    ]);
    let f = pl.file(
        "cloud.jsonl",
        r#"{"id":"base","kind":"image","tenant":"pub","visibility":"public","components":["pkg:pypi/urllib3@1.26.5"]}
{"id":"base-v2","kind":"image","tenant":"pub","visibility":"public","supersedes":"base","components":["pkg:pypi/urllib3@1.26.18"]}
{"id":"tpl","kind":"template","tenant":"acme","parent":"base"}
{"id":"rep","kind":"replica","tenant":"acme","parent":"tpl"}
{"id":"vm1","kind":"instance","tenant":"acme","parent":"rep"}
{"id":"vm2","kind":"instance","tenant":"acme","parent":"rep"}
{"id":"b1","kind":"instance","tenant":"beta","parent":"base"}
{"id":"b2","kind":"instance","tenant":"beta","parent":"base"}
{"id":"own","kind":"image","tenant":"acme","parent":"base-v2","components":["pkg:pypi/urllib3@1.26.5"]}
{"id":"base-v3","kind":"image","tenant":"pub","visibility":"public","supersedes":"base-v2","components":["pkg:pypi/urllib3@1.26.5"]}
"#,
    );
    pl.ok(&["import", "artifacts", &f]);
    let plan = |args: &[&str]| -> Value {
        let mut all = vec!["remedy", "PYSEC-2023-212", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&pl.ok(&all)).unwrap()
    };
    let acme = plan(&["--tenant", "acme"]);
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(
        acme["steps"],
        serde_json::json!([
            {"artifact": "own", "action": "rebuild", "clears": ["own"]},
            {"artifact": "tpl", "action": "rebase", "onto": "base-v2",
             "clears": ["tpl", "rep", "vm1", "vm2"]},
        ]),
        "{acme}"
    );
    assert!(
        acme.get("ranking").is_none(),
        "a tenant's plan has no ranking"
    );
    let beta = plan(&["--tenant", "beta"]);
    assert_eq!(
        beta["steps"],
        serde_json::json!([
            {"artifact": "base", "action": "relaunch", "onto": "base-v2", "clears": ["b1", "b2"]},
        ])
    );
    // Everyone's plan (the operator), with the ranking.
    let all = plan(&[]);
    assert!(all.get("tenant").is_none());
    let steps = all["steps"].as_array().unwrap();
    // base-v3, the newest successor, brought the old urllib3 back: the
    // plans above still move onto base-v2, and its owner rebuilds it.
    assert_eq!(steps.len(), 5, "{all}");
    assert_eq!(steps[0]["tenant"], "pub");
    assert_eq!(steps[0]["action"], "rebuild");
    assert_eq!(all["ranking"][0]["artifact"], "base");
    assert_eq!(all["ranking"][0]["clears"], 6);
    assert_eq!(all["ranking"][0]["tenants"], 2);
    // What if: a successor of the template clears the template's subtree.
    let what_if = plan(&["--if-successor-of", "tpl"]);
    assert_eq!(
        what_if["if_successor_of"],
        serde_json::json!({"artifact": "tpl", "clears": 3, "tenants": 1,
            "by_kind": {"image": 0, "template": 0, "replica": 1, "instance": 2}})
    );
    // Readable.
    let text = pl.ok(&["remedy", "PYSEC-2023-212", "--tenant", "acme"]);
    assert!(text.contains("rebase tpl onto base-v2: clears 4"), "{text}");
    assert!(
        text.contains("rebuild own (with the fixed packages)"),
        "{text}"
    );
    // Exposure: what a failure of the base would reach.
    let exposure: Value = serde_json::from_str(&pl.ok(&["exposure", "base", "--json"])).unwrap();
    assert_eq!(exposure["exposed"], 6);
    assert_eq!(exposure["tenants"], 2);
    let text = pl.ok(&["exposure"]);
    assert!(text.starts_with("base: 6 artifacts of 2 tenants"), "{text}");
    // `show` tells successors both ways.
    let v2: Value = serde_json::from_str(&pl.ok(&["show", "base-v2", "--json"])).unwrap();
    assert_eq!(v2["supersedes"], "base");
    let text = pl.ok(&["show", "base"]);
    assert!(text.contains("superseded by: base-v2"), "{text}");
    // Mistakes are refused, never an empty plan.
    pl.fails(4, &["remedy", "NOPE-1"]);
    pl.fails(4, &["remedy", "PYSEC-2023-212", "--tenant", "nosuch"]);
    pl.fails(
        4,
        &["remedy", "PYSEC-2023-212", "--if-successor-of", "nosuch"],
    );
    pl.fails(4, &["exposure", "nosuch"]);
    // A successor of another kind, or of another tenant's artifact, is refused.
    let bad = pl.file(
        "bad.jsonl",
        r#"{"id":"tpl-v2","kind":"template","tenant":"acme","parent":"base-v2","supersedes":"base"}
"#,
    );
    let err = pl.fails(3, &["import", "artifacts", &bad]);
    assert!(err.contains("supersedes base"), "{err}");
}

/// `--severity`, `--ignore-unfixed` and `--fail-on` on the demo's real
/// records (UBUNTU-CVE-2019-12900 states CVSS v3 vectors and Ubuntu's
/// priority `medium`: the vector wins; the USNs state no severity) and
/// one record made here without a fix.
#[test]
fn severity_filters_and_the_fail_on_gate() {
    let pl = Pl::new();
    pl.ok(&["demo"]);
    let unfixed = pl.file(
        "unfixed.json",
        r#"{"id":"TEST-UNFIXED-1","modified":"2024-01-01T00:00:00Z","summary":"no fix yet",
            "database_specific":{"severity":"LOW"},
            "affected":[{"package":{"ecosystem":"PyPI","name":"urllib3"},
                         "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
    );
    pl.ok(&["import", "advisories", &unfixed]);

    // Every answer states the rating and its source.
    let doc = pl.affected("UBUNTU-CVE-2019-12900");
    assert_eq!(doc["severity"]["level"], "critical");
    assert_eq!(doc["severity"]["source"], "cvss_v3");
    assert_eq!(doc["severity"]["score"], 9.8);
    assert!(doc.get("filters").is_none(), "no filter, no filters field");
    assert!(pl.affected("USN-4038-1").get("severity").is_none());
    let text = pl.ok(&["affected", "UBUNTU-CVE-2019-12900"]);
    assert!(text.contains("severity: critical (cvss_v3 9.8)"), "{text}");

    // --ignore-unfixed: the record without a fix leaves nothing, and says so.
    let all = affected_ids(&pl.affected("TEST-UNFIXED-1"));
    assert!(!all.is_empty());
    let doc: Value =
        serde_json::from_str(&pl.ok(&["affected", "TEST-UNFIXED-1", "--json", "--ignore-unfixed"]))
            .unwrap();
    assert_eq!(affected_ids(&doc), Vec::<String>::new());
    assert_eq!(doc["filters"]["left_out"], all.len());
    assert_eq!(doc["filters"]["ignore_unfixed"], true);
    // A record with fixes keeps its rows.
    let doc: Value =
        serde_json::from_str(&pl.ok(&["affected", "PYSEC-2023-212", "--json", "--ignore-unfixed"]))
            .unwrap();
    assert_eq!(affected_ids(&doc).len(), 10);

    // --severity below the record's rating: nothing shown, and why.
    let text = pl.ok(&["affected", "PYSEC-2023-212", "--severity", "high"]);
    assert!(
        text.contains("10 affected artifacts left out by --severity high: PYSEC-2023-212 is rated medium (cvss_v3 4.2)"),
        "{text}"
    );

    // report: the levels, the filters, the gate.
    let report = |args: &[&str]| -> Vec<(String, Value)> {
        let mut all = vec!["report", "--json"];
        all.extend_from_slice(args);
        let doc: Value = serde_json::from_str(&pl.ok(&all)).unwrap();
        doc.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["advisory"].as_str().unwrap().to_string(),
                    r["severity"].clone(),
                )
            })
            .collect()
    };
    let every = report(&[]);
    assert!(
        every
            .iter()
            .any(|(id, s)| id == "USN-4038-1" && s.is_null())
    );
    assert_eq!(report(&["--severity", "unknown"]).len(), every.len());
    let critical = report(&["--severity", "critical"]);
    assert_eq!(
        critical
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["UBUNTU-CVE-2019-12900"]
    );
    let mut high: Vec<String> = report(&["--severity", "high"])
        .into_iter()
        .map(|r| r.0)
        .collect();
    high.sort();
    assert_eq!(high, ["FAIL-CLOUDINIT-1", "UBUNTU-CVE-2019-12900"]);
    assert!(
        !report(&["--ignore-unfixed"])
            .iter()
            .any(|(id, _)| id == "TEST-UNFIXED-1"),
        "a record with no fix anywhere leaves the report"
    );
    let err = pl.fails(8, &["report", "--fail-on", "critical"]);
    assert!(err.contains("UBUNTU-CVE-2019-12900"), "{err}");
    assert!(!err.contains("error:"), "a gate is not an error: {err}");
    // The answer is printed whole before the gate's exit.
    let out = pl.run(&["report", "--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&out.stdout).contains("USN-4038-1"));
    pl.fails(
        8,
        &[
            "report",
            "--severity",
            "critical",
            "--ignore-unfixed",
            "--fail-on",
            "critical",
        ],
    );
    // Unrated findings fail only a gate at `unknown`.
    pl.ok(&["affected", "USN-4038-1", "--fail-on", "none"]);
    pl.fails(8, &["affected", "USN-4038-1", "--fail-on", "unknown"]);
    // A filter that leaves nothing fails nothing.
    pl.ok(&[
        "affected",
        "TEST-UNFIXED-1",
        "--ignore-unfixed",
        "--fail-on",
        "unknown",
    ]);

    // show: each record with its rating; filters stated.
    let doc: Value =
        serde_json::from_str(&pl.ok(&["show", "acme-web", "--json", "--severity", "medium"]))
            .unwrap();
    let by: Vec<&str> = doc["affected_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["advisory"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["PYSEC-2023-212"]);
    assert_eq!(doc["affected_by"][0]["severity"]["level"], "medium");
    assert!(doc["filters"]["left_out"].as_u64().unwrap() >= 2);
    let err = pl.fails(8, &["show", "acme-web", "--fail-on", "low"]);
    assert!(
        err.contains("PYSEC-2023-212") && err.contains("TEST-UNFIXED-1"),
        "{err}"
    );
    pl.ok(&["show", "acme-web", "--fail-on", "high", "--ignore-unfixed"]);
    pl.fails(2, &["report", "--fail-on", "severe"]);
    // Found from outside: a failure's level was a free word, and a typo
    // left it unrated, past `--fail-on critical`.
    pl.fails(
        2,
        &[
            "fail",
            "acme-web",
            "--id",
            "FAIL-T",
            "--summary",
            "s",
            "--severity",
            "crtical",
        ],
    );
    pl.ok(&[
        "fail",
        "acme-web",
        "--id",
        "FAIL-T",
        "--summary",
        "s",
        "--severity",
        "critical",
    ]);
    pl.fails(8, &["affected", "FAIL-T", "--fail-on", "critical"]);
}

/// `affected X` with X no record's id but named by records (`aliases`,
/// `upstream`): the real PYSEC-2023-212 names CVE-2023-45803, the real
/// UBUNTU-CVE-2019-12900 names CVE-2019-12900 as its upstream. An exact
/// record id always wins.
#[test]
fn an_alias_finds_the_records_that_name_it() {
    let pl = Pl::new();
    pl.ok(&["demo"]);
    let text = pl.ok(&["affected", "CVE-2023-45803"]);
    assert!(
        text.starts_with(
            "CVE-2023-45803 is no record id; it is an alias of 1 record: PYSEC-2023-212"
        ),
        "{text}"
    );
    assert!(text.contains("affects 10 artifacts"), "{text}");
    let doc: Value =
        serde_json::from_str(&pl.ok(&["affected", "CVE-2019-12900", "--json"])).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"alias": "CVE-2019-12900", "records": ["UBUNTU-CVE-2019-12900"]})
    );
    pl.fails(8, &["affected", "CVE-2019-12900", "--fail-on", "critical"]);
    let err = pl.fails(4, &["remedy", "CVE-2019-12900"]);
    assert!(
        err.contains("CVE-2019-12900 is no record id; it is an alias of UBUNTU-CVE-2019-12900"),
        "{err}"
    );
    let err = pl.fails(4, &["affected", "CVE-1999-0001"]);
    assert!(err.contains("unknown advisory CVE-1999-0001"), "{err}");
    // Case is not part of an alias.
    pl.ok(&["affected", "cve-2023-45803", "--json"]);
    // Found from outside: past the 100 records a message names, the rest
    // were dropped, and `--fail-on` with --json did not look at them.
    let mut many: Vec<(String, Vec<u8>)> = (0..101)
        .map(|i| {
            let doc = serde_json::json!({"id": format!("A{i:03}"), "modified": "2024-01-01T00:00:00Z",
                "aliases": ["CVE-2099-0777"],
                "affected": [{"package": {"ecosystem": "PyPI", "name": "nothing-here"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]});
            (format!("A{i:03}.json"), serde_json::to_vec(&doc).unwrap())
        })
        .collect();
    many.push((
        "Z-1.json".into(),
        serde_json::to_vec(&serde_json::json!({"id": "Z-1", "modified": "2024-01-01T00:00:00Z",
            "aliases": ["CVE-2099-0777"],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": "PyPI", "name": "urllib3"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}))
        .unwrap(),
    ));
    let zip = pl.dir.path().join("many/all.zip");
    write_zip(&zip, &many);
    pl.ok(&["import", "advisories", zip.to_str().unwrap()]);
    let err = pl.fails(4, &["remedy", "CVE-2099-0777"]);
    assert!(err.contains("and 2 more: ask for one of them"), "{err}");
    let doc: Value =
        serde_json::from_str(&pl.ok(&["affected", "CVE-2099-0777", "--json"])).unwrap();
    assert_eq!(doc["records"].as_array().unwrap().len(), 102);
    let err = pl.fails(
        8,
        &["affected", "CVE-2099-0777", "--json", "--fail-on", "high"],
    );
    assert!(err.contains("Z-1"), "{err}");
    pl.fails(
        8,
        &[
            "affected",
            "CVE-2099-0777",
            "--format",
            "sarif",
            "--fail-on",
            "high",
        ],
    );
    pl.fails(8, &["affected", "CVE-2099-0777", "--fail-on", "high"]);
    // Found from outside: --tenant showed another tenant's private failure.
    pl.ok(&[
        "fail",
        "acme-web",
        "--id",
        "FAIL-PRIV",
        "--summary",
        "private",
    ]);
    pl.ok(&["affected", "FAIL-PRIV", "--tenant", "acme"]);
    pl.fails(
        4,
        &[
            "affected",
            "FAIL-PRIV",
            "--tenant",
            "globex",
            "--format",
            "sarif",
        ],
    );
    // A record whose id is the alias wins over the records naming it.
    let own = pl.file(
        "cve.json",
        r#"{"id":"CVE-2023-45803","modified":"2024-01-01T00:00:00Z",
            "affected":[{"package":{"ecosystem":"PyPI","name":"urllib3"},
                         "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.26.18"}]}]}]}"#,
    );
    pl.ok(&["import", "advisories", &own]);
    assert_eq!(pl.affected("CVE-2023-45803")["advisory"], "CVE-2023-45803");
}

/// Writes a zip of `entries` (name, bytes), as osv.dev's exports are laid
/// out: one `ID.json` per record at the archive's root.
fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        z.start_file(name.as_str(), opts).unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap();
}

/// The real JSON records of one `testdata/advisories` folder, as entries.
fn records_of(folder: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(testdata(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A feed: a folder of osv.dev-style exports (`<Ecosystem>/all.zip`),
/// built from the real Ubuntu, Debian and Alpine records of testdata
/// (their sources: testdata/advisories/SOURCES.md). Imported whole, then
/// again (every record skipped as unchanged), then with one record
/// modified; a broken entry is reported by its place and the rest
/// imported; a file that is no zip is refused.
#[test]
fn osv_exports_import_directly_and_incrementally() {
    let pl = Pl::new();
    let feed = pl.dir.path().join("feed");
    let ubuntu = records_of("advisories/ubuntu");
    write_zip(&feed.join("Ubuntu/all.zip"), &ubuntu);
    write_zip(
        &feed.join("Debian/all.zip"),
        &records_of("advisories/debian"),
    );
    let mut alpine = records_of("advisories/alpine");
    // Not a record: skipped like any other file that is no `.json`.
    alpine.push((
        "README.txt".into(),
        b"exports hold one ID.json per record".to_vec(),
    ));
    write_zip(&feed.join("Alpine/all.zip"), &alpine);
    // Found from outside: two links looping back made the walk endless,
    // one made it read every file 41 times. Each folder is walked once.
    std::os::unix::fs::symlink(".", feed.join("Ubuntu/again")).unwrap();
    std::os::unix::fs::symlink("..", feed.join("Debian/up")).unwrap();
    let n = ubuntu.len() + 2;
    let feed_arg = feed.to_str().unwrap();
    let out = pl.ok(&["import", "advisories", feed_arg]);
    assert!(
        out.starts_with(&format!("{n} advisories: {n} new, 0 updated, 0 unchanged")),
        "{out}"
    );
    assert_eq!(pl.affected("DSA-3029-1")["advisory"], "DSA-3029-1");
    let out = pl.ok(&["import", "advisories", feed_arg]);
    assert!(
        out.starts_with(&format!("{n} advisories: 0 new, 0 updated, {n} unchanged")),
        "{out}"
    );
    // One record changed upstream: only it is read and updated.
    let mut changed = ubuntu.clone();
    let (_, bytes) = changed
        .iter_mut()
        .find(|(name, _)| name == "USN-4038-1.json")
        .unwrap();
    let mut doc: Value = serde_json::from_slice(bytes).unwrap();
    doc["modified"] = "2025-07-17T00:00:00Z".into(); // the record says 2025-07-16T04:42:30Z
    doc["summary"] = "bzip2 vulnerabilities (updated)".into();
    *bytes = serde_json::to_vec(&doc).unwrap();
    write_zip(&feed.join("Ubuntu/all.zip"), &changed);
    let out = pl.ok(&["import", "advisories", feed_arg]);
    assert!(
        out.starts_with(&format!(
            "{n} advisories: 0 new, 1 updated, {} unchanged",
            n - 1
        )),
        "{out}"
    );
    // A broken entry: reported with its archive and name, the rest read.
    let mut broken = records_of("advisories/debian");
    broken.push(("BROKEN-1.json".into(), b"{\"id\": \"BROKEN-1\"".to_vec()));
    let other = pl.dir.path().join("other/all.zip");
    write_zip(&other, &broken);
    let out = pl.run(&["import", "advisories", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other/all.zip:BROKEN-1.json"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 unchanged"));
    // A record past 16 MiB (found from outside: a 240 MiB record, 7 MB
    // zipped, took 3 GB at import and at every later load): refused by
    // its place before it is parsed, the others read.
    let mut huge = records_of("advisories/debian");
    let mut big = b"{\"id\": \"HUGE-1\", \"details\": \"".to_vec();
    big.resize(big.len() + (16 << 20), b'x');
    big.extend_from_slice(b"\"}");
    huge.push(("HUGE-1.json".into(), big));
    let huge_zip = pl.dir.path().join("huge/all.zip");
    write_zip(&huge_zip, &huge);
    let out = pl.run(&["import", "advisories", huge_zip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("huge/all.zip:HUGE-1.json")
            && err.contains("16777216 bytes accepted for one record"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 unchanged"));
    // A file named .zip that is no archive: refused, nothing read.
    let fake = pl.file("fake.zip", "not a zip");
    let err = pl.fails(3, &["import", "advisories", &fake]);
    assert!(err.contains("not a readable zip archive"), "{err}");
    // Beside a good export it is one rejection: the good one is read.
    let maven = pl.dir.path().join("maven/all.zip");
    write_zip(&maven, &records_of("advisories/maven"));
    let out = pl.run(&["import", "advisories", &fake, maven.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 new"));
}

/// `--format sarif` and `--format cyclonedx` of `affected` and `show` on
/// the demo's real records, validated by the official schemas (CycloneDX
/// 1.6 as cyclonedx-python-lib ships it, SARIF 2.1.0 from OASIS; a
/// document broken on purpose must be refused by each, so the check
/// itself is checked).
#[test]
fn exports_validate_against_the_official_schemas() {
    let Some(py) =
        patchline_testkit::require_python("exports_validate", "cyclonedx.validation.json")
    else {
        return;
    };
    let pl = Pl::new();
    pl.ok(&["demo"]);
    let mut args = Vec::new();
    let mut write = |name: &str, kind: &str, cmd: &[&str]| -> Value {
        let out = pl.ok(cmd);
        let path = pl.file(name, &out);
        args.push(format!("{kind}:{path}"));
        serde_json::from_str(&out).unwrap()
    };
    let sarif = write(
        "affected.sarif",
        "sarif",
        &["affected", "UBUNTU-CVE-2019-12900", "--format", "sarif"],
    );
    let rules = &sarif["runs"][0]["tool"]["driver"]["rules"];
    assert_eq!(rules[0]["id"], "UBUNTU-CVE-2019-12900");
    assert_eq!(rules[0]["properties"]["security-severity"], "9.8");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let doc = pl.affected("UBUNTU-CVE-2019-12900");
    let components: usize = doc["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["components"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        results.len(),
        components,
        "one per affected component of each artifact"
    );
    assert!(results.iter().all(|r| r["level"] == "error"));
    let cdx = write(
        "affected.cdx.json",
        "cyclonedx",
        &["affected", "PYSEC-2023-212", "--format", "cyclonedx"],
    );
    assert_eq!(cdx["vulnerabilities"][0]["id"], "PYSEC-2023-212");
    assert_eq!(cdx["vulnerabilities"][0]["ratings"][0]["method"], "CVSSv31");
    assert_eq!(
        cdx["vulnerabilities"][0]["affects"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(
        cdx["vulnerabilities"][0]["recommendation"],
        "upgrade to 1.26.18"
    );
    write(
        "failure.cdx.json",
        "cyclonedx",
        &["affected", "FAIL-CLOUDINIT-1", "--format", "cyclonedx"],
    );
    let sbom = write(
        "show.cdx.json",
        "cyclonedx",
        &["show", "acme-web", "--format", "cyclonedx"],
    );
    let shown: Value = serde_json::from_str(&pl.ok(&["show", "acme-web", "--json"])).unwrap();
    assert_eq!(
        sbom["components"].as_array().unwrap().len(),
        shown["components"].as_array().unwrap().len(),
        "the SBOM is the effective inventory"
    );
    assert_eq!(sbom["metadata"]["component"]["name"], "acme-web");
    assert_eq!(
        sbom["vulnerabilities"].as_array().unwrap().len(),
        shown["affected_by"].as_array().unwrap().len()
    );
    write(
        "show.sarif",
        "sarif",
        &["show", "acme-web", "--format", "sarif"],
    );
    // Filters and the gate hold in every format.
    let filtered = write(
        "filtered.sarif",
        "sarif",
        &[
            "show",
            "acme-web",
            "--format",
            "sarif",
            "--severity",
            "medium",
        ],
    );
    assert_eq!(
        filtered["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    pl.fails(
        8,
        &[
            "affected",
            "UBUNTU-CVE-2019-12900",
            "--format",
            "sarif",
            "--fail-on",
            "high",
        ],
    );
    pl.fails(
        2,
        &["affected", "USN-4038-1", "--json", "--format", "sarif"],
    );
    // Found from outside: an empty export under a filter said nothing.
    let empty = write(
        "empty.sarif",
        "sarif",
        &[
            "affected",
            "USN-4038-1",
            "--format",
            "sarif",
            "--severity",
            "high",
        ],
    );
    assert_eq!(empty["runs"][0]["results"], serde_json::json!([]));
    assert_eq!(
        empty["runs"][0]["properties"]["patchline:filters"]["left_out"],
        3
    );
    let empty = write(
        "empty.cdx.json",
        "cyclonedx",
        &[
            "affected",
            "USN-4038-1",
            "--format",
            "cyclonedx",
            "--severity",
            "high",
        ],
    );
    assert!(
        empty["metadata"]["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "patchline:filter:left_out" && p["value"] == "3")
    );
    let first = &sarif["runs"][0]["results"][0]["locations"][0];
    assert_eq!(
        first["physicalLocation"]["artifactLocation"]["uri"],
        first["logicalLocations"][0]["name"]
    );
    // Controls: one broken document of each kind.
    let mut broken = cdx.clone();
    broken["vulnerabilities"][0]["ratings"][0]["severity"] = "severe".into();
    args.push(format!(
        "cyclonedx:{}",
        pl.file("broken.cdx.json", &broken.to_string())
    ));
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    args.push(format!(
        "sarif:{}",
        pl.file("broken.sarif", &broken.to_string())
    ));
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemas/validate.py"
        ))
        .arg(testdata("schemas/sarif-schema-2.1.0.json"))
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), args.len(), "{text}");
    for line in &lines[..lines.len() - 2] {
        assert!(line.starts_with("ok "), "{text}");
    }
    for line in &lines[lines.len() - 2..] {
        assert!(
            line.starts_with("invalid "),
            "the control must fail: {text}"
        );
    }
}
