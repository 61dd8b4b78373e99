//! OS package databases (dpkg status, apk installed), purl lists, format
//! detection and the shared inventory rules, on the real fixtures.

mod common;

use common::{assert_err_contains, fixture, fixture_str};
use patchline_formats::{Format, Hint, Inventory, Purl, apk, detect, dpkg, parse};

fn strings(inv: &Inventory) -> Vec<String> {
    inv.components.iter().map(Purl::to_string).collect()
}

fn find<'a>(inv: &'a Inventory, name: &str) -> &'a Purl {
    inv.components
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

/// One expectation about a parsed fixture.
struct Case {
    fixture: &'static str,
    format: Format,
    hint: Option<&'static str>,
    count: usize,
    warnings: usize,
    /// Exact canonical purls that must be present.
    contains: &'static [&'static str],
}

fn check(case: &Case) -> Inventory {
    let hint = Hint {
        distro: case.hint.map(str::to_string),
    };
    let bytes = fixture(case.fixture);
    assert_eq!(
        detect(&bytes),
        Some(case.format),
        "{} detected",
        case.fixture
    );
    let inv = parse(case.format, &bytes, &hint).unwrap_or_else(|e| panic!("{}: {e}", case.fixture));
    assert_eq!(
        inv.components.len(),
        case.count,
        "{} component count",
        case.fixture
    );
    assert_eq!(
        inv.warnings.len(),
        case.warnings,
        "{} warnings: {:?}",
        case.fixture,
        inv.warnings
    );
    let all = strings(&inv);
    for want in case.contains {
        assert!(
            all.iter().any(|p| p == want),
            "{}: missing {want}",
            case.fixture
        );
    }
    inv
}

#[test]
fn os_database_fixtures() {
    let cases = [
        Case {
            fixture: "inventories/debian-12.dpkg-status",
            format: Format::DpkgStatus,
            hint: Some("debian-12"),
            // 719 stanzas, all "install ok installed" (SOURCES.md says 707).
            count: 719,
            warnings: 0,
            contains: &[
                "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
                "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12",
            ],
        },
        Case {
            fixture: "inventories/debian-12.dpkg-status",
            format: Format::DpkgStatus,
            hint: None,
            count: 719,
            warnings: 0,
            contains: &["pkg:deb/debian/libssl3@3.0.19-1~deb12u2?arch=amd64&upstream=openssl"],
        },
        Case {
            fixture: "inventories/ubuntu-18.04.dpkg-status",
            format: Format::DpkgStatus,
            hint: None,
            // 91 stanzas; git is "deinstall ok config-files".
            count: 90,
            warnings: 0,
            contains: &[
                "pkg:deb/ubuntu/bsdutils@1:2.31.1-0.4ubuntu3.1?arch=amd64&upstream=util-linux%402.31.1-0.4ubuntu3.1",
                "pkg:deb/ubuntu/fdisk@2.31.1-0.4ubuntu3.1?arch=amd64&upstream=util-linux",
            ],
        },
        Case {
            fixture: "inventories/ubuntu-18.04.dpkg-status",
            format: Format::DpkgStatus,
            hint: Some("ubuntu-18.04"),
            count: 90,
            warnings: 0,
            contains: &[
                "pkg:deb/ubuntu/bsdutils@1:2.31.1-0.4ubuntu3.1?arch=amd64&distro=ubuntu-18.04&upstream=util-linux%402.31.1-0.4ubuntu3.1",
            ],
        },
        Case {
            fixture: "inventories/alpine-trivy.apk-installed",
            format: Format::ApkInstalled,
            hint: None,
            // 16 records, one without V:.
            count: 15,
            warnings: 1,
            contains: &[
                "pkg:apk/alpine/musl@1.1.14-r10?arch=x86_64&upstream=musl",
                "pkg:apk/alpine/busybox@1.24.2-r9?arch=x86_64&upstream=busybox",
            ],
        },
        Case {
            fixture: "inventories/alpine-3.18.apk-installed",
            format: Format::ApkInstalled,
            hint: Some("alpine-3.18.4"),
            count: 15,
            warnings: 0,
            contains: &[
                "pkg:apk/alpine/alpine-baselayout-data@3.4.3-r1?arch=x86_64&distro=alpine-3.18.4&upstream=alpine-baselayout",
            ],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn debian_upstream_qualifiers() {
    let inv = dpkg::parse_status(
        &fixture_str("inventories/debian-12.dpkg-status"),
        &Hint::default(),
    )
    .unwrap();
    // 588 stanzas have Source:, 64 of them with a version in parentheses.
    let with_upstream = inv
        .components
        .iter()
        .filter(|p| p.qualifier("upstream").is_some())
        .count();
    let with_version = inv
        .components
        .iter()
        .filter(|p| p.upstream().is_some_and(|(_, v)| v.is_some()))
        .count();
    assert_eq!((with_upstream, with_version), (588, 64));
    assert!(
        inv.components
            .iter()
            .all(|p| p.namespace.as_deref() == Some("debian"))
    );
    assert_eq!(inv.distro, None);
}

#[test]
fn ubuntu_is_recognised_without_a_hint() {
    let inv = dpkg::parse_status(
        &fixture_str("inventories/ubuntu-18.04.dpkg-status"),
        &Hint::default(),
    )
    .unwrap();
    assert!(
        inv.components
            .iter()
            .all(|p| p.namespace.as_deref() == Some("ubuntu"))
    );
    assert!(
        !inv.components.iter().any(|p| p.name == "git"),
        "config-files only"
    );
    let bsdutils = find(&inv, "bsdutils");
    assert_eq!(
        bsdutils.upstream(),
        Some(("util-linux", Some("2.31.1-0.4ubuntu3.1")))
    );
    assert_eq!(
        bsdutils.qualifier("upstream"),
        Some("util-linux@2.31.1-0.4ubuntu3.1")
    );
    // The other util-linux binaries share the binary version, so dpkg
    // writes no source version for them.
    for name in [
        "fdisk",
        "libuuid1",
        "mount",
        "libblkid1",
        "libmount1",
        "libsmartcols1",
        "libfdisk1",
    ] {
        let p = find(&inv, name);
        assert_eq!(p.upstream(), Some(("util-linux", None)), "{name}");
        assert_eq!(p.version.as_deref(), Some("2.31.1-0.4ubuntu3.1"), "{name}");
    }
    // A hint's distro ID overrides the guess.
    let inv = dpkg::parse_status(
        &fixture_str("inventories/ubuntu-18.04.dpkg-status"),
        &Hint::distro("debian-10"),
    )
    .unwrap();
    assert_eq!(find(&inv, "bsdutils").namespace.as_deref(), Some("debian"));
}

#[test]
fn apk_record_without_version_is_a_warning() {
    let inv = apk::parse_installed(
        &fixture_str("inventories/alpine-trivy.apk-installed"),
        &Hint::default(),
    )
    .unwrap();
    let w = &inv.warnings[0];
    assert_eq!(w.location.as_deref(), Some("line 23"));
    assert!(w.message.contains("invalidPackageWithoutAVersion"), "{w}");
    assert!(
        inv.components
            .iter()
            .all(|p| p.ty == "apk" && p.namespace.as_deref() == Some("alpine"))
    );

    let text = "P:nameless-follows\nV:1-r0\n\nV:2-r0\nA:x86_64\n\nP:ok\nV:1.0-r0\n";
    let inv = apk::parse_installed(text, &Hint::distro("wolfi")).unwrap();
    assert_eq!(
        strings(&inv),
        [
            "pkg:apk/wolfi/nameless-follows@1-r0?distro=wolfi",
            "pkg:apk/wolfi/ok@1.0-r0?distro=wolfi"
        ]
    );
    assert_eq!(inv.warnings.len(), 1);
    assert_eq!(inv.warnings[0].location.as_deref(), Some("line 4"));
}

#[test]
fn dpkg_errors_name_the_line() {
    let good =
        "Package: a\nStatus: install ok installed\nVersion: 1.0\nDescription: x\n more\n .\n";
    assert_eq!(
        dpkg::parse_status(good, &Hint::default())
            .unwrap()
            .components
            .len(),
        1
    );

    let cases: &[(&str, &[&str])] = &[
        (
            "Package: a\nStatus: install ok installed\nVersion: 1.0\nthis is garbage\n",
            &["dpkg-status", "line 4", "this is garbage"],
        ),
        (
            " leading continuation\nPackage: a\n",
            &["line 1", "continuation"],
        ),
        (
            "Package: a\nStatus: install ok installed\n\nPackage: b\n",
            &["line 1", "\"a\" has no Version"],
        ),
        (
            "Status: install ok installed\nVersion: 1\n",
            &["line 1", "without a Package"],
        ),
        (
            "Package: a\nStatus: installed\nVersion: 1\n",
            &["line 2", "three words"],
        ),
        (
            "Package: a\nVersion: 1\nSource: b (1\n",
            &["line 3", "Source"],
        ),
        (
            "Package: a\nVersion: 1\nVersion: 2\n",
            &["line 3", "duplicate"],
        ),
        ("Package: a\nVersion: 1 2\n", &["line 2", "invalid version"]),
    ];
    for (text, fragments) in cases {
        let err = dpkg::parse_status(text, &Hint::default()).unwrap_err();
        assert_err_contains(&err, fragments);
    }

    // A garbage line in the middle of the real file.
    let mut text = fixture_str("inventories/debian-12.dpkg-status");
    let lines: Vec<&str> = text.lines().collect();
    let n = 5000;
    let mut broken: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    broken.insert(n - 1, "%%% not a field %%%".to_string());
    text = broken.join("\n");
    let err = parse(Format::DpkgStatus, text.as_bytes(), &Hint::default()).unwrap_err();
    assert_err_contains(&err, &[&format!("line {n}:")]);
    assert_eq!(err.location.as_ref().and_then(|l| l.line), Some(n));
}

#[test]
fn dpkg_status_d_and_windows_line_endings() {
    // distroless status.d files have no Status field: installed.
    let text =
        "Package: tzdata\r\nVersion: 2021a-1+deb11u8\r\nArchitecture: all\r\nSource: tzdata\r\n";
    let inv = dpkg::parse_status(text, &Hint::distro("debian-11")).unwrap();
    assert_eq!(
        strings(&inv),
        ["pkg:deb/debian/tzdata@2021a-1%2Bdeb11u8?arch=all&distro=debian-11&upstream=tzdata"]
    );
    // Not-installed states are skipped.
    let text = "Package: a\nStatus: install ok half-installed\nVersion: 1\n\nPackage: b\nStatus: hold ok installed\nVersion: 2\n";
    let inv = dpkg::parse_status(text, &Hint::default()).unwrap();
    assert_eq!(strings(&inv), ["pkg:deb/debian/b@2"]);
}

#[test]
fn apk_errors_name_the_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "P:a\nV:1\nnot a field\n",
            &["apk-installed", "line 3", "not a field"],
        ),
        ("P:a\nV:1\nPP:x\n", &["line 3"]),
        ("P:a\nV:1\nP:b\nV:2\n", &["line 3", "second \"P:\""]),
    ];
    for (text, fragments) in cases {
        let err = apk::parse_installed(text, &Hint::default()).unwrap_err();
        assert_err_contains(&err, fragments);
    }
}

#[test]
fn purl_lists() {
    let text = "# components of image X\n\
                pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64\n\
                \n\
                  pkg:pypi/Flask_Caching@1.10.1  \r\n\
                pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64\n\
                pkg:apk/alpine/musl@1.2.4-r2?distro=alpine-3.18.4\n";
    assert_eq!(detect(text.as_bytes()), Some(Format::Purls));
    let inv = parse(Format::Purls, text.as_bytes(), &Hint::distro("debian-12")).unwrap();
    assert_eq!(
        strings(&inv),
        [
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12",
            "pkg:pypi/flask-caching@1.10.1",
            "pkg:apk/alpine/musl@1.2.4-r2?distro=alpine-3.18.4",
        ],
        "de-duplicated, in order; distro only added where missing and only to OS packages"
    );
    assert_eq!(inv.distro.as_deref(), Some("debian-12"));

    // A bad line is skipped with its position; strict reading refuses the
    // list at it.
    let bad = "pkg:npm/a@1\n# fine\npkg:npm/b@1\nnpm/c@1\npkg:npm/d\n";
    let inv = parse(Format::Purls, bad.as_bytes(), &Hint::default()).unwrap();
    assert_eq!(strings(&inv), ["pkg:npm/a@1", "pkg:npm/b@1"]);
    assert_eq!(inv.locations, ["line 1", "line 3"]);
    assert_eq!(inv.skipped.len(), 2);
    assert_err_contains(&inv.skipped[0], &["purls", "line 4", "npm/c@1"]);
    assert_err_contains(
        &inv.skipped[1],
        &["purls", "line 5", "pkg:npm/d", "no version"],
    );
    let err = inv.strict().unwrap_err();
    assert_err_contains(&err, &["purls", "line 4", "npm/c@1"]);

    let err = parse(
        Format::Purls,
        b"pkg:npm/a@1\npkg:npm/\xff\n",
        &Hint::default(),
    )
    .unwrap_err();
    assert_err_contains(&err, &["line 2", "UTF-8"]);
}

#[test]
fn detection() {
    let cases: &[(&[u8], Option<Format>)] = &[
        (
            b"\xEF\xBB\xBF  {\"bomFormat\": \"CycloneDX\"}",
            Some(Format::CycloneDxJson),
        ),
        (b"{\"spdxVersion\": \"SPDX-2.3\"}", Some(Format::SpdxJson)),
        (b"{\"id\": \"OSV-1\"}", None),
        (
            b"<?xml version=\"1.0\"?><bom xmlns=\"http://cyclonedx.org/schema/bom/1.5\"/>",
            Some(Format::CycloneDxXml),
        ),
        (b"<html></html>", None),
        (b"Package: a\nVersion: 1\n", Some(Format::DpkgStatus)),
        (
            b"Status: install ok installed\nPackage: a\n",
            Some(Format::DpkgStatus),
        ),
        (b"C:Q1abc=\nP:musl\n", Some(Format::ApkInstalled)),
        (b"# list\n\npkg:npm/a@1\n", Some(Format::Purls)),
        (b"hello world\n", None),
        (b"", None),
        (b"   \n\t", None),
    ];
    for (bytes, want) in cases {
        assert_eq!(detect(bytes), *want, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn format_names() {
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>().unwrap(), f);
        assert_eq!(f.to_string(), f.name());
    }
    assert_eq!(
        "CycloneDX-JSON".parse::<Format>().unwrap(),
        Format::CycloneDxJson
    );
    let err = "rpmdb".parse::<Format>().unwrap_err();
    assert_err_contains(&err, &["rpmdb", "dpkg-status"]);
}
