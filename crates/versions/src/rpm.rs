//! Red Hat family (rpm) version ordering: `[epoch:]version[-release]`
//! compared part by part with a port of rpm's `rpmvercmp`.
//!
//! Splitting follows rpm's `parseEVR`: the epoch is a run of digits before
//! the first `:` (anything else before a colon is part of the version, so
//! `1.m+e2:1` has no epoch; an empty epoch is 0), and the release is what
//! follows the *last* `-`. A missing release sorts before any release, even
//! an empty one (`1 < 1-`), as in osv-scalibr's vectors.
//!
//! `rpmvercmp` reads each part as a sequence of tokens and compares them
//! left to right: maximal runs of ASCII digits (numeric), maximal runs of
//! ASCII letters (bytewise), `~` and `^`; every other byte, including any
//! non-ASCII character, only separates tokens. Order: `~` < end of string <
//! `^` < letters < digits. That token view is exactly what the C loop
//! computes, and it makes the order transitive and easy to hash.
//!
//! Rejected: an empty version part (`1:`, `-1`, `1:-2`).

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field, run_len};

#[derive(Clone, Debug)]
pub(crate) struct RpmVersion {
    /// Zero-stripped digits; empty for a missing or zero epoch.
    epoch: Span,
    version: Span,
    release: Option<Span>,
}

impl RpmVersion {
    pub(crate) fn parse(s: &str) -> Result<RpmVersion, &'static str> {
        let b = s.as_bytes();
        let digits = run_len(b, |c| c.is_ascii_digit());
        let (epoch, vstart) = if b.get(digits) == Some(&b':') {
            (Span::digits(s, 0, digits), digits + 1)
        } else {
            (Span::default(), 0)
        };
        let rest = &s[vstart..];
        let (version, release) = match rest.rfind('-') {
            Some(h) => (
                Span::new(vstart, vstart + h),
                Some(Span::new(vstart + h + 1, s.len())),
            ),
            None => (Span::new(vstart, s.len()), None),
        };
        if version.is_empty() {
            return Err("version part is empty");
        }
        Ok(RpmVersion {
            epoch,
            version,
            release,
        })
    }

    pub(crate) fn cmp(&self, text: &str, other: &RpmVersion, other_text: &str) -> Ordering {
        cmp_num(self.epoch.bytes(text), other.epoch.bytes(other_text))
            .then_with(|| rpmvercmp(self.version.bytes(text), other.version.bytes(other_text)))
            .then_with(|| match (self.release, other.release) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => rpmvercmp(x.bytes(text), y.bytes(other_text)),
            })
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        hash_field(state, self.epoch.bytes(text));
        hash_tokens(self.version.bytes(text), state);
        match self.release {
            None => state.write_u8(0),
            Some(r) => {
                state.write_u8(1);
                hash_tokens(r.bytes(text), state);
            }
        }
    }
}

/// One `rpmvercmp` token, borrowed from the part it came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Tilde,
    Caret,
    Alpha(&'a [u8]),
    /// Zero-stripped digits.
    Num(&'a [u8]),
}

impl Token<'_> {
    /// Rank of the token kind; `None` (end of string) ranks 1.
    fn rank(tok: Option<Token<'_>>) -> u8 {
        match tok {
            Some(Token::Tilde) => 0,
            None => 1,
            Some(Token::Caret) => 2,
            Some(Token::Alpha(_)) => 3,
            Some(Token::Num(_)) => 4,
        }
    }
}

/// Iterates the tokens of a version part without allocating.
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let skip = run_len(self.rest, |c| {
            !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
        });
        self.rest = &self.rest[skip..];
        let (tok, len) = match *self.rest.first()? {
            b'~' => (Token::Tilde, 1),
            b'^' => (Token::Caret, 1),
            c if c.is_ascii_digit() => {
                let n = run_len(self.rest, |c| c.is_ascii_digit());
                let zeros = run_len(&self.rest[..n], |c| c == b'0');
                (Token::Num(&self.rest[zeros..n]), n)
            }
            _ => {
                let n = run_len(self.rest, |c| c.is_ascii_alphabetic());
                (Token::Alpha(&self.rest[..n]), n)
            }
        };
        self.rest = &self.rest[len..];
        Some(tok)
    }
}

/// `rpmvercmp`: lexicographic comparison of the two token sequences.
fn rpmvercmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut ta, mut tb) = (Tokens { rest: a }, Tokens { rest: b });
    loop {
        let (x, y) = (ta.next(), tb.next());
        let ord = match (x, y) {
            (None, None) => return Ordering::Equal,
            (Some(Token::Alpha(p)), Some(Token::Alpha(q))) => p.cmp(q),
            (Some(Token::Num(p)), Some(Token::Num(q))) => cmp_num(p, q),
            _ => Token::rank(x).cmp(&Token::rank(y)),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn hash_tokens<H: Hasher>(part: &[u8], state: &mut H) {
    for tok in (Tokens { rest: part }) {
        match tok {
            Token::Tilde => state.write_u8(1),
            Token::Caret => state.write_u8(2),
            Token::Alpha(s) => {
                state.write_u8(3);
                hash_field(state, s);
            }
            Token::Num(s) => {
                state.write_u8(4);
                hash_field(state, s);
            }
        }
    }
    state.write_u8(0xFE);
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Rpm.compare(a, b).unwrap()
    }

    #[test]
    fn rpmvercmp_rules() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Less);
        assert_eq!(cmp("1.0^git1", "1.0"), Greater);
        assert_eq!(cmp("1.0^git1", "1.0.1"), Less);
        assert_eq!(cmp("1.0a", "1.0.1"), Less);
        assert_eq!(cmp("1.010", "1.9"), Greater);
        assert_eq!(cmp("1.0010", "1.10"), Equal);
        assert_eq!(cmp("1..0", "1_0"), Equal);
        assert_eq!(cmp("1.1.α", "1.1"), Equal);
    }

    #[test]
    fn epoch_version_release() {
        assert_eq!(cmp("1:1.0", "2.0"), Greater);
        assert_eq!(cmp(":1.0", "0:1.0"), Equal);
        assert_eq!(cmp("1.0", "1.0-0"), Less);
        assert_eq!(cmp("1.0-", "1.0"), Greater);
        assert_eq!(cmp("1.0-1-2", "1.0-2"), Greater); // release after the last '-'
        assert_eq!(cmp("a1:1", "b1:1"), Less); // not an epoch
    }

    #[test]
    fn rejects_empty_version() {
        for bad in ["1:", "-1", "1:-2", "-"] {
            assert!(Scheme::Rpm.parse(bad).is_err(), "{bad}");
        }
    }
}
