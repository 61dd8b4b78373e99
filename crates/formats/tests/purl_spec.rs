//! Package URLs against a sample of the purl-spec test suite
//! (github.com/package-url/purl-spec: test-suite-data.json and
//! tests/types/*-test.json, current ECMA-427 encoding rules), plus the
//! project's own purls.

use patchline_formats::{Purl, PurlError};
use std::collections::BTreeMap;

/// (input, expected canonical form); `None` means the input is invalid.
const ROUNDTRIP: &[(&str, Option<&str>)] = &[
    // base
    (
        "pkg:maven/org.apache.commons/io@1.3.4",
        Some("pkg:maven/org.apache.commons/io@1.3.4"),
    ),
    (
        "pkg:maven/org.apache.commons/io",
        Some("pkg:maven/org.apache.commons/io"),
    ),
    (
        "pkg:/maven/org.apache.commons/io",
        Some("pkg:maven/org.apache.commons/io"),
    ),
    (
        "pkg://maven/org.apache.commons/io",
        Some("pkg:maven/org.apache.commons/io"),
    ),
    (
        "pkg:///maven/org.apache.commons/io",
        Some("pkg:maven/org.apache.commons/io"),
    ),
    (
        "pkg:maven/HTTPClient/HTTPClient@0.3-3",
        Some("pkg:maven/HTTPClient/HTTPClient@0.3-3"),
    ),
    (
        "pkg:maven/mygroup/myartifact@1.0.0%20Final?mykey=my%20value",
        Some("pkg:maven/mygroup/myartifact@1.0.0%20Final?mykey=my%20value"),
    ),
    (
        "pkg:Maven/org.apache.xmlgraphics/batik-anim@1.9.1?classifier=sources&repositorY_url=https://repo.spring.io/release",
        Some(
            "pkg:maven/org.apache.xmlgraphics/batik-anim@1.9.1?classifier=sources&repository_url=https:%2F%2Frepo.spring.io%2Frelease",
        ),
    ),
    (
        "pkg:Maven/org.apache.xmlgraphics/batik-anim@1.9.1?type=pom&repositorY_url=repo.spring.io/release",
        Some(
            "pkg:maven/org.apache.xmlgraphics/batik-anim@1.9.1?repository_url=repo.spring.io%2Frelease&type=pom",
        ),
    ),
    (
        "pkg:Maven/net.sf.jacob-project/jacob@1.14.3?classifier=x86&type=dll",
        Some("pkg:maven/net.sf.jacob-project/jacob@1.14.3?classifier=x86&type=dll"),
    ),
    (
        "pkg:GOLANG/google.golang.org/genproto#/googleapis/api/annotations/",
        Some("pkg:golang/google.golang.org/genproto#googleapis/api/annotations"),
    ),
    (
        "pkg:GOLANG/google.golang.org/genproto@abcdedf#/googleapis/api/annotations/",
        Some("pkg:golang/google.golang.org/genproto@abcdedf#googleapis/api/annotations"),
    ),
    (
        "pkg:bitbucket/birKenfeld/pyGments-main@244fd47e07d1014f0aed9c",
        Some("pkg:bitbucket/birkenfeld/pygments-main@244fd47e07d1014f0aed9c"),
    ),
    (
        "pkg:github/Package-url/purl-Spec@244fd47e07d1004f0aed9c",
        Some("pkg:github/package-url/purl-spec@244fd47e07d1004f0aed9c"),
    ),
    (
        "pkg:docker/customer/dockerimage@sha256:244fd47e07d1004f0aed9c?repository_url=gcr.io",
        Some("pkg:docker/customer/dockerimage@sha256:244fd47e07d1004f0aed9c?repository_url=gcr.io"),
    ),
    (
        "pkg:gem/jruby-launcher@1.1.2?Platform=java",
        Some("pkg:gem/jruby-launcher@1.1.2?platform=java"),
    ),
    (
        "pkg:Nuget/EnterpriseLibrary.Common@6.0.1304",
        Some("pkg:nuget/EnterpriseLibrary.Common@6.0.1304"),
    ),
    (
        "pkg:PYPI/Django_package@1.11.1.dev1",
        Some("pkg:pypi/django-package@1.11.1.dev1"),
    ),
    (
        "pkg:pypi/django@1.11.1?file_name=Django-1.11.1-py2.py3-none-any.whl",
        Some("pkg:pypi/django@1.11.1?file_name=Django-1.11.1-py2.py3-none-any.whl"),
    ),
    (
        "pkg:Rpm/fedora/curl@7.50.3-1.fc25?Arch=i386&Distro=fedora-25",
        Some("pkg:rpm/fedora/curl@7.50.3-1.fc25?arch=i386&distro=fedora-25"),
    ),
    (
        "pkg:rpm/centerim@4.22.10-1.el6?arch=i686&epoch=1&distro=fedora-25",
        Some("pkg:rpm/centerim@4.22.10-1.el6?arch=i686&distro=fedora-25&epoch=1"),
    ),
    (
        "pkg:npm/%40angular/animation@12.3.1",
        Some("pkg:npm/%40angular/animation@12.3.1"),
    ),
    (
        "pkg:npm/@babel/core#/googleapis/api/annotations/",
        Some("pkg:npm/%40babel/core#googleapis/api/annotations"),
    ),
    (
        "pkg:npm/core@2.0.1#/googleapis/api/annotations/",
        Some("pkg:npm/core@2.0.1#googleapis/api/annotations"),
    ),
    (
        "pkg:npm/mypackage@12.4.5?vcs_url=git://host.com/path/to/repo.git%404345abcd34343",
        Some(
            "pkg:npm/mypackage@12.4.5?vcs_url=git:%2F%2Fhost.com%2Fpath%2Fto%2Frepo.git%404345abcd34343",
        ),
    ),
    (
        "pkg:npm/packageurl-js@0.0.7?vcs_url=git%2Bhttps%3A%2F%2Fgithub.com%2Fpackage-url%2Fpackageurl-js.git",
        Some(
            "pkg:npm/packageurl-js@0.0.7?vcs_url=git%2Bhttps:%2F%2Fgithub.com%2Fpackage-url%2Fpackageurl-js.git",
        ),
    ),
    (
        "pkg:generic/bitwarderl?checksum=sha1:ad9503c3e994a4f%2Csha256:41bf9088b3a1e6c1ef1d",
        Some("pkg:generic/bitwarderl?checksum=sha1:ad9503c3e994a4f%2Csha256:41bf9088b3a1e6c1ef1d"),
    ),
    ("pkg:conan/cctz@2.3", Some("pkg:conan/cctz@2.3")),
    (
        "pkg:conan/bincrafters/cctz@2.3?channel=stable",
        Some("pkg:conan/bincrafters/cctz@2.3?channel=stable"),
    ),
    (
        "pkg:conda/absl-py@0.4.1?build=py36h06a4308_0&channel=main&subdir=linux-64&type=tar.bz2",
        Some(
            "pkg:conda/absl-py@0.4.1?build=py36h06a4308_0&channel=main&subdir=linux-64&type=tar.bz2",
        ),
    ),
    ("pkg:cran/A3@0.9.1", Some("pkg:cran/A3@0.9.1")),
    (
        "pkg:swift/github.com/Alamofire/Alamofire@5.4.3",
        Some("pkg:swift/github.com/Alamofire/Alamofire@5.4.3"),
    ),
    (
        "pkg:hackage/AC-HalfInteger@1.2.1",
        Some("pkg:hackage/AC-HalfInteger@1.2.1"),
    ),
    // deb and apk types
    (
        "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie",
        Some("pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"),
    ),
    (
        "pkg:deb/ubuntu/dpkg@1.19.0.4?arch=amd64",
        Some("pkg:deb/ubuntu/dpkg@1.19.0.4?arch=amd64"),
    ),
    (
        "pkg:deb/debian/attr@1:2.4.47-2?arch=source",
        Some("pkg:deb/debian/attr@1:2.4.47-2?arch=source"),
    ),
    (
        "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64",
        Some("pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64"),
    ),
    (
        "pkg:apk/alpine/curl@7.83.0-r0?arch=x86",
        Some("pkg:apk/alpine/curl@7.83.0-r0?arch=x86"),
    ),
    // empty qualifier values are dropped; an empty qualifier list too
    ("pkg:npm/foo@1.0?a=&b=2", Some("pkg:npm/foo@1.0?b=2")),
    ("pkg:npm/foo@1.0?a=", Some("pkg:npm/foo@1.0")),
    // the project's own purls
    (
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=debian-12",
        Some(
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
        ),
    ),
    (
        "pkg:deb/debian/bsdutils@1:2.29.2-1+deb9u1?arch=amd64&upstream=util-linux%402.29.2-1+deb9u1&distro=debian-9",
        Some(
            "pkg:deb/debian/bsdutils@1:2.29.2-1%2Bdeb9u1?arch=amd64&distro=debian-9&upstream=util-linux%402.29.2-1%2Bdeb9u1",
        ),
    ),
    (
        "pkg:golang/github.com/tianon/gosu@(devel)",
        Some("pkg:golang/github.com/tianon/gosu@%28devel%29"),
    ),
    // invalid
    ("EnterpriseLibrary.Common@6.0.1304", None),
    ("pkg:EnterpriseLibrary.Common@6.0.1304", None),
    ("pkg:maven/@1.3.4", None),
    ("pkg:n&g?inx/nginx@0.8.9", None),
    ("pkg:3nginx/nginx@0.8.9", None),
    ("pkg:nginx:a/nginx@0.8.9", None),
    ("pkg:npm/myartifact@1.0.0?in%20production=true", None),
    ("pkg%3Amaven/org.apache.commons/io", None),
    ("pkg:conan/bincrafters/cctz@2.3", None),
    ("pkg:conan/cctz@2.3?channel=stable", None),
    ("pkg:cran/@0.9.1", None),
    ("pkg:cran/A3", None),
    ("pkg:swift/Alamofire@5.4.3", None),
    ("pkg:swift/github.com/Alamofire/@5.4.3", None),
    ("pkg:swift/github.com/Alamofire/Alamofire", None),
    ("pkg:hackage", None),
    ("pkg:npm/foo@1.0?a=1&A=2", None),
    ("pkg:npm/foo%zz", None),
    ("pkg:npm/foo%", None),
    ("pkg:npm/foo%FF", None),
    ("pkg:npm/foo?novalue", None),
    ("", None),
    ("pkg:", None),
];

#[test]
fn purl_spec_roundtrip_sample() {
    let mut failures = Vec::new();
    for (input, expected) in ROUNDTRIP {
        let got: Result<Purl, PurlError> = input.parse();
        match (got, expected) {
            (Ok(p), Some(want)) => {
                if p.to_string() != *want {
                    failures.push(format!("{input}: got {p}, want {want}"));
                }
                // The canonical form is a fixed point.
                let again: Purl = p.to_string().parse().expect("canonical form parses");
                if again != p {
                    failures.push(format!("{input}: canonical form does not re-parse equal"));
                }
            }
            (Err(e), Some(want)) => failures.push(format!("{input}: error {e}, want {want}")),
            (Ok(p), None) => failures.push(format!("{input}: parsed as {p}, want an error")),
            (Err(_), None) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_parts(
    input: &str,
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
    subpath: Option<&str>,
) {
    let p: Purl = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
    let q: BTreeMap<String, String> = qualifiers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        (
            p.ty.as_str(),
            p.namespace.as_deref(),
            p.name.as_str(),
            p.version.as_deref(),
            &p.qualifiers,
            p.subpath.as_deref()
        ),
        (ty, namespace, name, version, &q, subpath),
        "{input}"
    );
}

#[test]
fn purl_spec_parse_components() {
    check_parts(
        "pkg:Maven/org.apache.xmlgraphics/batik-anim@1.9.1?classifier=sources&repositorY_url=https://repo.spring.io/release",
        "maven",
        Some("org.apache.xmlgraphics"),
        "batik-anim",
        Some("1.9.1"),
        &[
            ("classifier", "sources"),
            ("repository_url", "https://repo.spring.io/release"),
        ],
        None,
    );
    check_parts(
        "pkg:npm/%40angular/animation@12.3.1",
        "npm",
        Some("@angular"),
        "animation",
        Some("12.3.1"),
        &[],
        None,
    );
    check_parts(
        "pkg:npm/@babel/core#/googleapis/api/annotations/",
        "npm",
        Some("@babel"),
        "core",
        None,
        &[],
        Some("googleapis/api/annotations"),
    );
    check_parts(
        "pkg:npm/mypackage@12.4.5?vcs_url=git://host.com/path/to/repo.git%404345abcd34343",
        "npm",
        None,
        "mypackage",
        Some("12.4.5"),
        &[("vcs_url", "git://host.com/path/to/repo.git@4345abcd34343")],
        None,
    );
    check_parts(
        "pkg:maven/mygroup/myartifact@1.0.0%20Final?mykey=my%20value",
        "maven",
        Some("mygroup"),
        "myartifact",
        Some("1.0.0 Final"),
        &[("mykey", "my value")],
        None,
    );
    check_parts(
        "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64",
        "deb",
        Some("debian"),
        "attr",
        Some("1:2.4.47-2+b1"),
        &[("arch", "amd64")],
        None,
    );
    check_parts(
        "pkg:PYPI/Django_package@1.11.1.dev1",
        "pypi",
        None,
        "django-package",
        Some("1.11.1.dev1"),
        &[],
        None,
    );
    check_parts(
        "pkg:swift/github.com/Alamofire/Alamofire@5.4.3",
        "swift",
        Some("github.com/Alamofire"),
        "Alamofire",
        Some("5.4.3"),
        &[],
        None,
    );
    // a '+' stays a '+': purls are not form-encoded
    check_parts(
        "pkg:deb/debian/a@1+b?upstream=x%401+b",
        "deb",
        Some("debian"),
        "a",
        Some("1+b"),
        &[("upstream", "x@1+b")],
        None,
    );
}

#[test]
fn built_purls_print_canonically() {
    let mut p = Purl::new("DEB", Some("Debian"), "LibSSL3", Some("3.0.11-1~deb12u2")).unwrap();
    p.set_qualifier("upstream", "openssl@3.0.11-1~deb12u2");
    p.set_qualifier("Arch", "amd64");
    p.set_qualifier("empty", "");
    assert_eq!(
        p.to_string(),
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl%403.0.11-1~deb12u2"
    );
    assert_eq!(p.qualifier("arch"), Some("amd64"));
    assert_eq!(p.upstream(), Some(("openssl", Some("3.0.11-1~deb12u2"))));

    // Fields set by hand are normalised on output too.
    let hand = Purl {
        ty: "PyPI".into(),
        namespace: None,
        name: "Flask_Caching".into(),
        version: Some("1.0".into()),
        qualifiers: [
            ("OS".to_string(), "linux".to_string()),
            ("a".to_string(), String::new()),
        ]
        .into_iter()
        .collect(),
        subpath: Some("/./src//lib/../".into()),
    };
    assert_eq!(
        hand.to_string(),
        "pkg:pypi/flask-caching@1.0?os=linux#src/lib"
    );
}

#[test]
fn serde_uses_the_canonical_string() {
    let p: Purl = "pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64"
        .parse()
        .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(json, "\"pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64\"");
    let back: Purl = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let bad = serde_json::from_str::<Purl>("\"pkg:\"").unwrap_err();
    assert!(bad.to_string().contains("invalid purl"), "{bad}");
}

#[test]
fn error_names_the_input_and_reason() {
    let e = "pkg:npm/foo@1.0?a=1&a=2".parse::<Purl>().unwrap_err();
    assert!(e.to_string().contains("pkg:npm/foo@1.0?a=1&a=2"), "{e}");
    assert!(e.reason().contains("twice"), "{e}");
    // Huge inputs are shortened in the message.
    let long = format!("pkg:{}", "x".repeat(10_000));
    let e = long.parse::<Purl>().unwrap_err();
    assert!(e.to_string().len() < 300);
}
