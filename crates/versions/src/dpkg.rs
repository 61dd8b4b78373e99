//! Debian/Ubuntu version ordering, a port of dpkg's `parseversion` and
//! `verrevcmp` (`lib/dpkg/parsehelp.c`, `lib/dpkg/version.c`).
//!
//! `[epoch:]upstream[-revision]`: the epoch is everything before the first
//! `:`, the revision everything after the last `-`. Upstream and revision
//! compare as alternating non-digit and digit runs: non-digits byte by byte
//! with `~` lowest (below even the end of the string), then letters, then
//! everything else; digit runs numerically. A missing revision equals `0`.
//!
//! Rejected, with dpkg's own words, exactly where `dpkg --compare-versions`
//! stops with an error (rather than a warning): empty or non-numeric epoch,
//! negative epoch, epoch above `i32::MAX`, nothing after the colon, empty
//! revision (`1.0-`), empty upstream version (`1:-1`). dpkg only warns about
//! a non-digit start or odd characters, so those parse here too.

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, hash_field, run_len};

#[derive(Clone, Debug)]
pub(crate) struct DpkgVersion {
    epoch: u32,
    upstream: Span,
    revision: Span,
}

impl DpkgVersion {
    pub(crate) fn parse(s: &str) -> Result<DpkgVersion, &'static str> {
        let (epoch, rest_start) = match s.find(':') {
            Some(colon) => (parse_epoch(&s[..colon])?, colon + 1),
            None => (0, 0),
        };
        let rest = &s[rest_start..];
        if rest.is_empty() {
            return Err("nothing after colon in version number");
        }
        let (upstream, revision) = match rest.rfind('-') {
            Some(hyphen) => {
                if hyphen + 1 == rest.len() {
                    return Err("revision number is empty");
                }
                (
                    Span::new(rest_start, rest_start + hyphen),
                    Span::new(rest_start + hyphen + 1, s.len()),
                )
            }
            None => (Span::new(rest_start, s.len()), Span::new(s.len(), s.len())),
        };
        if upstream.is_empty() {
            return Err("version number is empty");
        }
        Ok(DpkgVersion {
            epoch,
            upstream,
            revision,
        })
    }

    pub(crate) fn cmp(&self, text: &str, other: &DpkgVersion, other_text: &str) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.bytes(text), other.upstream.bytes(other_text)))
            .then_with(|| verrevcmp(self.revision.bytes(text), other.revision.bytes(other_text)))
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        state.write_u32(self.epoch);
        hash_verrev(self.upstream.bytes(text), state);
        hash_verrev(self.revision.bytes(text), state);
    }
}

/// dpkg reads the epoch with `strtol`, so an optional sign is allowed
/// (`+1:`, `-0:`) and only a negative value is an error.
fn parse_epoch(e: &str) -> Result<u32, &'static str> {
    let b = e.as_bytes();
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let n = run_len(digits, |c| c.is_ascii_digit());
    if n == 0 {
        return Err("epoch in version is empty");
    }
    if n != digits.len() {
        return Err("epoch in version is not number");
    }
    let significant = &digits[run_len(digits, |c| c == b'0')..];
    if significant.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err("epoch in version is negative");
    }
    // More than 10 significant digits cannot fit; checking the length first
    // keeps the arithmetic from overflowing on absurd inputs.
    let value = if significant.len() > 10 {
        u64::MAX
    } else {
        significant
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'))
    };
    if value > i32::MAX as u64 {
        return Err("epoch in version is too big");
    }
    Ok(value as u32)
}

/// dpkg's character weight in a non-digit run. The end of the string and
/// digits weigh 0, `~` weighs -1 so it sorts before the end, letters keep
/// their code, everything else is pushed above the letters by 256.
///
/// dpkg does this on a C `char`, which is signed on x86-64 (where Debian's
/// archive tools run), so bytes >= 0x80 weigh 128..=255: after the letters
/// but before ASCII punctuation. We copy that to agree with the real binary.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c as i8) + 256,
    }
}

/// `verrevcmp` from dpkg, on byte slices and without allocating.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let is_digit = |s: &[u8], i: usize| s.get(i).is_some_and(|c| c.is_ascii_digit());
    let is_nondigit = |s: &[u8], i: usize| s.get(i).is_some_and(|c| !c.is_ascii_digit());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while is_nondigit(a, i) || is_nondigit(b, j) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            // Equal weights here mean the same non-digit byte on both sides
            // (weights are injective on non-digits), so both advance.
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(a, i) && is_digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit(a, i) {
            return Ordering::Greater;
        }
        if is_digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Hashes the form `verrevcmp` actually distinguishes: the sequence of
/// (non-digit run, numeric value) pairs. A string that is only zeros (or
/// empty) equals the empty string, so it hashes as nothing; trailing
/// `.0`-style pairs are *not* equal to nothing in dpkg (`1.0 > 1`), but a
/// missing digit run equals `0` (`1. == 1.0`), which the zero-stripping
/// already gives.
fn hash_verrev<H: Hasher>(s: &[u8], state: &mut H) {
    if s.iter().all(|&c| c == b'0') {
        state.write_u8(0xFE);
        return;
    }
    let mut i = 0;
    while i < s.len() {
        let nd = run_len(&s[i..], |c| !c.is_ascii_digit());
        hash_field(state, &s[i..i + nd]);
        i += nd;
        let d = run_len(&s[i..], |c| c.is_ascii_digit());
        let digits = &s[i..i + d];
        hash_field(state, &digits[run_len(digits, |c| c == b'0')..]);
        i += d;
    }
    state.write_u8(0xFE);
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Dpkg.compare(a, b).unwrap()
    }

    #[test]
    fn tilde_letters_and_digits() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Less);
        assert_eq!(cmp("1.0~~", "1.0~"), Less);
        assert_eq!(cmp("1.0a", "1.0+"), Less);
        assert_eq!(cmp("1.0", "1.0a"), Less);
        assert_eq!(cmp("1.0.", "1.0.0"), Equal);
        assert_eq!(cmp("1.10", "1.9"), Greater);
        assert_eq!(cmp("1.0", "1"), Greater);
        assert_eq!(cmp("0a", "a"), Less);
    }

    #[test]
    fn epoch_and_revision() {
        assert_eq!(cmp("1:0.1", "9.9"), Greater);
        assert_eq!(cmp("0:1.0-0", "1.0"), Equal);
        assert_eq!(cmp("00:1.0", "1.0"), Equal);
        assert_eq!(cmp("+1:1.0", "1:1.0"), Equal);
        assert_eq!(cmp("-0:1.0", "1.0"), Equal);
        assert_eq!(cmp("1.0-1-2", "1.0-1-1"), Greater);
        assert_eq!(cmp("1:2:3", "1:2:2"), Greater);
        assert_eq!(cmp("2147483647:1", "1:1"), Greater);
    }

    #[test]
    fn non_ascii_sorts_between_letters_and_punctuation() {
        // Matches dpkg on x86-64 (signed char).
        assert_eq!(cmp("1é", "1z"), Greater);
        assert_eq!(cmp("1é", "1."), Less);
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        for (bad, why) in [
            (":1", "epoch in version is empty"),
            ("a:1", "epoch in version is empty"),
            ("+:1", "epoch in version is empty"),
            ("1a:1", "epoch in version is not number"),
            ("0x1:1", "epoch in version is not number"),
            ("-1:1", "epoch in version is negative"),
            ("2147483648:1", "epoch in version is too big"),
            ("99999999999999999999999:1", "epoch in version is too big"),
            ("1:", "nothing after colon in version number"),
            ("1.0-", "revision number is empty"),
            ("1.0--", "revision number is empty"),
            ("1:-1", "version number is empty"),
            ("-1", "version number is empty"),
        ] {
            let err = Scheme::Dpkg.parse(bad).unwrap_err();
            assert_eq!(err.reason, why, "{bad}");
        }
        // Only warnings in dpkg.
        for ok in ["abc", "1é", "1_2", "~", "1:a:b-c"] {
            Scheme::Dpkg.parse(ok).unwrap();
        }
    }
}
