//! No parser panics, whatever it is fed: random bytes, purl-like strings,
//! and the real fixtures truncated, bit-flipped, spliced and shuffled.
//! Results are ignored; only returning (Ok or Err) matters. The purl
//! canonical form is also checked to be a fixed point.

mod common;

use patchline_formats::{Format, Hint, Purl, detect, os_release, osv, parse, parse_json_value};
use proptest::prelude::*;
use std::sync::LazyLock;

const FIXTURES: &[&str] = &[
    "inventories/debian-12.dpkg-status",
    "inventories/ubuntu-18.04.dpkg-status",
    "inventories/alpine-trivy.apk-installed",
    "inventories/alpine-3.18.apk-installed",
    "sboms/postgres-11.15-stretch.cdx.xml",
    "sboms/alpine-3.17.2.cdx.xml",
    "sboms/alpine-zlib.cdx.json",
    "sboms/centos-7.cdx.json",
    "sboms/centos-7.spdx.json",
    "sboms/postgresql.spdx.json",
    "sboms/invalid.spdx.json",
    "advisories/ubuntu/USN-4512-1.json",
    "advisories/ubuntu/UBUNTU-CVE-2019-12900.json",
    "advisories/debian/DSA-3029-1.json",
    "advisories/alpine/CVE-2022-27449.json",
    "advisories/pypi/PYSEC-2023-212.yaml",
    "advisories/pypi/PYSEC-2021-13.yaml",
];

/// Fixtures loaded once. The two large ones are cut to their first 40 KiB
/// so each case stays fast; their structure is the same throughout.
static DATA: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    FIXTURES
        .iter()
        .map(|f| {
            let mut b = common::fixture(f);
            b.truncate(40 * 1024);
            b
        })
        .collect()
});

/// Feeds the input to every parser of the crate.
fn feed_all(bytes: &[u8]) {
    let hint = Hint::distro("debian-12");
    let _ = detect(bytes);
    for f in Format::ALL {
        let _ = parse(f, bytes, &hint);
        let _ = parse(f, bytes, &Hint::default());
    }
    let _ = osv::parse_json(bytes);
    let _ = osv::parse_yaml(bytes);
    let _ = osv::parse_auto("x", bytes);
    let text = String::from_utf8_lossy(bytes);
    let _ = os_release::parse(&text);
    let _ = text.parse::<Purl>();
    for line in text.lines().take(50) {
        let _ = line.parse::<Purl>();
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = parse_json_value(&value, &hint);
        let _ = serde_json::from_value::<osv::Advisory>(value);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies a span to another place (duplicates keys, tags, stanzas).
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'\n'),
                    Just(b'"'),
                    Just(b'{'),
                    Just(b'<'),
                    Just(b':'),
                    Just(b'%'),
                    Just(b'&'),
                    Just(b'-'),
                ],
                1..8
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..256, any::<usize>())
            .prop_map(|(a, n, b)| Mutation::Splice(a, n, b)),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len().max(1);
        match m {
            Mutation::Truncate(i) => data.truncate(i % len),
            Mutation::Flip(i, b) => {
                if !data.is_empty() {
                    let i = i % data.len();
                    data[i] ^= b | 1;
                }
            }
            Mutation::Insert(i, v) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    data.drain(i..end);
                }
            }
            Mutation::Splice(a, n, b) => {
                if !data.is_empty() {
                    let a = a % data.len();
                    let end = (a + n).min(data.len());
                    let chunk: Vec<u8> = data[a..end].to_vec();
                    let b = b % (data.len() + 1);
                    data.splice(b..b, chunk);
                }
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        feed_all(&bytes);
    }

    #[test]
    fn structured_random_text(text in "[ -~\n\t]{0,300}") {
        feed_all(text.as_bytes());
    }

    #[test]
    fn mutated_fixtures(
        which in 0..FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let data = apply(DATA[which].clone(), &mutations);
        feed_all(&data);
    }

    /// Any purl that parses prints a canonical form that parses back to the
    /// same purl and prints the same.
    #[test]
    fn purl_canonical_form_is_a_fixed_point(
        s in "pkg:(/){0,2}[a-zA-Z][a-zA-Z0-9.+-]{0,6}/(([a-zA-Z0-9@._~:+ -]|%[0-9A-Fa-f]{2}){0,12}/){0,2}([a-zA-Z0-9@._~:+ -]|%[0-9A-Fa-f]{2}){1,12}(@([a-zA-Z0-9@._~:+ -]|%[0-9A-Fa-f]{2}){0,10})?(\\?([a-zA-Z_.-]{1,5}=(([a-zA-Z0-9@._~:+ -]|%[0-9A-Fa-f]{2})|/|=){0,10}&?){0,3})?(#(([a-zA-Z0-9@._~:+ -]|%[0-9A-Fa-f]{2})|/){0,12})?"
    ) {
        if let Ok(p) = s.parse::<Purl>() {
            let canonical = p.to_string();
            let again: Purl = canonical.parse().map_err(|e| TestCaseError::fail(format!("{s} -> {canonical}: {e}")))?;
            prop_assert_eq!(&again, &p, "{} -> {}", s, canonical);
            prop_assert_eq!(again.to_string(), canonical);
        }
    }

    /// Purls written into a list parse back equal (the list format adds no
    /// escaping of its own).
    #[test]
    fn purl_lists_round_trip(names in prop::collection::vec("[a-z0-9][a-z0-9.+-]{0,10}", 1..20)) {
        let purls: Vec<Purl> = names.iter().map(|n| Purl::new("deb", Some("debian"), n, Some("1.0-1+b1")).unwrap()).collect();
        let text: String = purls.iter().map(|p| format!("{p}\n")).collect();
        let inv = parse(Format::Purls, text.as_bytes(), &Hint::default()).unwrap();
        let mut unique = purls.clone();
        unique.dedup();
        let mut seen = std::collections::HashSet::new();
        unique.retain(|p| seen.insert(p.clone()));
        prop_assert_eq!(inv.components, unique);
    }
}

#[test]
fn pathological_inputs() {
    // Deep nesting: JSON and YAML have recursion limits; XML is capped.
    let deep_json = format!("{}{}", "{\"components\":[".repeat(5000), "]}".repeat(5000));
    feed_all(deep_json.as_bytes());
    let deep_json2 = "[".repeat(100_000);
    feed_all(deep_json2.as_bytes());
    let deep_xml = format!(
        "<bom xmlns=\"http://cyclonedx.org/schema/bom/1.4\">{}{}</bom>",
        "<components><component>".repeat(2000),
        "</component></components>".repeat(2000)
    );
    let err = parse(Format::CycloneDxXml, deep_xml.as_bytes(), &Hint::default()).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
    let deep_yaml = format!("id: {}", "[".repeat(10_000));
    feed_all(deep_yaml.as_bytes());
    // YAML alias expansion ("billion laughs") is bounded by the YAML crate.
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nid: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    feed_all(laughs.as_bytes());
    // Long lines and many blank records.
    feed_all(format!("Package: {}\nVersion: 1\n", "a".repeat(1_000_000)).as_bytes());
    feed_all("\n".repeat(100_000).as_bytes());
    feed_all(format!("pkg:npm/{}", "%".repeat(10_000)).as_bytes());
}
