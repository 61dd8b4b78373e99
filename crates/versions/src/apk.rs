//! Alpine (apk-tools) version ordering, following osv-scalibr's
//! `semantic/version-alpine.go`, which agrees with `apk version -t` on the
//! vectors in `testdata/versions/alpine-versions*.txt`.
//!
//! Format: `number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}`.
//! Parts compare in that order: numbers (the first numerically; later ones
//! as strings when either has a leading zero, so `1.05 < 1.1`), the optional
//! lower-case letter (none first), suffixes (`_alpha _beta _pre _rc` < none
//! < `_cvs _svn _git _hg _p`, then their numbers), the `-rN` revision. The
//! commit hash is ignored. Text left over after all that makes a version
//! sort *before* the same version without it.
//!
//! Nothing non-empty is rejected: like apk, odd strings fall back instead of
//! failing. Two deliberate deviations from the Go code keep the order a
//! total order (the Go one is not transitive on odd strings):
//! - The Go code string-compares two "invalid" versions (leftovers that do
//!   not start with `-`) outright. Here they go through the same fields as
//!   everyone else and their text only breaks ties. A leftover that starts
//!   with `-` but not `-r` counts as junk after a `-r0`, as the Go code
//!   effectively does (`1-ruff2 = 1--ruff1`).
//! - A missing number component acts as a literal `0` (Go mixes numeric and
//!   string rules there, making `1 == 1.0`, `1 == 1.00` but `1.0 < 1.00`),
//!   and no suffix weighs exactly between the pre- and post-release ones
//!   (Go gives it the weight of `_cvs`, making `1.2 == 1.2_cvs`).

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field, run_len};

#[derive(Clone, Debug)]
pub(crate) struct ApkVersion {
    /// Number components. The first is zero-stripped (compared numerically);
    /// the others are kept literally because their leading zeros matter.
    components: Box<[Span]>,
    letter: Option<u8>,
    suffixes: Box<[Suffix]>,
    /// `-rN` number, zero-stripped; empty when absent (`-r` alone is `-r0`).
    revision: Span,
    /// Whether anything was left over after the revision (or instead of it).
    has_rest: bool,
    /// Tie-breaker for versions apk cannot read: their whole text. Empty
    /// for every other version.
    tail: Span,
}

#[derive(Clone, Copy, Debug)]
struct Suffix {
    weight: u8,
    number: Span,
}

/// Suffix names in match order (`pre` before `p`) with their weights.
const SUFFIXES: [(&str, u8); 9] = [
    ("alpha", 0),
    ("beta", 1),
    ("pre", 2),
    ("rc", 3),
    ("cvs", 5),
    ("svn", 6),
    ("git", 7),
    ("hg", 8),
    ("p", 9),
];

/// Weight of "no suffix here": after the pre-release suffixes, before the
/// post-release ones.
const NO_SUFFIX: u8 = 4;

impl ApkVersion {
    pub(crate) fn parse(s: &str) -> ApkVersion {
        let b = s.as_bytes();
        let mut i = 0;

        // Numbers: `(\d+\.?)*`. A dot is consumed even if no digit follows;
        // that is how apk reads `1.2.a` as `1.2` + letter `a`.
        let mut components = Vec::new();
        loop {
            let n = run_len(&b[i..], |c| c.is_ascii_digit());
            if n == 0 {
                break;
            }
            components.push(if components.is_empty() {
                Span::digits(s, i, i + n)
            } else {
                Span::new(i, i + n)
            });
            i += n;
            if b.get(i) == Some(&b'.') {
                i += 1;
            } else {
                break;
            }
        }

        let letter = match b.get(i) {
            Some(&c) if c.is_ascii_lowercase() => {
                i += 1;
                Some(c)
            }
            _ => None,
        };

        let mut suffixes = Vec::new();
        while b.get(i) == Some(&b'_') {
            let Some(&(name, weight)) = SUFFIXES
                .iter()
                .find(|(name, _)| b[i + 1..].starts_with(name.as_bytes()))
            else {
                break;
            };
            let start = i + 1 + name.len();
            let n = run_len(&b[start..], |c| c.is_ascii_digit());
            suffixes.push(Suffix {
                weight,
                number: Span::digits(s, start, start + n),
            });
            i = start + n;
        }

        // `~hash`: parsed so it is skipped, never compared.
        if b.get(i) == Some(&b'~') {
            let n = run_len(&b[i + 1..], |c| {
                c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
            });
            if n > 0 {
                i += 1 + n;
            }
        }

        let mut revision = Span::new(i, i);
        let mut tail = Span::new(i, i);
        if b[i..].starts_with(b"-r") {
            let n = run_len(&b[i + 2..], |c| c.is_ascii_digit());
            revision = Span::digits(s, i + 2, i + 2 + n);
            i += 2 + n;
        } else if i < b.len() && b[i] != b'-' {
            // apk cannot read this. Break ties with the whole text, which is
            // how the Go code orders two such versions (`0.8.21.r2 <
            // 0.8.21r2`). A `-` not followed by `r` is instead read as junk
            // after the revision, like `1-ruff` (`1-ruff2 = 1--ruff1`).
            tail = Span::new(0, b.len());
        }

        ApkVersion {
            components: components.into(),
            letter,
            suffixes: suffixes.into(),
            revision,
            has_rest: i < b.len(),
            tail,
        }
    }

    pub(crate) fn cmp(&self, text: &str, other: &ApkVersion, other_text: &str) -> Ordering {
        self.cmp_components(text, other, other_text)
            .then_with(|| match (self.letter, other.letter) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(&y),
            })
            .then_with(|| self.cmp_suffixes(text, other, other_text))
            .then_with(|| cmp_num(self.revision.bytes(text), other.revision.bytes(other_text)))
            // Leftover text sorts before no leftover text.
            .then_with(|| other.has_rest.cmp(&self.has_rest))
            .then_with(|| self.tail.bytes(text).cmp(other.tail.bytes(other_text)))
    }

    fn cmp_components<'a>(
        &self,
        text: &'a str,
        other: &ApkVersion,
        other_text: &'a str,
    ) -> Ordering {
        let (a, b) = (&self.components, &other.components);
        // The first component is stored zero-stripped and compared as a
        // number; a missing one is zero.
        let first = |c: &[Span], t: &'a str| c.first().map_or(&b""[..], |s| s.bytes(t));
        for idx in 0..a.len().max(b.len()) {
            let ord = if idx == 0 {
                cmp_num(first(a, text), first(b, other_text))
            } else {
                let x = a.get(idx).map_or(&b"0"[..], |s| s.bytes(text));
                let y = b.get(idx).map_or(&b"0"[..], |s| s.bytes(other_text));
                if x.first() == Some(&b'0') || y.first() == Some(&b'0') {
                    x.cmp(y)
                } else {
                    cmp_num(x, y)
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn cmp_suffixes(&self, text: &str, other: &ApkVersion, other_text: &str) -> Ordering {
        let none = Suffix {
            weight: NO_SUFFIX,
            number: Span::default(),
        };
        let (a, b) = (&self.suffixes, &other.suffixes);
        for idx in 0..a.len().max(b.len()) {
            let (x, tx) = a.get(idx).map_or((none, ""), |s| (*s, text));
            let (y, ty) = b.get(idx).map_or((none, ""), |s| (*s, other_text));
            let ord = x
                .weight
                .cmp(&y.weight)
                .then_with(|| cmp_num(x.number.bytes(tx), y.number.bytes(ty)));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        // Components equal to a missing one (a literal `0` after the first,
        // zero for the first) are trimmed from the end.
        let mut n = self.components.len();
        while n > 1 && self.components[n - 1].bytes(text) == b"0" {
            n -= 1;
        }
        if n == 1 && self.components[0].is_empty() {
            n = 0;
        }
        state.write_usize(n);
        for c in &self.components[..n] {
            hash_field(state, c.bytes(text));
        }
        state.write_u8(self.letter.unwrap_or(0));
        // A parsed suffix never has NO_SUFFIX's weight, so the list is
        // already minimal.
        state.write_usize(self.suffixes.len());
        for s in &self.suffixes {
            state.write_u8(s.weight);
            hash_field(state, s.number.bytes(text));
        }
        hash_field(state, self.revision.bytes(text));
        state.write_u8(u8::from(self.has_rest));
        hash_field(state, self.tail.bytes(text));
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Apk.compare(a, b).unwrap()
    }

    #[test]
    fn basic_order() {
        assert_eq!(cmp("1.2.3-r0", "1.2.3-r1"), Less);
        assert_eq!(cmp("1.2.10", "1.2.9"), Greater);
        assert_eq!(cmp("1.05", "1.1"), Less);
        assert_eq!(cmp("1.0", "1"), Equal);
        assert_eq!(cmp("1.00", "1"), Greater);
        assert_eq!(cmp("01.2", "1.2"), Equal);
        assert_eq!(cmp("1.2a", "1.2"), Greater);
        assert_eq!(cmp("1.2a", "1.2b"), Less);
    }

    #[test]
    fn suffixes() {
        let ordered = [
            "1.2_alpha",
            "1.2_alpha1",
            "1.2_beta",
            "1.2_pre",
            "1.2_rc2",
            "1.2",
            "1.2_cvs",
            "1.2_svn",
            "1.2_git",
            "1.2_hg",
            "1.2_p",
            "1.2_p1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(cmp("1.0_alpha_pre2", "1.0_alpha"), Less);
        assert_eq!(cmp("1.0_p1~abc123-r2", "1.0_p1-r2"), Equal);
    }

    #[test]
    fn odd_strings_fall_back() {
        assert_eq!(cmp("1.2", "1.2_blah"), Greater);
        assert_eq!(cmp("1-ruff2", "1--ruff1"), Equal);
        assert_eq!(cmp("0..8", "0...8"), Greater);
        assert_eq!(cmp("a", "b"), Less);
        assert_eq!(cmp("_", "-"), Greater);
    }
}
