//! RubyGems version ordering, as OSV tooling reads it (osv.dev's
//! `osv/ecosystems/rubygems.py`, osv-scalibr's
//! `semantic/version-rubygems.go`, after `Gem::Version#<=>`).
//!
//! The text is cut into segments at `.` and at every digit/non-digit
//! transition (`1.0a1` is `1.0.a.1`). Segments up to the first non-number
//! are the release, the rest the pre-release; trailing `0` segments are
//! dropped from each part (`1.0.a.0 == 1.a`). Segments compare left to
//! right, the shorter list padded with `0`: numbers by value, other
//! segments bytewise, and any number above any other segment, so a
//! pre-release sorts before its release (`1.a < 1`).
//!
//! Every string is accepted, as osv-scalibr does (a `-` is kept as text,
//! where RubyGems itself would read it as `.pre.`).

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field};

#[derive(Clone, Copy, Debug)]
enum Segment {
    /// Zero-stripped digits.
    Num(Span),
    Text(Span),
}

#[derive(Clone, Debug)]
pub(crate) struct RubyGemsVersion {
    segments: Box<[Segment]>,
}

impl RubyGemsVersion {
    pub(crate) fn parse(s: &str) -> RubyGemsVersion {
        let mut raw = Vec::new();
        let b = s.as_bytes();
        let mut start = 0;
        for i in 0..=b.len() {
            let cut = i == b.len()
                || b[i] == b'.'
                || (i > start && b[i - 1].is_ascii_digit() != b[i].is_ascii_digit());
            if !cut {
                continue;
            }
            raw.push(Span::new(start, i));
            start = if i < b.len() && b[i] == b'.' {
                i + 1
            } else {
                i
            };
        }
        let is_num = |sp: &Span| {
            let d = sp.bytes(s);
            !d.is_empty() && d.iter().all(u8::is_ascii_digit)
        };
        let split = raw.iter().position(|sp| !is_num(sp)).unwrap_or(raw.len());
        let (release, pre) = raw.split_at(split);
        let mut segments = Vec::with_capacity(raw.len());
        for part in [release, pre] {
            // Drop trailing `0` segments (the text "0", as RubyGems does).
            let keep = part.len()
                - part
                    .iter()
                    .rev()
                    .take_while(|sp| sp.as_str(s) == "0")
                    .count();
            segments.extend(part[..keep].iter().map(|sp| {
                if is_num(sp) {
                    Segment::Num(Span::digits(s, sp.start, sp.end))
                } else {
                    Segment::Text(*sp)
                }
            }));
        }
        RubyGemsVersion {
            segments: segments.into_boxed_slice(),
        }
    }

    pub(crate) fn cmp(&self, text: &str, other: &RubyGemsVersion, other_text: &str) -> Ordering {
        let zero = Segment::Num(Span::default());
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            let a = self.segments.get(i).unwrap_or(&zero);
            let b = other.segments.get(i).unwrap_or(&zero);
            let ord = match (a, b) {
                (Segment::Num(x), Segment::Num(y)) => cmp_num(x.bytes(text), y.bytes(other_text)),
                (Segment::Text(x), Segment::Text(y)) => x.bytes(text).cmp(y.bytes(other_text)),
                (Segment::Num(_), Segment::Text(_)) => Ordering::Greater,
                (Segment::Text(_), Segment::Num(_)) => Ordering::Less,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        // Trailing zeros equal the padding: leave them out.
        let end = self.segments.len()
            - self
                .segments
                .iter()
                .rev()
                .take_while(|s| matches!(s, Segment::Num(n) if n.is_empty()))
                .count();
        for seg in &self.segments[..end] {
            match seg {
                Segment::Num(n) => {
                    state.write_u8(0);
                    hash_field(state, n.bytes(text));
                }
                Segment::Text(t) => {
                    state.write_u8(1);
                    hash_field(state, t.bytes(text));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::RubyGems.compare(a, b).unwrap()
    }

    #[test]
    fn prereleases_and_padding() {
        let ordered = ["0.9", "1.0.a", "1.0.a.2", "1.0.b1", "1.0", "1.0.1", "1.1"];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(cmp("1.0.a2", "1.0.a.2"), Equal);
        assert_eq!(cmp("1.0.0", "1"), Equal);
        assert_eq!(cmp("1.00", "1"), Equal);
        assert_eq!(cmp("1.0.a.0", "1.a"), Equal);
    }
}
