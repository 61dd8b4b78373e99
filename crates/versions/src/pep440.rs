//! PyPI version ordering: PEP 440 as implemented by `packaging.version`,
//! plus the pre-PEP 440 "legacy" versions that old `packaging` accepted.
//!
//! Valid versions match packaging's `VERSION_PATTERN` (case-insensitive,
//! optional leading `v`): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`
//! with all the spellings PEP 440 normalises (`alpha`, `c`, `pre`,
//! `preview`, `rev`, `r`, `-N` as a post release, `-`/`_`/`.` separators,
//! implicit `0` numbers). They order by epoch, release (trailing zeros
//! ignored, so `1.0 == 1.0.0`), pre-release (a `.devN` without pre or post
//! sorts before every pre-release), post-release, dev-release, then local
//! segments (numeric ones above alphanumeric ones, more segments higher).
//!
//! Anything else is a legacy version, keyed like `packaging.version`'s
//! `LegacyVersion` (`_legacy_cmpkey`) and ordered before every valid
//! version. So nothing non-empty is rejected here.

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field, run_len};

#[derive(Clone, Debug)]
pub(crate) enum Pep440Version {
    /// Pre-PEP 440 version: its `_legacy_cmpkey` parts, each followed by a
    /// NUL so that comparing the bytes compares the tuple of parts.
    Legacy(Box<str>),
    Valid(Pep440),
}

#[derive(Clone, Debug)]
pub(crate) struct Pep440 {
    /// Zero-stripped digits (so zero is empty); likewise every number below.
    epoch: Span,
    /// Release numbers with trailing zeros dropped.
    release: Box<[Span]>,
    pre: Option<(PreKind, Span)>,
    post: Option<Span>,
    dev: Option<Span>,
    /// Local segments: numeric ones zero-stripped, others as written
    /// (compared case-insensitively).
    local: Option<Box<[Span]>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Rc,
}

/// Pre-release spellings, longest first so that a prefix (`a`) never hides
/// a longer spelling (`alpha`). Leftmost-first regex alternation ends up
/// with the same choice because the grammar cannot continue after a
/// truncated label.
const PRE_LABELS: [(&str, PreKind); 8] = [
    ("preview", PreKind::Rc),
    ("alpha", PreKind::Alpha),
    ("beta", PreKind::Beta),
    ("pre", PreKind::Rc),
    ("rc", PreKind::Rc),
    ("a", PreKind::Alpha),
    ("b", PreKind::Beta),
    ("c", PreKind::Rc),
];

const POST_LABELS: [&str; 3] = ["post", "rev", "r"];

impl Pep440Version {
    pub(crate) fn parse(s: &str) -> Pep440Version {
        match parse_valid(s) {
            Some(v) => Pep440Version::Valid(v),
            None => Pep440Version::Legacy(legacy_key(s).into()),
        }
    }

    pub(crate) fn cmp(&self, text: &str, other: &Pep440Version, other_text: &str) -> Ordering {
        match (self, other) {
            (Pep440Version::Legacy(a), Pep440Version::Legacy(b)) => a.cmp(b),
            (Pep440Version::Legacy(_), Pep440Version::Valid(_)) => Ordering::Less,
            (Pep440Version::Valid(_), Pep440Version::Legacy(_)) => Ordering::Greater,
            (Pep440Version::Valid(a), Pep440Version::Valid(b)) => a.cmp(text, b, other_text),
        }
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        match self {
            Pep440Version::Legacy(key) => {
                state.write_u8(0);
                hash_field(state, key.as_bytes());
            }
            Pep440Version::Valid(v) => {
                state.write_u8(1);
                v.hash_norm(text, state);
            }
        }
    }
}

fn is_sep(c: Option<&u8>) -> bool {
    matches!(c, Some(b'-' | b'_' | b'.'))
}

fn starts_with_ci(b: &[u8], label: &str) -> bool {
    b.len() >= label.len() && b[..label.len()].eq_ignore_ascii_case(label.as_bytes())
}

fn digits_at(b: &[u8], i: usize) -> usize {
    run_len(b.get(i..).unwrap_or_default(), |c| c.is_ascii_digit())
}

/// Parses `[sep] label [sep] [digits]` at `i`. The trailing separator is
/// taken even without digits (the regex is greedy there, and nothing that
/// can follow needs it back). Returns the label's index, number and end.
fn labelled<'l>(
    s: &str,
    i: usize,
    labels: impl IntoIterator<Item = &'l str>,
) -> Option<(usize, Span, usize)> {
    let b = s.as_bytes();
    let mut j = i + usize::from(is_sep(b.get(i)));
    let (idx, label) = labels
        .into_iter()
        .enumerate()
        .find(|(_, l)| starts_with_ci(&b[j..], l))?;
    j += label.len();
    j += usize::from(is_sep(b.get(j)));
    let n = digits_at(b, j);
    Some((idx, Span::digits(s, j, j + n), j + n))
}

/// Recognises packaging's `VERSION_PATTERN`, anchored at both ends.
fn parse_valid(s: &str) -> Option<Pep440> {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'v' | b'V')));

    let mut n = digits_at(b, i);
    if n == 0 {
        return None;
    }
    let mut epoch = Span::default();
    if b.get(i + n) == Some(&b'!') {
        epoch = Span::digits(s, i, i + n);
        i += n + 1;
        n = digits_at(b, i);
        if n == 0 {
            return None;
        }
    }
    let mut release = vec![Span::digits(s, i, i + n)];
    i += n;
    // A dot continues the release only if a digit follows; otherwise it is
    // the separator of what comes next (`1.0.post1`).
    while b.get(i) == Some(&b'.') && digits_at(b, i + 1) > 0 {
        let n = digits_at(b, i + 1);
        release.push(Span::digits(s, i + 1, i + 1 + n));
        i += 1 + n;
    }
    while release.len() > 1 && release.last().is_some_and(|r| r.is_empty()) {
        release.pop();
    }

    let mut pre = None;
    if let Some((idx, num, end)) = labelled(s, i, PRE_LABELS.iter().map(|(l, _)| *l)) {
        pre = Some((PRE_LABELS[idx].1, num));
        i = end;
    }

    let mut post = None;
    if b.get(i) == Some(&b'-') && digits_at(b, i + 1) > 0 {
        let n = digits_at(b, i + 1);
        post = Some(Span::digits(s, i + 1, i + 1 + n));
        i += 1 + n;
    } else if let Some((_, num, end)) = labelled(s, i, POST_LABELS) {
        post = Some(num);
        i = end;
    }

    let mut dev = None;
    if let Some((_, num, end)) = labelled(s, i, ["dev"]) {
        dev = Some(num);
        i = end;
    }

    let mut local = None;
    if b.get(i) == Some(&b'+') {
        let mut segments = Vec::new();
        i += 1;
        loop {
            let n = run_len(&b[i..], |c| c.is_ascii_alphanumeric());
            if n == 0 {
                return None;
            }
            let seg = &b[i..i + n];
            segments.push(if seg.iter().all(u8::is_ascii_digit) {
                Span::digits(s, i, i + n)
            } else {
                Span::new(i, i + n)
            });
            i += n;
            if i == b.len() {
                break;
            }
            if !is_sep(b.get(i)) {
                return None;
            }
            i += 1;
        }
        local = Some(segments.into());
    }

    (i == b.len()).then(|| Pep440 {
        epoch,
        release: release.into(),
        pre,
        post,
        dev,
        local,
    })
}

/// Rank of the pre-release slot in packaging's `_cmpkey`: a bare dev
/// release sorts below all pre-releases, no pre-release above them.
fn pre_rank(v: &Pep440) -> u8 {
    match (v.pre, v.post, v.dev) {
        (None, None, Some(_)) => 0,
        (Some(_), _, _) => 1,
        (None, _, _) => 2,
    }
}

/// Local segments are numeric when all digits; a numeric one was
/// zero-stripped and may be empty (zero), an alphanumeric one never is.
fn is_numeric(seg: &[u8]) -> bool {
    seg.iter().all(u8::is_ascii_digit)
}

impl Pep440 {
    fn cmp(&self, text: &str, other: &Pep440, other_text: &str) -> Ordering {
        let num = |a: Span, b: Span| cmp_num(a.bytes(text), b.bytes(other_text));
        num(self.epoch, other.epoch)
            .then_with(|| {
                for idx in 0..self.release.len().max(other.release.len()) {
                    let a = self.release.get(idx).copied().unwrap_or_default();
                    let b = other.release.get(idx).copied().unwrap_or_default();
                    let ord = num(a, b);
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            })
            .then_with(|| pre_rank(self).cmp(&pre_rank(other)))
            .then_with(|| match (self.pre, other.pre) {
                (Some((ka, na)), Some((kb, nb))) => ka.cmp(&kb).then_with(|| num(na, nb)),
                _ => Ordering::Equal,
            })
            .then_with(|| match (self.post, other.post) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => num(a, b),
            })
            .then_with(|| match (self.dev, other.dev) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => num(a, b),
            })
            .then_with(|| match (&self.local, &other.local) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => cmp_local(a, text, b, other_text),
            })
    }

    fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        hash_field(state, self.epoch.bytes(text));
        let mut n = self.release.len();
        while n > 0 && self.release[n - 1].is_empty() {
            n -= 1;
        }
        state.write_usize(n);
        for r in &self.release[..n] {
            hash_field(state, r.bytes(text));
        }
        let opt = |state: &mut H, tag: Option<Span>| match tag {
            None => state.write_u8(0),
            Some(s) => {
                state.write_u8(1);
                hash_field(state, s.bytes(text));
            }
        };
        match self.pre {
            None => state.write_u8(0),
            Some((kind, num)) => {
                state.write_u8(1 + kind as u8);
                hash_field(state, num.bytes(text));
            }
        }
        opt(state, self.post);
        opt(state, self.dev);
        match &self.local {
            None => state.write_u8(0),
            Some(segs) => {
                state.write_u8(1);
                for seg in segs.iter() {
                    let bytes = seg.bytes(text);
                    if is_numeric(bytes) {
                        state.write_u8(0);
                        hash_field(state, bytes);
                    } else {
                        state.write_u8(1);
                        for c in bytes {
                            state.write_u8(c.to_ascii_lowercase());
                        }
                        state.write_u8(0xFF);
                    }
                }
            }
        }
    }
}

fn cmp_local(a: &[Span], ta: &str, b: &[Span], tb: &str) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.bytes(ta), y.bytes(tb));
        let ord = match (is_numeric(x), is_numeric(y)) {
            (true, true) => cmp_num(x, y),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x
                .iter()
                .map(u8::to_ascii_lowercase)
                .cmp(y.iter().map(u8::to_ascii_lowercase)),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// `packaging.version._legacy_cmpkey`, flattened into one string.
///
/// The lower-cased version is split like `re.split(r"(\d+|[a-z]+|\.|-)")`,
/// which keeps the text *between* matches as parts too (`_`, `+`, ...).
/// Spellings are normalised (`pre`/`preview`/`rc` -> `c`, `dev` -> `@`,
/// `-` -> `final-`), numbers are zero-padded to 8 digits, words get a `*`
/// prefix, `*final` closes the list, and trailing zero parts and `-` before
/// a pre-release tag are dropped before each word.
fn legacy_key(s: &str) -> String {
    let lower = s.to_lowercase();
    let b = lower.as_bytes();
    let mut parts: Vec<String> = Vec::new();
    let mut push = |raw: &str| {
        let part = match raw {
            "pre" | "preview" | "rc" => "c",
            "-" => "final-",
            "dev" => "@",
            other => other,
        };
        if part.is_empty() || part == "." {
            return;
        }
        let part = if part.as_bytes()[0].is_ascii_digit() {
            format!("{part:0>8}")
        } else {
            format!("*{part}")
        };
        if part.starts_with('*') {
            if part.as_str() < "*final" {
                while parts.last().is_some_and(|p| p == "*final-") {
                    parts.pop();
                }
            }
            while parts.last().is_some_and(|p| p == "00000000") {
                parts.pop();
            }
        }
        parts.push(part);
    };

    let mut i = 0;
    let mut between = 0;
    while i < b.len() {
        let c = b[i];
        let n = if c.is_ascii_digit() {
            run_len(&b[i..], |c| c.is_ascii_digit())
        } else if c.is_ascii_lowercase() {
            run_len(&b[i..], |c| c.is_ascii_lowercase())
        } else if c == b'.' || c == b'-' {
            1
        } else {
            0
        };
        if n == 0 {
            // Not a token: part of the text between tokens. Step over the
            // whole UTF-8 character so slicing stays on boundaries.
            i += lower[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        push(&lower[between..i]);
        push(&lower[i..i + n]);
        i += n;
        between = i;
    }
    push(&lower[between..]);
    push("final");

    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in &parts {
        key.push_str(p);
        key.push('\0');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::legacy_key;
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Pep440.compare(a, b).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(cmp("1.0", "1.0.0"), Equal);
        assert_eq!(cmp("1.0-1", "1.0.post1"), Equal);
        assert_eq!(cmp("1.0-r", "1.0.post0"), Equal);
        assert_eq!(cmp("1.0ALPHA1", "1.0a1"), Equal);
        assert_eq!(cmp("1.0-preview-2", "1.0rc2"), Equal);
        assert_eq!(cmp("1.0c", "1.0rc0"), Equal);
        assert_eq!(cmp("v1.0", "1.0"), Equal);
        assert_eq!(cmp("0!1.0", "1.0"), Equal);
        assert_eq!(cmp("1.0_dev_3", "1.0.dev3"), Equal);
        assert_eq!(cmp("1.0+Ubuntu.1", "1.0+ubuntu.01"), Equal);
    }

    #[test]
    fn ordering() {
        let ordered = [
            "1.0.dev0",
            "1.0a0.dev0",
            "1.0a0",
            "1.0a1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+abc.5",
            "1.0+5",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn legacy() {
        assert_eq!(cmp("0.1-bulbasaur", "0.1-charmander"), Less);
        assert_eq!(cmp("french-toast", "1.0"), Less);
        assert_eq!(cmp("2.0b1-x", "0.1"), Less);
        assert_eq!(cmp("1.0+", "1.0"), Less); // empty local: invalid, legacy
        let key = |parts: &[&str]| parts.iter().map(|p| format!("{p}\0")).collect::<String>();
        assert_eq!(
            legacy_key("1.0-pre1"),
            key(&["00000001", "*c", "00000001", "*final"])
        );
        assert_eq!(legacy_key("1_x"), key(&["00000001", "*_", "*x", "*final"]));
        assert_eq!(legacy_key("1.0-dev"), key(&["00000001", "*@", "*final"]));
    }
}
