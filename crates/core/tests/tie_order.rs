//! OSV events at equal versions keep their listed order: the schema's
//! `sorted(events)` is read as a stable sort by version (as osv.dev's Python
//! evaluation does), in every version ordering patchline has. Each case is
//! written so that the previous rule (introductions before closing events
//! at equal versions) gives another answer, or so that it pins what both
//! rules agree on.

use std::cmp::Ordering;

use patchline_core::Advisory;
use patchline_formats::osv;
use patchline_versions::Scheme;
use serde_json::json;

/// One ordering and versions in it: `low < v == v_alt < mid < w < high`.
struct Case {
    ecosystem: &'static str,
    range_type: &'static str,
    scheme: Scheme,
    low: &'static str,
    v: &'static str,
    /// Another spelling of `v` that the ordering holds equal (or `v` itself
    /// where the ordering has none).
    v_alt: &'static str,
    mid: &'static str,
    w: &'static str,
    high: &'static str,
}

const CASES: &[Case] = &[
    Case {
        ecosystem: "Debian:12",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Dpkg,
        low: "1.0-1",
        v: "1.2-1",
        v_alt: "0:1.2-1",
        mid: "1.5-1",
        w: "2.0-1",
        high: "2.1-1",
    },
    Case {
        ecosystem: "Ubuntu:22.04:LTS",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Dpkg,
        low: "1.2-1ubuntu0.1~",
        v: "1.2-1ubuntu0.1",
        v_alt: "0:1.2-1ubuntu0.1",
        mid: "1.2-1ubuntu0.2",
        w: "1.2-1ubuntu1",
        high: "1:0.1-1",
    },
    Case {
        ecosystem: "Alpine:v3.19",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Apk,
        low: "1.2_rc1-r0",
        v: "1.2-r0",
        v_alt: "1.2-r0",
        mid: "1.2-r1",
        w: "1.3-r0",
        high: "1.3.1-r0",
    },
    Case {
        ecosystem: "Red Hat:enterprise_linux:9::appstream",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Rpm,
        low: "1.2-1.el9~rc1",
        v: "1.2-1.el9",
        v_alt: "0:1.2-1.el9",
        mid: "1.2-1.el9_3",
        w: "1.3-1.el9",
        high: "1:1.0-1.el9",
    },
    Case {
        ecosystem: "Rocky Linux:9",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Rpm,
        low: "2.0-1",
        v: "2.0-2",
        v_alt: "0:2.0-2",
        mid: "2.0-10",
        w: "2.1-1",
        high: "2.1-2",
    },
    Case {
        ecosystem: "AlmaLinux:8",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Rpm,
        low: "3.0-1.el8",
        v: "3.0-1.el8_1",
        v_alt: "0:3.0-1.el8_1",
        mid: "3.0-1.el8_2",
        w: "3.0.1-1.el8",
        high: "3.1-1.el8",
    },
    Case {
        ecosystem: "PyPI",
        range_type: "ECOSYSTEM",
        scheme: Scheme::Pep440,
        low: "1.2rc1",
        v: "1.2",
        v_alt: "1.2.0",
        mid: "1.2.post1",
        w: "1.3",
        high: "2.0",
    },
    Case {
        ecosystem: "npm",
        range_type: "SEMVER",
        scheme: Scheme::Semver,
        low: "1.2.0-rc.1",
        v: "1.2.0",
        v_alt: "1.2.0",
        mid: "1.2.5",
        w: "1.3.0",
        high: "2.0.0",
    },
    Case {
        ecosystem: "crates.io",
        range_type: "SEMVER",
        scheme: Scheme::Semver,
        low: "0.9.9",
        v: "1.0.0",
        v_alt: "1.0.0",
        mid: "1.0.1",
        w: "1.1.0",
        high: "1.1.1",
    },
    Case {
        ecosystem: "Go",
        range_type: "SEMVER",
        scheme: Scheme::Semver,
        low: "1.21.0",
        v: "1.21.3",
        v_alt: "1.21.3",
        mid: "1.21.4",
        w: "1.22.0",
        high: "1.22.1",
    },
    Case {
        ecosystem: "PyPI",
        range_type: "SEMVER",
        scheme: Scheme::Semver,
        low: "2.0.0-alpha",
        v: "2.0.0",
        v_alt: "2.0.0+build.7",
        mid: "2.0.1",
        w: "2.1.0",
        high: "3.0.0",
    },
];

fn compile(case: &Case, events: &[(&str, &str)]) -> Advisory {
    let events: Vec<_> = events.iter().map(|(k, v)| json!({ *k: *v })).collect();
    let doc = json!({
        "id": "TIE-1",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [{
            "package": {"ecosystem": case.ecosystem, "name": "p"},
            "ranges": [{"type": case.range_type, "events": events}],
        }],
    });
    let record = osv::parse_json(doc.to_string().as_bytes()).unwrap();
    let a = Advisory::compile(record).unwrap();
    assert!(
        a.unsupported.is_empty(),
        "{}: {:?}",
        case.ecosystem,
        a.unsupported
    );
    assert_eq!(a.entries.len(), 1, "{}", case.ecosystem);
    a
}

/// `None`: not affected; `Some(fix)`: affected, fixed by `fix`.
fn eval(a: &Advisory, version: &str) -> Option<Option<String>> {
    a.entries[0].evaluate(version).map(|h| h.fixed)
}

fn fixed(v: &str) -> Option<Option<String>> {
    Some(Some(v.to_string()))
}

#[test]
fn the_versions_are_in_order() {
    for c in CASES {
        let cmp = |a, b| c.scheme.compare(a, b).unwrap();
        let chain = [c.low, c.v, c.mid, c.w, c.high];
        for pair in chain.windows(2) {
            assert_eq!(
                cmp(pair[0], pair[1]),
                Ordering::Less,
                "{}: {pair:?}",
                c.ecosystem
            );
        }
        assert_eq!(cmp(c.v, c.v_alt), Ordering::Equal, "{}", c.ecosystem);
    }
}

#[test]
fn fixed_then_introduced_at_one_version_affects_it() {
    for c in CASES {
        let e = c.ecosystem;
        // As the schema lists the events: 0 -> V is one range, V -> W the next.
        let a = compile(
            c,
            &[
                ("introduced", "0"),
                ("fixed", c.v),
                ("introduced", c.v_alt),
                ("fixed", c.w),
            ],
        );
        assert_eq!(eval(&a, c.low), fixed(c.v), "{e} {}", c.low);
        assert_eq!(eval(&a, c.v), fixed(c.w), "{e} {}", c.v);
        assert_eq!(eval(&a, c.v_alt), fixed(c.w), "{e} {}", c.v_alt);
        assert_eq!(eval(&a, c.mid), fixed(c.w), "{e} {}", c.mid);
        assert_eq!(eval(&a, c.w), None, "{e} {}", c.w);
        assert_eq!(eval(&a, c.high), None, "{e} {}", c.high);

        // The same events listed in another order: at V the introduction
        // now comes first and the fix closes it at once, so nothing from V
        // on is affected; the order between distinct versions does not
        // matter.
        let a = compile(
            c,
            &[
                ("introduced", c.v_alt),
                ("fixed", c.w),
                ("introduced", "0"),
                ("fixed", c.v),
            ],
        );
        // Listed order at V: introduced, then fixed: V is not affected.
        assert_eq!(eval(&a, c.v), None, "{e} {} (introduced listed first)", c.v);
        assert_eq!(eval(&a, c.low), fixed(c.v), "{e} {}", c.low);
        assert_eq!(eval(&a, c.mid), None, "{e} {}", c.mid);
    }
}

#[test]
fn introduced_then_fixed_at_one_version_affects_nothing() {
    for c in CASES {
        let e = c.ecosystem;
        let a = compile(c, &[("introduced", c.v), ("fixed", c.v_alt)]);
        for v in [c.low, c.v, c.v_alt, c.mid, c.w, c.high] {
            assert_eq!(eval(&a, v), None, "{e} {v}");
        }
    }
}

#[test]
fn last_affected_at_a_tie() {
    for c in CASES {
        let e = c.ecosystem;
        // introduced V, last_affected V: V alone.
        let a = compile(c, &[("introduced", c.v), ("last_affected", c.v_alt)]);
        assert_eq!(eval(&a, c.low), None, "{e} {}", c.low);
        assert_eq!(eval(&a, c.v), Some(None), "{e} {}", c.v);
        assert_eq!(eval(&a, c.mid), None, "{e} {}", c.mid);

        // last_affected V, then introduced V: the range 0..=V is closed,
        // then reopened from V up to W. Above V, the introduction listed
        // after the closing event decides.
        let a = compile(
            c,
            &[
                ("introduced", "0"),
                ("last_affected", c.v),
                ("introduced", c.v_alt),
                ("fixed", c.w),
            ],
        );
        // Below V the first fix above the introduction is W: the versions
        // between V and W are affected again.
        assert_eq!(eval(&a, c.low), fixed(c.w), "{e} {}", c.low);
        assert_eq!(eval(&a, c.v), fixed(c.w), "{e} {}", c.v);
        assert_eq!(eval(&a, c.mid), fixed(c.w), "{e} {}", c.mid);
        assert_eq!(eval(&a, c.w), None, "{e} {}", c.w);

        // introduced V, then last_affected V at the same tie: above V the
        // closing event, listed last, decides.
        let a = compile(
            c,
            &[
                ("introduced", "0"),
                ("introduced", c.v),
                ("last_affected", c.v_alt),
            ],
        );
        assert_eq!(eval(&a, c.v), Some(None), "{e} {}", c.v);
        assert_eq!(eval(&a, c.mid), None, "{e} {}", c.mid);
    }
}
