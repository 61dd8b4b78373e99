//! RubyGems version ordering: `Gem::Version#<=>`, as osv.dev reads it
//! (`osv/ecosystems/rubygems.py`, through its copy of univers' `gem.py`)
//! and osv-scalibr's `semantic/version-rubygems.go` too.
//!
//! A version is what `Gem::Version` accepts, `N(.X)*(-Y(.Y)*)?` with `N`
//! a number, `X` ASCII letters and digits, `Y` the same and `-`; a `-`
//! reads as `.pre.` (`1.0.0-rc1 == 1.0.0.pre.rc1`). The text is
//! cut into segments at dots and at every digit/letter transition (`1.0a1`
//! is `1.0.a.1`). Segments up to the first non-number are the release, the
//! rest the pre-release; trailing zeros are dropped from each part
//! (`1.0.a.0 == 1.a`). Segments compare left to right, the shorter list
//! padded with `0`: numbers by value, letters bytewise, and any number
//! above any letters, so a pre-release sorts before its release (`1.a <
//! 1`).
//!
//! osv-scalibr accepts any string and keeps a `-` as text (`1.0-beta`
//! would be `1.0.-beta`); no vector of its files has either, and here the
//! RubyGems rule, which osv.dev follows, wins: what `Gem::Version` refuses
//! (`1.0_1`, `1.13.10-x86_64-linux`, `v1.0`, `.1`, `1..2`) is refused.
//! Unlike `Gem::Version`, a letter may follow the first number without a
//! dot (`1beta`, which osv-scalibr's vectors hold and read as `1.beta`).

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field};

#[derive(Clone, Copy, Debug)]
enum Segment {
    /// Zero-stripped digits.
    Num(Span),
    Text(Span),
    /// The `pre` that a `-` stands for.
    Pre,
}

impl Segment {
    /// The text of a non-number segment.
    fn text<'a>(&self, text: &'a str) -> &'a [u8] {
        match self {
            Segment::Text(span) => span.bytes(text),
            Segment::Pre => b"pre",
            Segment::Num(_) => b"",
        }
    }
}

/// `Gem::Version`'s pattern, `[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?`,
/// except that letters may follow the first number without a dot
/// (osv-scalibr's vectors hold `1beta`, which RubyGems' segments read as
/// `1.beta`).
fn check(s: &str) -> Result<(), &'static str> {
    const CHARS: &str =
        "holds an empty part or a character other than ASCII letters, digits, '.' and '-'";
    let (release, pre) = match s.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (s, None),
    };
    if !release.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("does not start with a number");
    }
    let part_ok = |part: &str, dash: bool| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || (dash && b == b'-'))
    };
    if !release.split('.').all(|part| part_ok(part, false)) {
        return Err(CHARS);
    }
    if let Some(pre) = pre
        && !pre.split('.').all(|part| part_ok(part, true))
    {
        return Err(CHARS);
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct RubyGemsVersion {
    segments: Box<[Segment]>,
}

impl RubyGemsVersion {
    pub(crate) fn parse(s: &str) -> Result<RubyGemsVersion, &'static str> {
        check(s)?;
        // Segments: runs of digits and runs of letters; `-` is `.pre.`.
        let b = s.as_bytes();
        let mut raw = Vec::new();
        let mut start = 0;
        for i in 0..=b.len() {
            let cut = i == b.len()
                || matches!(b[i], b'.' | b'-')
                || (i > start && b[i - 1].is_ascii_digit() != b[i].is_ascii_digit());
            if !cut {
                continue;
            }
            if i > start {
                let span = Span::new(start, i);
                raw.push(if b[start].is_ascii_digit() {
                    Segment::Num(Span::digits(s, start, i))
                } else {
                    Segment::Text(span)
                });
            }
            if i < b.len() && b[i] == b'-' {
                raw.push(Segment::Pre);
            }
            start = if i < b.len() && matches!(b[i], b'.' | b'-') {
                i + 1
            } else {
                i
            };
        }
        let split = raw
            .iter()
            .position(|seg| !matches!(seg, Segment::Num(_)))
            .unwrap_or(raw.len());
        let (release, pre) = raw.split_at(split);
        let mut segments = Vec::with_capacity(raw.len());
        for part in [release, pre] {
            // Drop trailing zeros, as RubyGems does.
            let keep = part.len()
                - part
                    .iter()
                    .rev()
                    .take_while(|seg| matches!(seg, Segment::Num(n) if n.is_empty()))
                    .count();
            segments.extend_from_slice(&part[..keep]);
        }
        Ok(RubyGemsVersion {
            segments: segments.into_boxed_slice(),
        })
    }

    pub(crate) fn cmp(&self, text: &str, other: &RubyGemsVersion, other_text: &str) -> Ordering {
        let zero = Segment::Num(Span::default());
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            let a = self.segments.get(i).unwrap_or(&zero);
            let b = other.segments.get(i).unwrap_or(&zero);
            let ord = match (a, b) {
                (Segment::Num(x), Segment::Num(y)) => cmp_num(x.bytes(text), y.bytes(other_text)),
                (Segment::Num(_), _) => Ordering::Greater,
                (_, Segment::Num(_)) => Ordering::Less,
                (x, y) => x.text(text).cmp(y.text(other_text)),
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
                Segment::Text(_) | Segment::Pre => {
                    state.write_u8(1);
                    hash_field(state, seg.text(text));
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
        // A `-` is `.pre.`, as `Gem::Version` reads it.
        assert_eq!(cmp("1.0.0-rc1", "1.0.0.pre.rc1"), Equal);
        assert_eq!(cmp("1.0.0-beta", "1.0.0.alpha"), Greater);
        assert_eq!(cmp("1.0.0-beta", "1.0.0"), Less);
    }

    #[test]
    fn refuses_what_gem_version_refuses() {
        for bad in [
            "v1.0",
            ".1",
            "1..2",
            "1.",
            "1.0_1",
            "1.13.10-x86_64-linux",
            "1+2",
            "a1",
            "1-",
            "1.é",
            "1.-1",
            "1-.1",
        ] {
            assert!(Scheme::RubyGems.parse(bad).is_err(), "{bad}");
        }
        for good in [
            "1",
            "1beta",
            "1.0.a1",
            "1.0.0-rc.1",
            "2.0.0-x86-linux",
            "1--2",
        ] {
            assert!(Scheme::RubyGems.parse(good).is_ok(), "{good}");
        }
    }
}
