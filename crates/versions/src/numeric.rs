//! Versions that are lists of numbers: Hackage (Haskell's `Data.Version`,
//! `1.2.0.1`, an optional leading `v`) and CRAN (R's `package_version`,
//! `1.2-3`, `.` and `-` alike), as osv-scalibr's
//! `semantic/version-hackage.go` and `semantic/version-cran.go` read them.
//!
//! Lists compare number by number, the shorter padded with zeros; when they
//! are equal that way the longer list is greater (`1.0 < 1.0.0`, `0.3.2 <
//! 0.3.2.0`), so two versions are equal only when their numbers are
//! (`0.01.0 == 0.1-0`).
//!
//! Rejected: any part that is not a run of ASCII digits (`1.0a`, `1..2`,
//! `1.`), where osv-scalibr skips empty Hackage parts and lets Go read a
//! sign (`+1`) as part of a CRAN number.

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field};

#[derive(Clone, Debug)]
pub(crate) struct NumericVersion {
    /// Zero-stripped digits of each number.
    parts: Box<[Span]>,
}

impl NumericVersion {
    /// Hackage: `v?N(.N)*`.
    pub(crate) fn parse_hackage(s: &str) -> Result<NumericVersion, &'static str> {
        let start = usize::from(s.starts_with('v'));
        Self::parse_parts(s, start, |c| c == b'.')
    }

    /// CRAN: `N([.-]N)*`.
    pub(crate) fn parse_cran(s: &str) -> Result<NumericVersion, &'static str> {
        Self::parse_parts(s, 0, |c| c == b'.' || c == b'-')
    }

    fn parse_parts(
        s: &str,
        start: usize,
        is_sep: impl Fn(u8) -> bool,
    ) -> Result<NumericVersion, &'static str> {
        let b = s.as_bytes();
        let mut parts = Vec::new();
        let mut from = start;
        for i in start..=b.len() {
            if i < b.len() && !is_sep(b[i]) {
                if !b[i].is_ascii_digit() {
                    return Err("holds a character that is neither a digit nor a separator");
                }
                continue;
            }
            if i == from {
                return Err("has an empty number");
            }
            parts.push(Span::digits(s, from, i));
            from = i + 1;
        }
        Ok(NumericVersion {
            parts: parts.into_boxed_slice(),
        })
    }

    pub(crate) fn cmp(&self, text: &str, other: &NumericVersion, other_text: &str) -> Ordering {
        let zero = Span::default();
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).unwrap_or(&zero);
            let b = other.parts.get(i).unwrap_or(&zero);
            let ord = cmp_num(a.bytes(text), b.bytes(other_text));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.parts.len().cmp(&other.parts.len())
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        // Equal means the same numbers: hash each.
        for part in &self.parts {
            hash_field(state, part.bytes(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::*;

    #[test]
    fn longer_wins_a_tie() {
        let cran = |a, b| Scheme::Cran.compare(a, b).unwrap();
        assert_eq!(cran("1.8", "1.8.0"), Less);
        assert_eq!(cran("0.01.0", "0.1-0"), Equal);
        assert_eq!(cran("0.9", "0.75"), Less);
        let hackage = |a, b| Scheme::Hackage.compare(a, b).unwrap();
        assert_eq!(hackage("1.0", "1.0.0"), Less);
        assert_eq!(hackage("v1.2", "1.2"), Equal);
        assert_eq!(hackage("2.0", "1.999.9"), Greater);
    }

    #[test]
    fn rejects_what_is_not_a_list_of_numbers() {
        for bad in ["1.0a", "1..2", "1.", ".1", "a", "1.+2"] {
            assert!(Scheme::Cran.parse(bad).is_err(), "cran {bad}");
            assert!(Scheme::Hackage.parse(bad).is_err(), "hackage {bad}");
        }
        assert!(Scheme::Hackage.parse("v").is_err());
        assert!(Scheme::Hackage.parse("1-2").is_err());
        assert!(Scheme::Cran.parse("v1.2").is_err());
    }
}
