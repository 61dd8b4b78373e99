//! CycloneDX (JSON, XML) and SPDX JSON SBOMs on the real fixtures, inline
//! SBOM values, and the errors of malformed documents.

mod common;

use common::{assert_err_contains, fixture};
use patchline_formats::{Format, Hint, Inventory, Purl, cyclonedx, parse, parse_json_value, spdx};
use serde_json::json;

fn strings(inv: &Inventory) -> Vec<String> {
    inv.components.iter().map(Purl::to_string).collect()
}

struct Case {
    fixture: &'static str,
    parser: fn(&[u8]) -> Result<Inventory, patchline_formats::FormatError>,
    count: usize,
    /// (purl type, count)
    types: &'static [(&'static str, usize)],
    distro: Option<&'static str>,
    warnings: usize,
    contains: &'static [&'static str],
}

fn check(case: &Case) -> Inventory {
    let inv =
        (case.parser)(&fixture(case.fixture)).unwrap_or_else(|e| panic!("{}: {e}", case.fixture));
    assert_eq!(inv.components.len(), case.count, "{} count", case.fixture);
    for (ty, n) in case.types {
        let got = inv.components.iter().filter(|p| p.ty == *ty).count();
        assert_eq!(got, *n, "{}: {ty} purls", case.fixture);
    }
    assert_eq!(
        inv.distro.as_deref(),
        case.distro,
        "{} distro",
        case.fixture
    );
    assert_eq!(
        inv.warnings.len(),
        case.warnings,
        "{} warnings {:?}",
        case.fixture,
        inv.warnings
    );
    let all = strings(&inv);
    for want in case.contains {
        assert!(
            all.iter().any(|p| p == want),
            "{}: missing {want}\n{all:#?}",
            case.fixture
        );
    }
    inv
}

#[test]
fn sbom_fixtures() {
    let cases = [
        Case {
            fixture: "sboms/postgres-11.15-stretch.cdx.xml",
            parser: cyclonedx::parse_xml,
            count: 136,
            types: &[("deb", 132), ("golang", 3), ("generic", 1)],
            distro: Some("debian-9"),
            warnings: 0,
            contains: &[
                "pkg:deb/debian/adduser@3.115?arch=all&distro=debian-9",
                "pkg:deb/debian/bsdutils@1:2.29.2-1%2Bdeb9u1?arch=amd64&distro=debian-9&upstream=util-linux%402.29.2-1%2Bdeb9u1",
                "pkg:deb/debian/zlib1g@1:1.2.8.dfsg-5%2Bdeb9u1?arch=amd64&distro=debian-9&upstream=zlib",
                "pkg:golang/github.com/tianon/gosu@%28devel%29",
                "pkg:generic/postgresql@11.15",
            ],
        },
        Case {
            fixture: "sboms/alpine-3.17.2.cdx.xml",
            parser: cyclonedx::parse_xml,
            count: 14,
            types: &[("apk", 14)],
            distro: Some("alpine-3.17.2"),
            // the binary-cataloged busybox has no purl
            warnings: 1,
            contains: &[
                "pkg:apk/alpine/alpine-baselayout@3.4.0-r0?arch=x86_64&distro=alpine-3.17.2&upstream=alpine-baselayout",
            ],
        },
        Case {
            fixture: "sboms/alpine-zlib.cdx.json",
            parser: cyclonedx::parse_json,
            count: 1,
            types: &[("apk", 1)],
            distro: None,
            warnings: 0,
            // scalibr's distro qualifier is the bare version; kept as given.
            contains: &["pkg:apk/alpine/zlib@1.2.12-r1?arch=x86_64&distro=3.22.0&origin=zlib"],
        },
        Case {
            fixture: "sboms/centos-7.cdx.json",
            parser: cyclonedx::parse_json,
            count: 2,
            types: &[("rpm", 2)],
            distro: Some("centos-7.6.1810"),
            warnings: 0,
            contains: &[
                "pkg:rpm/centos/bash@4.2.46-31.el7?arch=x86_64&distro=centos-7.6.1810&upstream=bash%404.2.46-31.el7",
                "pkg:rpm/centos/openssl-libs@1.0.2k-16.el7?arch=x86_64&distro=centos-7.6.1810&epoch=1&upstream=openssl%401:1.0.2k-16.el7",
            ],
        },
        Case {
            fixture: "sboms/centos-7.spdx.json",
            parser: spdx::parse_json,
            count: 2,
            types: &[("rpm", 2)],
            distro: Some("centos-7.6.1810"),
            warnings: 0,
            // trivy's sourceInfo here names openssl-libs, not openssl.
            contains: &[
                "pkg:rpm/centos/bash@4.2.46-31.el7?arch=x86_64&distro=centos-7.6.1810&upstream=bash%404.2.46-31.el7",
                "pkg:rpm/centos/openssl-libs@1.0.2k-16.el7?arch=x86_64&distro=centos-7.6.1810&epoch=1&upstream=openssl-libs%401:1.0.2k-16.el7",
            ],
        },
        Case {
            fixture: "sboms/postgresql.spdx.json",
            parser: spdx::parse_json,
            count: 4,
            types: &[("bitnami", 4)],
            distro: None,
            warnings: 0,
            contains: &["pkg:bitnami/postgresql@15.3.0", "pkg:bitnami/gdal@3.7.1"],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn postgres_deb_purls_all_carry_the_distro() {
    let inv = cyclonedx::parse_xml(&fixture("sboms/postgres-11.15-stretch.cdx.xml")).unwrap();
    let debs: Vec<&Purl> = inv.components.iter().filter(|p| p.ty == "deb").collect();
    assert!(
        debs.iter()
            .all(|p| p.qualifier("distro") == Some("debian-9"))
    );
    assert!(
        debs.iter()
            .all(|p| p.namespace.as_deref() == Some("debian"))
    );
    // Document order is kept.
    assert_eq!(inv.components[0].name, "adduser");
}

#[test]
fn sbom_distro_wins_over_hint_and_hint_fills_gaps() {
    let bytes = fixture("sboms/alpine-3.17.2.cdx.xml");
    let inv = parse(Format::CycloneDxXml, &bytes, &Hint::distro("alpine-3.99")).unwrap();
    assert_eq!(inv.distro.as_deref(), Some("alpine-3.17.2"));

    let doc = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "components": [{"type": "library", "name": "zlib", "purl": "pkg:apk/alpine/zlib@1.2.13-r0"}]
    });
    let inv = parse(
        Format::CycloneDxJson,
        doc.to_string().as_bytes(),
        &Hint::distro("alpine-3.18.4"),
    )
    .unwrap();
    assert_eq!(
        strings(&inv),
        ["pkg:apk/alpine/zlib@1.2.13-r0?distro=alpine-3.18.4"]
    );
    assert_eq!(inv.distro.as_deref(), Some("alpine-3.18.4"));
}

#[test]
fn cyclonedx_json_structure() {
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {"component": {"type": "container", "name": "img", "purl": "pkg:oci/img@sha256:abc",
                                    "components": [{"purl": "pkg:npm/should-not-appear@1"}]}},
        "components": [
            {"type": "operating-system", "name": "Debian", "version": "12.5"},
            {"type": "library", "name": "bash", "version": 5, "purl": "pkg:deb/debian/bash@5.2.15-2?arch=amd64",
             "properties": [
                {"name": "aquasecurity:trivy:SrcName", "value": "bash"},
                {"name": "aquasecurity:trivy:SrcVersion", "value": "5.2.15"},
                {"name": "aquasecurity:trivy:SrcRelease", "value": "2"},
                {"name": "aquasecurity:trivy:SrcEpoch", "value": "0"}
             ]},
            {"type": "library", "name": "libc6", "purl": "pkg:deb/debian/libc6@2.36-9?upstream=glibc",
             "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "other"}]},
            {"type": "application", "name": "app", "purl": "pkg:npm/app@1.0.0",
             "components": [
                {"type": "library", "name": "left-pad", "purl": "pkg:npm/left-pad@1.3.0"},
                {"type": "library", "name": "no-purl"},
                {"type": "library", "name": "lodash", "purl": "pkg:npm/lodash@4.17.21",
                 "components": [{"type": "library", "purl": "pkg:npm/deep@1"}]}
             ]},
            {"type": "file", "name": "/etc/passwd", "purl": null},
            {"type": "library", "name": "left-pad-again", "purl": "pkg:npm/left-pad@1.3.0"}
        ],
        "dependencies": []
    });
    let inv = cyclonedx::parse_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(
        strings(&inv),
        [
            "pkg:deb/debian/bash@5.2.15-2?arch=amd64&distro=debian-12.5&upstream=bash%405.2.15-2",
            "pkg:deb/debian/libc6@2.36-9?distro=debian-12.5&upstream=glibc",
            "pkg:npm/app@1.0.0",
            "pkg:npm/left-pad@1.3.0",
            "pkg:npm/lodash@4.17.21",
            "pkg:npm/deep@1",
        ]
    );
    assert_eq!(inv.distro.as_deref(), Some("debian-12.5"));
    assert_eq!(inv.warnings.len(), 1);
    assert!(
        inv.warnings[0]
            .message
            .starts_with("2 components without a purl"),
        "{:?}",
        inv.warnings
    );

    // The same document inline.
    let inline = parse_json_value(&doc, &Hint::default()).unwrap();
    assert_eq!(inline, inv);
}

#[test]
fn cyclonedx_errors() {
    let cases: Vec<(String, &[&str])> = vec![
        (
            json!({"bomFormat": "CycloneDX", "specVersion": "1.5",
                   "components": [{"name": "a", "purl": "pkg:npm/a@1"}, {"name": "b", "purl": "npm/b@1"}]})
            .to_string(),
            &["cyclonedx-json", "components[1].purl", "npm/b@1"],
        ),
        (
            json!({"bomFormat": "CycloneDX", "components": [{"name": "a", "components": [{"purl": "pkg:"}]}]})
                .to_string(),
            &["components[0].components[0].purl"],
        ),
        (
            json!({"bomFormat": "SPDX", "components": []}).to_string(),
            &["bomFormat", "not \"CycloneDX\""],
        ),
        (json!({"components": []}).to_string(), &["missing \"bomFormat\""]),
        (
            json!({"bomFormat": "CycloneDX", "specVersion": "2.0"}).to_string(),
            &["specVersion", "2.0"],
        ),
        (
            "{\"bomFormat\": \"CycloneDX\",\n \"components\": [{\"purl\": 42}]}".to_string(),
            &["components[0].purl", "line 2", "invalid type"],
        ),
        ("[1, 2]".to_string(), &["cyclonedx-json", "line 1"]),
        ("{\"bomFormat\": \"CycloneDX\"} trailing".to_string(), &["line 1", "trailing"]),
    ];
    for (text, fragments) in &cases {
        // Strict reading: a bad component rejects the document, as a
        // malformed one does.
        let err = cyclonedx::parse_json(text.as_bytes())
            .and_then(Inventory::strict)
            .unwrap_err();
        assert_err_contains(&err, fragments);
    }

    // Truncated real file: the error says where it ended.
    let bytes = fixture("sboms/centos-7.cdx.json");
    let cut = &bytes[..bytes.len() / 2];
    let err = cyclonedx::parse_json(cut).unwrap_err();
    let line = cut.iter().filter(|&&b| b == b'\n').count() + 1;
    assert_err_contains(
        &err,
        &["cyclonedx-json", &format!("line {line}"), "truncated"],
    );
}

#[test]
fn cyclonedx_xml_details_and_errors() {
    let ok = r#"<?xml version="1.0"?>
<c:bom xmlns:c="http://cyclonedx.org/schema/bom/1.3" xmlns:x="urn:other">
  <c:metadata><c:component type="container"><c:purl>pkg:oci/x@1</c:purl></c:component></c:metadata>
  <c:components>
    <c:component type="library">
      <c:name>a&amp;b</c:name>
      <c:purl>
        pkg:deb/debian/a@1?arch=amd64&amp;upstream=src%401&#x26;distro=debian-12
      </c:purl>
      <x:purl>pkg:npm/foreign@1</x:purl>
      <c:properties><c:property name="aquasecurity:trivy:SrcName">ignored</c:property></c:properties>
      <c:components>
        <c:component type="library"><c:purl><![CDATA[pkg:npm/nested@2]]></c:purl></c:component>
      </c:components>
    </c:component>
    <c:component type="library"/>
  </c:components>
</c:bom>"#;
    let inv = cyclonedx::parse_xml(ok.as_bytes()).unwrap();
    assert_eq!(
        strings(&inv),
        [
            "pkg:deb/debian/a@1?arch=amd64&distro=debian-12&upstream=src%401",
            "pkg:npm/nested@2"
        ]
    );
    assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);

    let cases: &[(&str, &[&str])] = &[
        (
            "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\">\n<components>\n<component>\n<purl>not-a-purl</purl>\n</component></components></bom>",
            &[
                "cyclonedx-xml",
                "components[0].purl",
                "line 4",
                "not-a-purl",
            ],
        ),
        (
            "<bom xmlns=\"http://example.com/\"></bom>",
            &["not a CycloneDX document"],
        ),
        ("<spdx/>", &["not a CycloneDX document"]),
        (
            "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\">\n<components>\n<component>",
            &["truncated"],
        ),
        (
            "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\">\n<components>\n</component>\n</bom>",
            &["line 3", "malformed XML"],
        ),
        (
            "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\"><components><component><purl>&bogus;</purl></component></components></bom>",
            &["unknown entity"],
        ),
        ("", &["empty document"]),
        (
            "<bom xmlns=\"http://cyclonedx.org/schema/bom/9.0\"/>",
            &["specVersion", "9.0"],
        ),
    ];
    for (text, fragments) in cases {
        let err = cyclonedx::parse_xml(text.as_bytes())
            .and_then(Inventory::strict)
            .unwrap_err();
        assert_err_contains(&err, fragments);
    }
    let err = cyclonedx::parse_xml(b"<bom>\xff</bom>").unwrap_err();
    assert_err_contains(&err, &["UTF-8", "line 1"]);
}

#[test]
fn spdx_details_and_errors() {
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "packages": [
            {"SPDXID": "SPDXRef-img", "name": "img", "primaryPackagePurpose": "CONTAINER",
             "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:oci/img@sha256:1"}]},
            {"SPDXID": "SPDXRef-os", "name": "ubuntu", "versionInfo": "22.04", "primaryPackagePurpose": "OPERATING_SYSTEM"},
            {"SPDXID": "SPDXRef-a", "name": "libc6", "sourceInfo": "built package from: glibc 2.35-0ubuntu3.6",
             "externalRefs": [
                {"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:a:x"},
                {"referenceCategory": "PACKAGE_MANAGER", "referenceType": "purl", "referenceLocator": "pkg:deb/ubuntu/libc6@2.35-0ubuntu3.6?arch=amd64"}
             ]},
            {"SPDXID": "SPDXRef-b", "name": "nopurl"}
        ]
    });
    let inv = spdx::parse_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(
        strings(&inv),
        [
            "pkg:deb/ubuntu/libc6@2.35-0ubuntu3.6?arch=amd64&distro=ubuntu-22.04&upstream=glibc%402.35-0ubuntu3.6"
        ]
    );
    assert_eq!(inv.warnings.len(), 1);
    assert_eq!(parse_json_value(&doc, &Hint::default()).unwrap(), inv);

    // The malformed fixture.
    let err = spdx::parse_json(&fixture("sboms/invalid.spdx.json")).unwrap_err();
    assert_err_contains(&err, &["spdx-json", "spdxVersion", "not an SPDX 2.x"]);
    assert_eq!(
        err.location.as_ref().and_then(|l| l.path.as_deref()),
        Some("spdxVersion")
    );

    let cases: Vec<(String, &[&str])> = vec![
        (json!({"spdxVersion": "SPDX-3.0"}).to_string(), &["SPDX-3.0", "expected SPDX-2.x"]),
        (
            json!({"spdxVersion": "SPDX-2.2", "packages": [{"name": "x"}, {"name": "y", "externalRefs": [
                {"referenceType": "purl", "referenceLocator": "pkg:/"}]}]})
            .to_string(),
            &["packages[1].externalRefs[0].referenceLocator", "invalid purl"],
        ),
        (
            "{\"spdxVersion\": \"SPDX-2.2\",\n\"packages\": {}}".to_string(),
            &["packages", "line 2"],
        ),
        ("{\"spdxVersion\": \"SPDX-2.2\", \"packages\": [".to_string(), &["truncated", "line 1"]),
    ];
    for (text, fragments) in &cases {
        let err = spdx::parse_json(text.as_bytes())
            .and_then(Inventory::strict)
            .unwrap_err();
        assert_err_contains(&err, fragments);
    }
}

#[test]
fn inline_values() {
    let err = parse_json_value(&json!({"foo": 1}), &Hint::default()).unwrap_err();
    assert_err_contains(&err, &["not a CycloneDX", "SPDX"]);
    let err = parse_json_value(&json!([1]), &Hint::default()).unwrap_err();
    assert_err_contains(&err, &["JSON object"]);
    let err = parse_json_value(
        &json!({"bomFormat": "CycloneDX", "components": [{"purl": "bad"}]}),
        &Hint::default(),
    )
    .and_then(Inventory::strict)
    .unwrap_err();
    assert_err_contains(&err, &["components[0].purl"]);
    let fix: serde_json::Value =
        serde_json::from_slice(&fixture("sboms/centos-7.spdx.json")).unwrap();
    let inv = parse_json_value(&fix, &Hint::default()).unwrap();
    assert_eq!(inv.components.len(), 2);
}

/// One bad component does not sink the document: it is left out with its
/// position and reason, the others are read; strict reading refuses the
/// document at the first, as before.
#[test]
fn bad_components_are_skipped_with_their_place() {
    let cdx = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [
        {"name": "a", "purl": "pkg:npm/a@1"},
        {"name": "b", "purl": "npm/b@1"},
        {"name": "c", "purl": "pkg:npm/c"},
        {"name": "d", "purl": "pkg:npm/d@2", "components": [{"name": "e", "purl": "pkg:%zz/e@1"}]}
    ]})
    .to_string();
    let inv = cyclonedx::parse_json(cdx.as_bytes()).unwrap();
    assert_eq!(strings(&inv), ["pkg:npm/a@1", "pkg:npm/d@2"]);
    assert_eq!(inv.locations, ["components[0].purl", "components[3].purl"]);
    let skipped: Vec<String> = inv.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_err_contains(
        &skipped[0],
        &["cyclonedx-json", "components[1].purl", "npm/b@1", "pkg:"],
    );
    assert_err_contains(
        &skipped[1],
        &["components[2].purl", "pkg:npm/c", "no version"],
    );
    assert_err_contains(
        &skipped[2],
        &["components[3].components[0].purl", "pkg:%zz/e@1"],
    );
    let err = inv.clone().strict().unwrap_err();
    assert_err_contains(&err, &["components[1].purl", "npm/b@1"]);
    // The inline value reads the same way.
    let value: serde_json::Value = serde_json::from_str(&cdx).unwrap();
    assert_eq!(parse_json_value(&value, &Hint::default()).unwrap(), inv);

    let xml = "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\">\n<components>\n\
               <component><purl>pkg:npm/a@1</purl></component>\n\
               <component><purl>not-a-purl</purl></component>\n\
               <component><purl>pkg:npm/c</purl></component>\n\
               </components></bom>";
    let inv = cyclonedx::parse_xml(xml.as_bytes()).unwrap();
    assert_eq!(strings(&inv), ["pkg:npm/a@1"]);
    assert_eq!(inv.skipped.len(), 2);
    assert_err_contains(
        &inv.skipped[0],
        &[
            "cyclonedx-xml",
            "components[1].purl",
            "line 4",
            "not-a-purl",
        ],
    );
    assert_err_contains(
        &inv.skipped[1],
        &["components[2].purl", "line 5", "no version"],
    );

    let spdx_doc = json!({"spdxVersion": "SPDX-2.3", "packages": [
        {"name": "a", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:npm/a@1"}]},
        {"name": "b", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:/"}]},
        {"name": "c", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:npm/c"}]}
    ]});
    let inv = spdx::parse_json(spdx_doc.to_string().as_bytes()).unwrap();
    assert_eq!(strings(&inv), ["pkg:npm/a@1"]);
    assert!(
        inv.warnings.is_empty(),
        "bad purls are not packages without one: {:?}",
        inv.warnings
    );
    assert_eq!(inv.skipped.len(), 2);
    assert_err_contains(
        &inv.skipped[0],
        &[
            "packages[1].externalRefs[0].referenceLocator",
            "invalid purl",
        ],
    );
    assert_err_contains(
        &inv.skipped[1],
        &["packages[2].externalRefs[0].referenceLocator", "no version"],
    );
    let err = inv.strict().unwrap_err();
    assert_err_contains(&err, &["packages[1].externalRefs[0].referenceLocator"]);
}
