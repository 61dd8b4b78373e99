//! Packagist (Composer) version ordering, as OSV tooling reads it (osv.dev's
//! `osv/ecosystems/packagist.py`, osv-scalibr's
//! `semantic/version-packagist.go`), which is PHP's `version_compare` after
//! Composer drops a leading `v`.
//!
//! One leading `v`, then one leading `V`, is dropped; `-`, `_` and `+` are
//! dots; a dot is put at every digit/non-digit transition; the text is cut
//! at dots. Parts compare left to right: numbers by value, other parts by a
//! weight read from how they start, case-sensitively: `dev` (and anything
//! unknown, the empty part and `Alpha` included) < `a` (`alpha`) < `b`
//! (`beta`) < `RC`/`rc` < `#` < numbers < `p` (`pl`, `patch`). When one list runs out, the other's next part
//! decides against `#`: a number makes it greater (`1.0 < 1.0.0`), a `p…`
//! part greater, `dev`…`RC` smaller (`1.0-beta < 1.0`).
//!
//! Two places where osv-scalibr is not an order, made one here: a number
//! and a part starting with `#` at the same place compare equal there,
//! although a number beats the end of the list where `#` ties with it; here
//! a number is above `#` (so `packagist-versions.txt` line 96, `1.2.3.# =
//! 1.2.3.1`, is not held; `tests/vectors.rs` shows why none can be). And a
//! number too long for a 64-bit integer counts as a number when a list runs
//! out (osv-scalibr then treats it as `#`).
//!
//! Every string is accepted.

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field};

/// Weight of the end of a list, and of parts starting with `#`.
const END: u8 = 4;
/// Numbers sit between `#` and `p`.
const NUMBER: u8 = 5;
/// Parts starting with `p`.
const PATCH: u8 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    weight: u8,
    /// Zero-stripped digits of a number; empty otherwise.
    num: Span,
}

impl Part {
    const END: Part = Part {
        weight: END,
        num: Span { start: 0, end: 0 },
    };
}

#[derive(Clone, Debug)]
pub(crate) struct PackagistVersion {
    parts: Box<[Part]>,
}

fn weight(part: &str) -> u8 {
    if part.starts_with("RC") {
        return 3;
    }
    match ["dev", "a", "b", "rc", "#", "p"]
        .iter()
        .position(|p| part.starts_with(p))
    {
        Some(5) => PATCH,
        Some(i) => i as u8,
        None => 0,
    }
}

impl PackagistVersion {
    pub(crate) fn parse(s: &str) -> PackagistVersion {
        let mut start = usize::from(s.starts_with('v'));
        if s[start..].starts_with('V') {
            start += 1;
        }
        let b = s.as_bytes();
        let is_sep = |c: u8| matches!(c, b'.' | b'-' | b'_' | b'+');
        let mut parts = Vec::new();
        let mut from = start;
        for i in start..=b.len() {
            let cut = i == b.len()
                || is_sep(b[i])
                || (i > from && b[i - 1].is_ascii_digit() != b[i].is_ascii_digit());
            if !cut {
                continue;
            }
            let text = &s[from..i];
            let part = if !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()) {
                Part {
                    weight: NUMBER,
                    num: Span::digits(s, from, i),
                }
            } else {
                Part {
                    weight: weight(text),
                    num: Span::default(),
                }
            };
            parts.push(part);
            from = if i < b.len() && is_sep(b[i]) {
                i + 1
            } else {
                i
            };
        }
        PackagistVersion {
            parts: parts.into_boxed_slice(),
        }
    }

    pub(crate) fn cmp(&self, text: &str, other: &PackagistVersion, other_text: &str) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).unwrap_or(&Part::END);
            let b = other.parts.get(i).unwrap_or(&Part::END);
            let ord = a
                .weight
                .cmp(&b.weight)
                .then_with(|| cmp_num(a.num.bytes(text), b.num.bytes(other_text)));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        let end = self.parts.len()
            - self
                .parts
                .iter()
                .rev()
                .take_while(|p| p.weight == END)
                .count();
        for part in &self.parts[..end] {
            state.write_u8(part.weight);
            hash_field(state, part.num.bytes(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Packagist.compare(a, b).unwrap()
    }

    #[test]
    fn version_compare_order() {
        let ordered = [
            "1.0-dev",
            "1.0-alpha1",
            "1.0-beta2",
            "1.0-RC1",
            "1.0",
            "1.0.0",
            "1.0.1",
            "1.0-p1",
            "v1.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(cmp("1.0-beta", "1.0.b"), Equal);
        assert_eq!(cmp("v1.0", "V1.0"), Equal);
        assert_eq!(cmp("1.0#", "1.0"), Equal);
        assert_eq!(cmp("1.0.#", "1.0.0"), Less);
    }
}
