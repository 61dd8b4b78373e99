//! Robustness and consistency: no input panics, and every scheme's order is
//! a total preorder (antisymmetric, transitive) whose `Eq` agrees with
//! `Hash`, including on strings no package manager would produce.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use patchline_versions::{Scheme, Version};
use proptest::prelude::*;

/// Pieces that hit the interesting branches of every parser when glued
/// together at random.
const FRAGMENTS: &[&str] = &[
    "0",
    "1",
    "2",
    "9",
    "10",
    "00",
    "01",
    "007",
    "4294967296",
    "99999999999999999999999",
    ".",
    ".",
    ".",
    "-",
    "-",
    "_",
    "~",
    "^",
    ":",
    "+",
    "!",
    "a",
    "b",
    "c",
    "d",
    "r",
    "p",
    "v",
    "x",
    "A",
    "Z",
    "alpha",
    "beta",
    "pre",
    "preview",
    "rc",
    "post",
    "rev",
    "dev",
    "cvs",
    "svn",
    "git",
    "hg",
    "final",
    "ga",
    "sp",
    "cr",
    "m",
    "snapshot",
    "release",
    "#",
    "-r",
    "-r1",
    "_p",
    "_alpha",
    "~abc",
    "1:",
    "é",
    "α",
    "*",
    "@",
];

fn version_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..7).prop_map(|v| v.concat())
}

fn hash_of(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Asserts antisymmetry, transitivity and Eq/Hash agreement on a triple.
fn check_triple(vs: &[Version; 3]) -> Result<(), TestCaseError> {
    for x in vs {
        prop_assert_eq!(x.cmp(x), Ordering::Equal, "{:?} not equal to itself", x);
        for y in vs {
            let (xy, yx) = (x.cmp(y), y.cmp(x));
            prop_assert_eq!(xy, yx.reverse(), "antisymmetry: {:?} vs {:?}", x, y);
            prop_assert_eq!(xy == Ordering::Equal, x == y);
            if x == y {
                prop_assert_eq!(hash_of(x), hash_of(y), "hash: {:?} == {:?}", x, y);
            }
            for z in vs {
                if x <= y && y <= z {
                    prop_assert!(x <= z, "transitivity: {:?} <= {:?} <= {:?}", x, y, z);
                }
                if x == y && y == z {
                    prop_assert!(x == z, "equality: {:?} = {:?} = {:?}", x, y, z);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        for scheme in Scheme::ALL {
            if let Ok(v) = scheme.parse(&s) {
                prop_assert_eq!(v.as_str(), s.as_str());
                prop_assert_eq!(v.scheme(), scheme);
                prop_assert_eq!(v.cmp(&v), Ordering::Equal);
            }
        }
    }

    #[test]
    fn order_is_consistent(a in version_like(), b in version_like(), c in version_like()) {
        for scheme in Scheme::ALL {
            let (Ok(x), Ok(y), Ok(z)) = (scheme.parse(&a), scheme.parse(&b), scheme.parse(&c)) else {
                continue;
            };
            check_triple(&[x, y, z])?;
        }
    }
}

/// Small deterministic generator so this test needs no seed handling.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random triples rarely expose a cycle; sorting a large mixed sample and
/// then checking *every* pair against the sorted order does. The sample mixes
/// real versions from the vector files with random fragment soup.
#[test]
fn sorted_sample_is_consistent_for_every_pair() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/versions/");
    let files: &[(Scheme, &[&str])] = &[
        (
            Scheme::Dpkg,
            &["debian-versions.txt", "debian-versions-generated.txt"],
        ),
        (
            Scheme::Apk,
            &["alpine-versions.txt", "alpine-versions-generated.txt"],
        ),
        (Scheme::Rpm, &["redhat-versions.txt"]),
        (
            Scheme::Pep440,
            &["pypi-versions.txt", "pypi-versions-generated.txt"],
        ),
        (Scheme::Semver, &["semver-versions.txt"]),
        (
            Scheme::Maven,
            &["maven-versions.txt", "maven-versions-generated.txt"],
        ),
        (
            Scheme::RubyGems,
            &["rubygems-versions.txt", "rubygems-versions-generated.txt"],
        ),
        (Scheme::NuGet, &["nuget-versions.txt"]),
        (
            Scheme::Packagist,
            &["packagist-versions.txt", "packagist-versions-generated.txt"],
        ),
        (Scheme::Pub, &["pub-versions.txt"]),
        (Scheme::Hackage, &["hackage-versions.txt"]),
        (
            Scheme::Cran,
            &["cran-versions.txt", "cran-versions-generated.txt"],
        ),
    ];
    for scheme in Scheme::ALL {
        assert!(
            files.iter().any(|(s, _)| *s == scheme),
            "no sample for {scheme}"
        );
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for &(scheme, names) in files {
        let mut real: Vec<String> = Vec::new();
        for name in names {
            let text = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [a, "<" | "=" | ">", b] = fields[..] {
                    real.push(a.to_owned());
                    real.push(b.to_owned());
                }
            }
        }
        let mut sample: Vec<Version> = Vec::new();
        for _ in 0..400 {
            let s = &real[rng.below(real.len())];
            sample.push(scheme.parse(s).unwrap());
        }
        while sample.len() < 1000 {
            let n = 1 + rng.below(6);
            let s: String = (0..n)
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect();
            if let Ok(v) = scheme.parse(&s) {
                sample.push(v);
            }
        }
        sample.sort();
        for i in 0..sample.len() {
            for j in i + 1..sample.len() {
                let (x, y) = (&sample[i], &sample[j]);
                assert!(
                    x.cmp(y) != Ordering::Greater && y.cmp(x) != Ordering::Less,
                    "{scheme}: sorted {x:?} before {y:?} but they compare {:?}",
                    x.cmp(y)
                );
                if x == y {
                    assert_eq!(hash_of(x), hash_of(y), "{scheme}: {x:?} == {y:?}");
                }
            }
        }
    }
}
