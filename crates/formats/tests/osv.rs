//! OSV advisories: every fixture parses, the model holds what matching
//! needs, validation errors name the place, and serialisation round-trips.

mod common;

use common::{advisory_files, assert_err_contains, fixture};
use patchline_formats::osv::{self, Advisory, Event, RangeType};
use serde_json::json;

fn load(rel: &str) -> Advisory {
    osv::parse_auto(rel, &fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_fixture_parses_and_round_trips() {
    let files = advisory_files();
    // 1 Alpine, 1 Debian, 5 PyPI (YAML), 19 Ubuntu.
    assert_eq!(files.len(), 26);
    for path in files {
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let adv = osv::parse_auto(&name, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(adv.id.as_str()),
            "file name is the id"
        );
        // Serialised form is valid OSV that parses back to the same model.
        let json = adv.to_json();
        let again =
            osv::parse_json(json.as_bytes()).unwrap_or_else(|e| panic!("{name} re-parse: {e}"));
        assert_eq!(again, adv, "{name}");
        let via_serde: Advisory = serde_json::from_str(&json).unwrap();
        assert_eq!(via_serde, adv);
    }
}

#[test]
fn fixture_contents() {
    let a = load("advisories/pypi/PYSEC-2021-13.yaml");
    assert_eq!(a.withdrawn.as_deref(), Some("2023-07-25T12:32:00Z"));
    assert!(a.is_withdrawn());
    assert_eq!(a.modified, "2023-07-25T00:34:15.721702Z");
    assert_eq!(a.aliases, ["CVE-2021-33026", "GHSA-656c-6cxf-hvcv"]);
    assert_eq!(a.affected[0].versions.len(), 24);

    let a = load("advisories/pypi/PYSEC-2023-212.yaml");
    // Unquoted YAML timestamps stay text.
    assert_eq!(a.modified, "2023-10-25T18:28:34.811764Z");
    let ranges = &a.affected[0].ranges;
    assert_eq!(ranges[0].ty, RangeType::Git);
    assert_eq!(
        ranges[0].repo.as_deref(),
        Some("https://github.com/urllib3/urllib3")
    );
    assert_eq!(ranges[1].ty, RangeType::Ecosystem);
    assert_eq!(
        ranges[1].events,
        [
            Event::Introduced("2.0.0".into()),
            Event::Fixed("2.0.7".into()),
            Event::Introduced("0".into()),
            Event::Fixed("1.26.18".into()),
        ]
    );
    let versions = &a.affected[0].versions;
    assert_eq!(versions.len(), 87);
    assert!(
        versions.iter().any(|v| v == "1.10"),
        "quoted \"1.10\" is not the float 1.1"
    );

    let a = load("advisories/pypi/PYSEC-2022-42969.yaml");
    assert_eq!(
        a.affected[0].ranges[0].events[1],
        Event::LastAffected("1.11.0".into())
    );
    assert!(a.affected[0].versions.contains(&"0.8.0-alpha2".to_string()));

    let a = load("advisories/alpine/CVE-2022-27449.json");
    assert_eq!(a.affected.len(), 5);
    let p = a.affected[0].package.as_ref().unwrap();
    assert_eq!(
        (p.ecosystem.as_str(), p.name.as_str()),
        ("Alpine:v3.12", "mariadb")
    );
    // Not a registered purl type, but kept as given.
    assert_eq!(p.purl.as_deref(), Some("pkg:alpine/mariadb"));

    let a = load("advisories/ubuntu/USN-4512-1.json");
    assert_eq!(a.schema_version.as_deref(), Some("1.7.0"));
    assert_eq!(a.upstream, ["UBUNTU-CVE-2018-7738"]);
    let aff = &a.affected[0];
    assert_eq!(aff.package.as_ref().unwrap().ecosystem, "Ubuntu:18.04:LTS");
    assert_eq!(
        aff.ranges[0].events[1],
        Event::Fixed("2.31.1-0.4ubuntu3.7".into())
    );
    assert!(aff.ecosystem_specific.as_ref().unwrap().value()["binaries"].is_array());

    let a = load("advisories/debian/DSA-3029-1.json");
    assert_eq!(
        a.affected[0].package.as_ref().unwrap().ecosystem,
        "Debian:7"
    );
    assert_eq!(a.published.as_deref(), Some("2014-09-20T00:00:00Z"));
}

fn base() -> serde_json::Value {
    json!({
        "id": "TEST-1",
        "modified": "2024-01-02T03:04:05Z",
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "openssl"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]
        }]
    })
}

fn parse_value(v: &serde_json::Value) -> Result<Advisory, patchline_formats::FormatError> {
    osv::parse_json(serde_json::to_string_pretty(v).unwrap().as_bytes())
}

#[test]
fn validation_errors_name_the_place() {
    assert!(parse_value(&base()).is_ok());
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(Edit, &[&str])] = &[
        (
            |v| {
                v["affected"][0]["ranges"][0]["events"][1] =
                    json!({"introduced": "1", "fixed": "2"})
            },
            &[
                "osv-json",
                "affected[0].ranges[0].events[1]",
                "exactly one",
                "introduced, fixed",
            ],
        ),
        (
            |v| v["affected"][0]["ranges"][0]["events"][0] = json!({"fixd": "1"}),
            &["affected[0].ranges[0].events[0]", "found none"],
        ),
        (
            |v| v["affected"][0]["ranges"][0]["type"] = json!("SEMVERISH"),
            &[
                "affected[0].ranges[0].type",
                "unknown range type \"SEMVERISH\"",
            ],
        ),
        (
            |v| v["affected"][0]["ranges"][0]["events"] = json!([{"fixed": "1"}]),
            &[
                "affected[0].ranges[0].events",
                "ECOSYSTEM range needs at least one `introduced`",
            ],
        ),
        (
            |v| {
                v["affected"][0]["ranges"][0] =
                    json!({"type": "GIT", "events": [{"introduced": "0"}]})
            },
            &["affected[0].ranges[0].repo", "GIT range needs `repo`"],
        ),
        (
            |v| {
                v.as_object_mut().unwrap().remove("modified");
            },
            &["modified", "missing"],
        ),
        (
            |v| v["modified"] = json!("2024-01-02"),
            &["modified", "RFC 3339", "2024-01-02"],
        ),
        (
            |v| v["withdrawn"] = json!("yesterday"),
            &["withdrawn", "RFC 3339"],
        ),
        (
            |v| v["published"] = json!("2024-02-30T00:00:00Z"),
            &["published", "RFC 3339"],
        ),
        (|v| v["id"] = json!("  "), &["id", "missing or empty"]),
        (
            |v| v["affected"][0]["package"] = json!({"ecosystem": "Debian:12"}),
            &["affected[0].package", "`ecosystem` and `name`"],
        ),
        (
            |v| {
                v["affected"][0].as_object_mut().unwrap().remove("package");
            },
            &["affected[0].package", "missing `package`"],
        ),
        (
            |v| v["aliases"] = json!("CVE-1"),
            &["aliases", "invalid type"],
        ),
        (
            |v| v["affected"][0]["ranges"][0]["events"][0]["introduced"] = json!(0),
            &[
                "affected[0].ranges[0].events[0].introduced",
                "invalid type",
                "line",
            ],
        ),
        (
            |v| v["references"] = json!([{"url": "https://x"}]),
            &["references[0]", "missing field `type`"],
        ),
    ];
    for (edit, fragments) in cases {
        let mut v = base();
        edit(&mut v);
        let err = parse_value(&v).unwrap_err();
        assert_err_contains(&err, fragments);
    }

    // The same through serde (Advisory's Deserialize validates too).
    let mut v = base();
    v["affected"][0]["ranges"][0]["events"][1] = json!({"introduced": "1", "last_affected": "2"});
    let err = serde_json::from_value::<Advisory>(v).unwrap_err();
    assert!(
        err.to_string().contains("affected[0].ranges[0].events[1]"),
        "{err}"
    );
}

#[test]
fn tolerated_variations() {
    let mut v = base();
    // Unknown fields anywhere, nulls for lists, lowercase range type,
    // credits (dropped), a purl-only package, a GIT-only entry without a
    // package, offsets in timestamps.
    v["x_unknown"] = json!({"a": 1});
    v["aliases"] = json!(null);
    v["credits"] = json!([{"name": "someone"}]);
    v["published"] = json!("2024-01-01T00:00:00+02:00");
    v["affected"][0]["ranges"][0]["type"] = json!("ecosystem");
    v["affected"][0]["ranges"][0]["database_specific"] = json!({"x": 1});
    v["affected"][0]["versions"] = json!(null);
    v["affected"].as_array_mut().unwrap().push(json!({
        "package": {"purl": "pkg:pypi/Flask_Caching"},
        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "2.0.0"}]}]
    }));
    v["affected"].as_array_mut().unwrap().push(json!({
        "ranges": [{"type": "GIT", "repo": "https://example.com/r", "events": [{"introduced": "abc"}]}]
    }));
    v["affected"].as_array_mut().unwrap().push(json!({
        "package": {"purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
        "versions": ["2.14.1"]
    }));
    let a = parse_value(&v).unwrap();
    assert!(a.aliases.is_empty());
    assert_eq!(a.affected[0].ranges[0].ty, RangeType::Ecosystem);
    let p = a.affected[1].package.as_ref().unwrap();
    assert_eq!(
        (p.ecosystem.as_str(), p.name.as_str()),
        ("PyPI", "flask-caching")
    );
    assert_eq!(
        a.affected[1].ranges[0].events[1],
        Event::Limit("2.0.0".into())
    );
    assert!(a.affected[2].package.is_none());
    let p = a.affected[3].package.as_ref().unwrap();
    assert_eq!(
        (p.ecosystem.as_str(), p.name.as_str()),
        ("Maven", "org.apache.logging.log4j:log4j-core")
    );

    // Serialised: uppercase types, one-key events, no nulls, no credits.
    let out: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
    assert_eq!(out["affected"][0]["ranges"][0]["type"], "ECOSYSTEM");
    assert_eq!(
        out["affected"][0]["ranges"][0]["events"][1],
        json!({"fixed": "3.0.11-1~deb12u2"})
    );
    assert_eq!(
        out["affected"][1]["ranges"][0]["events"][1],
        json!({"limit": "2.0.0"})
    );
    assert!(out.get("aliases").is_none() && out.get("credits").is_none());
    assert!(out["affected"][2].get("package").is_none());
}

#[test]
fn yaml_details() {
    // Plain scalars are kept as written: 1.10 is not the float 1.1, 0 is "0".
    let text = "id: PYSEC-X\nmodified: 2024-01-01T00:00:00Z\naffected:\n- package: {ecosystem: PyPI, name: x}\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 0\n    - fixed: 1.10\n  versions: [1.0, 1.10, 2]\n";
    let a = osv::parse_yaml(text.as_bytes()).unwrap();
    assert_eq!(
        a.affected[0].ranges[0].events,
        [Event::Introduced("0".into()), Event::Fixed("1.10".into())]
    );
    assert_eq!(a.affected[0].versions, ["1.0", "1.10", "2"]);

    let err =
        osv::parse_yaml(b"id: X\nmodified: '2024-01-01T00:00:00Z'\naffected:\n  - package: [\n")
            .unwrap_err();
    assert_err_contains(&err, &["osv-yaml", "line"]);
    let err = osv::parse_yaml(b"- id: X\n").unwrap_err();
    assert_err_contains(&err, &["osv-yaml", "expected an object"]);
    let err = osv::parse_yaml(b"id: X\nmodified: '2024-01-01T00:00:00Z'\naffected:\n- ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 0\n      fixed: 1\n")
        .unwrap_err();
    assert_err_contains(&err, &["osv-yaml", "affected[0]"]);
}

#[test]
fn json_syntax_errors_and_format_choice() {
    let bytes = fixture("advisories/ubuntu/USN-4512-1.json");
    let cut = &bytes[..bytes.len() * 2 / 3];
    let err = osv::parse_json(cut).unwrap_err();
    let line = cut.iter().filter(|&&b| b == b'\n').count() + 1;
    assert_err_contains(&err, &["osv-json", &format!("line {line}"), "truncated"]);
    let err = osv::parse_json(b"[]").unwrap_err();
    assert_err_contains(&err, &["expected an object", "line 1"]);

    // Extension first, content second.
    let yaml = fixture("advisories/pypi/PYSEC-2021-13.yaml");
    assert!(osv::parse_auto("PYSEC-2021-13.YML", &yaml).is_ok());
    assert!(osv::parse_auto("from-stdin", &yaml).is_ok());
    assert!(osv::parse_auto("from-stdin", &bytes).is_ok());
    let err = osv::parse_auto("x.json", &yaml).unwrap_err();
    assert_eq!(err.format, "osv-json");
}
