//! SemVer 2.0 precedence, read leniently the way OSV tooling does
//! (osv-scalibr's `semantic/version-semver.go`).
//!
//! Leniencies: a leading `v`/`V`; missing minor/patch count as 0 (`1.2 ==
//! 1.2.0`); numbers of any length; the pre-release may start without a `-`
//! (`1.36.0rc1` is `1.36.0-rc1`); numbers past the third are appended to
//! the pre-release (`1.2.3.4` orders as `1.2.3-.4`, just as OSV tools do).
//! Build metadata (from the first `+`) never affects ordering.
//!
//! Pre-release identifiers compare per SemVer: all-digit ones numerically
//! and below alphanumeric ones, which compare bytewise (so `R2 < r100`); a
//! longer list wins when one is a prefix of the other; any pre-release
//! sorts before the release.
//!
//! Rejected: strings that do not start with a number after the optional
//! `v` (`abc`, `v`, `.1`), since no ecosystem using SemVer has those.
//!
//! NuGet is the same reading with four release numbers (`1.0 ==
//! 1.0.0.0`) and a case-insensitive pre-release (`1.0.0-BETA ==
//! 1.0.0-beta`), as osv-scalibr's `semantic/version-nuget.go` has it.

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field, run_len};

/// SemVer and its relatives: `N` release numbers (3 for SemVer, 4 for
/// NuGet); later numbers go to the pre-release as SemVer's do.
#[derive(Clone, Debug)]
pub(crate) struct SemverLike<const N: usize> {
    /// Major, minor, patch (and NuGet's revision): zero-stripped digits
    /// (empty is zero).
    core: [Span; N],
    /// Pre-release text without the leading `-` and without build metadata;
    /// empty for a release. Owned because extra numeric components are
    /// appended to it.
    pre: Box<str>,
    /// Build metadata (after the first `+`), kept only where it orders
    /// (Pub); empty elsewhere.
    meta: Box<str>,
}

/// How a SemVer relative reads its text.
#[derive(Clone, Copy)]
pub(crate) struct Flavor {
    /// Lower-case the pre-release (NuGet).
    pub(crate) fold_case: bool,
    /// Order equal versions by their build metadata, bytewise (Pub).
    pub(crate) order_meta: bool,
}

impl Flavor {
    pub(crate) const SEMVER: Flavor = Flavor {
        fold_case: false,
        order_meta: false,
    };
    pub(crate) const NUGET: Flavor = Flavor {
        fold_case: true,
        order_meta: false,
    };
    pub(crate) const PUB: Flavor = Flavor {
        fold_case: false,
        order_meta: true,
    };
}

/// SemVer 2.0 (npm, crates.io, Go, Hex, …).
pub(crate) type SemverVersion = SemverLike<3>;

/// NuGet: four release numbers (`1.0 == 1.0.0.0`), and the pre-release
/// compared without regard to case (`1.0.0-BETA == 1.0.0-beta`), as
/// osv-scalibr's `semantic/version-nuget.go` does.
pub(crate) type NugetVersion = SemverLike<4>;

/// Pub (Dart): SemVer, and versions equal but for their build metadata
/// ordered by it, bytewise (`1.0.0 < 1.0.0+build`, `1.2.3+1 < 1.2.3+a`), as
/// osv-scalibr's `semantic/version-pub.go` does.
pub(crate) type PubVersion = SemverLike<3>;

impl<const N: usize> SemverLike<N> {
    /// Parses as SemVer with `N` release numbers, read as `flavor` says.
    pub(crate) fn parse_with(s: &str, flavor: Flavor) -> Result<SemverLike<N>, &'static str> {
        let b = s.as_bytes();
        let mut i = usize::from(matches!(b.first(), Some(b'v' | b'V')));
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return Err("does not start with a number");
        }
        // Digit runs separated by dots are components; the first other
        // character starts the pre-release/build text.
        let mut components = Vec::new();
        while i < b.len() {
            let n = run_len(&b[i..], |c| c.is_ascii_digit());
            if n > 0 {
                components.push(Span::digits(s, i, i + n));
                i += n;
            } else if b[i] == b'.' {
                i += 1;
            } else {
                break;
            }
        }
        let mut core = [Span::default(); N];
        for (slot, c) in core.iter_mut().zip(&components) {
            *slot = *c;
        }
        let mut build = s[i..].to_owned();
        for extra in components.iter().skip(N) {
            build.push('.');
            match extra.as_str(s) {
                "" => build.push('0'),
                digits => build.push_str(digits),
            }
        }
        let (pre, meta) = build.split_once('+').unwrap_or((&build, ""));
        let pre = pre.strip_prefix('-').unwrap_or(pre);
        let pre = if flavor.fold_case {
            pre.chars().flat_map(char::to_lowercase).collect()
        } else {
            pre.to_owned()
        };
        let meta = if flavor.order_meta { meta } else { "" };
        Ok(SemverLike {
            core,
            pre: pre.into(),
            meta: meta.into(),
        })
    }

    pub(crate) fn cmp(&self, text: &str, other: &SemverLike<N>, other_text: &str) -> Ordering {
        for (a, b) in self.core.iter().zip(&other.core) {
            let ord = cmp_num(a.bytes(text), b.bytes(other_text));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => cmp_pre(&self.pre, &other.pre),
        }
        .then_with(|| self.meta.as_bytes().cmp(other.meta.as_bytes()))
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        for c in &self.core {
            hash_field(state, c.bytes(text));
        }
        hash_field(state, self.meta.as_bytes());
        if self.pre.is_empty() {
            return;
        }
        for id in self.pre.split('.') {
            match numeric(id) {
                Some(n) => {
                    state.write_u8(0);
                    hash_field(state, n);
                }
                None => {
                    state.write_u8(1);
                    hash_field(state, id.as_bytes());
                }
            }
        }
    }
}

/// The zero-stripped digits of an all-digit identifier.
fn numeric(id: &str) -> Option<&[u8]> {
    let b = id.as_bytes();
    (!b.is_empty() && b.iter().all(u8::is_ascii_digit)).then(|| &b[run_len(b, |c| c == b'0')..])
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    let (mut xs, mut ys) = (a.split('.'), b.split('.'));
    loop {
        let (x, y) = match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => (x, y),
        };
        let ord = match (numeric(x), numeric(y)) {
            (Some(p), Some(q)) => cmp_num(p, q),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => x.as_bytes().cmp(y.as_bytes()),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Semver.compare(a, b).unwrap()
    }

    #[test]
    fn precedence() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1",
            "v2",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn leniency() {
        assert_eq!(cmp("1.2", "1.2.0"), Equal);
        assert_eq!(cmp("v1", "1.0.0+meta"), Equal);
        assert_eq!(cmp("V1.2.3", "1.2.3"), Equal);
        assert_eq!(cmp("1.2.3-01", "1.2.3-1"), Equal);
        assert_eq!(cmp("1.36.0rc1", "1.36.0-rc1"), Equal);
        assert_eq!(cmp("1.2.3.4", "1.2.3"), Less);
        assert_eq!(cmp("1.2.3.4", "1.2.3-.4"), Equal);
    }

    #[test]
    fn rejects_non_numeric_start() {
        for bad in ["abc", "v", "vv1", ".1", "-1", "+1"] {
            assert!(Scheme::Semver.parse(bad).is_err(), "{bad}");
        }
    }
}
