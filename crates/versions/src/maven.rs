//! Maven version ordering, as OSV tooling reads it (osv.dev's
//! `osv/ecosystems/maven.py` and osv-scalibr's `semantic/version-maven.go`,
//! both after Maven's "version order specification").
//!
//! Tokens: the text is split at `.` and `-` (the separator before a token
//! is its prefix) and at every digit/non-digit transition (a prefix of `-`).
//! Tokens are lower-cased; an empty token is `0`; `cr` is `rc`; `ga`,
//! `final` and `release` are the empty qualifier; `a`, `b`, `m` directly
//! followed by a digit are `alpha`, `beta`, `milestone`; numbers lose their
//! leading zeros. Then, from the end and again before every remaining `-`,
//! the "null" tokens (`0`, the empty qualifier) are trimmed. So `1.0.0 ==
//! 1`, `1a == 1.0-a`, `1-ga-1 == 1-1`, `1cr == 1rc`.
//!
//! Two token lists compare token by token, the shorter one padded with
//! "null". Between tokens: `.qualifier < -qualifier < -number < .number`;
//! numbers by value; qualifiers `alpha < beta < milestone < rc < snapshot <
//! "" < sp <` anything else (bytewise). Null sits where the release is:
//! above `alpha`…`snapshot`, equal to the empty qualifier, below `sp`,
//! unknown qualifiers and numbers; `.0` in the middle counts as null too
//! (`1.0.1 > 1`, `5.0.0.RC1 < 5.0.0.RELEASE`).
//!
//! That rule set is not an order: read literally, `1.0.alpha < 1 < 1-1 <
//! 1.0.alpha` (Maven's own `ComparableVersion` has the same cycle, and
//! osv-scalibr's generated vectors, being Maven's sorted lists, hold three
//! pairs that only a cycle satisfies: see `tests/vectors.rs`). Here every
//! token gets one place in a single total order and null is one point in
//! it, so the result is a total preorder and sorting is sound; the places
//! were chosen so that every other vector of osv-scalibr's files holds:
//!
//! - a run of middle `.0` tokens is placed by what follows it: above every
//!   `-` token (as `.number > -number` says) when the run leads to
//!   something above null (`1.0.1`), just below null when it leads to
//!   something below (`1.0.alpha`). So `1.0.alpha < 1-1` (literally `>`).
//! - `.sp` and `.unknown` tokens sit above null (as the rules say) and so
//!   above `-alpha`…`-snapshot` and the empty `-` qualifier (literally
//!   below, since `.qualifier < -qualifier`): `1.foo > 1-alpha`.
//! - a `.unknown` qualifier always sorts above null (literally it is
//!   compared with the text `0`, so `1.! < 1`).
//! - a non-ASCII character before a digit ends its token at the character's
//!   boundary (osv-scalibr cuts one byte after the character's start).
//!
//! Every string is accepted (Maven accepts every string).

use std::cmp::Ordering;
use std::hash::Hasher;

use crate::{Span, cmp_num, hash_field};

/// Places of a token in the one total order (see the module docs), low to
/// high. Tokens at index 0 (no prefix) only ever meet each other and use
/// `DOT_BELOW`/`DOT_ABOVE`/`DOT_NUM`, which orders them as Maven does.
mod place {
    /// `.alpha` … `.snapshot`, `.` (empty qualifier).
    pub const DOT_BELOW: u8 = 1;
    /// `-alpha` … `-snapshot`.
    pub const DASH_BELOW: u8 = 2;
    /// A middle run of `.0` leading to something below null.
    pub const ZERO_BELOW: u8 = 3;
    /// Null (padding) and the empty `-` qualifier.
    pub const NULL: u8 = 4;
    /// `.sp`, `.unknown`.
    pub const DOT_ABOVE: u8 = 5;
    /// `-sp`, `-unknown`.
    pub const DASH_ABOVE: u8 = 6;
    /// `-number`.
    pub const DASH_NUM: u8 = 7;
    /// A middle run of `.0` leading to something above null.
    pub const ZERO_ABOVE: u8 = 8;
    /// `.number` (not zero, except at index 0).
    pub const DOT_NUM: u8 = 9;
}

/// Qualifiers Maven knows, in order; the empty qualifier is the release.
const KEYWORDS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
/// Index of an unknown qualifier (after every keyword).
const UNKNOWN: u8 = KEYWORDS.len() as u8;
/// Index of the empty qualifier.
const RELEASE: u8 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    place: u8,
    /// Keyword index for qualifiers (`UNKNOWN` for others), 0 for numbers.
    keyword: u8,
    /// Zero-stripped digits of a number (into the original text).
    num: Span,
    /// Lower-cased text of an unknown qualifier.
    text: Option<Box<str>>,
}

impl Item {
    const NULL: Item = Item {
        place: place::NULL,
        keyword: RELEASE,
        num: Span { start: 0, end: 0 },
        text: None,
    };

    fn cmp(&self, ta: &str, other: &Item, tb: &str) -> Ordering {
        self.place
            .cmp(&other.place)
            .then_with(|| self.keyword.cmp(&other.keyword))
            .then_with(|| cmp_num(self.num.bytes(ta), other.num.bytes(tb)))
            .then_with(|| self.text().cmp(other.text()))
    }

    fn text(&self) -> &[u8] {
        self.text.as_deref().unwrap_or_default().as_bytes()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct MavenVersion {
    items: Box<[Item]>,
}

/// A token before placing: its prefix and value.
#[derive(Debug)]
enum Value {
    Num(Span),
    Qual(String),
}

#[derive(Debug)]
struct Token {
    prefix: u8,
    value: Value,
}

impl Token {
    fn is_null(&self) -> bool {
        match &self.value {
            Value::Num(n) => n.is_empty(),
            Value::Qual(q) => q.is_empty(),
        }
    }

    fn is_zero(&self) -> bool {
        matches!(self.value, Value::Num(n) if n.is_empty())
    }
}

impl MavenVersion {
    pub(crate) fn parse(s: &str) -> MavenVersion {
        let tokens = trim(tokenize(s));
        let mut items: Vec<Item> = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            items.push(place_token(i, t, &tokens[i + 1..]));
        }
        MavenVersion {
            items: items.into_boxed_slice(),
        }
    }

    pub(crate) fn cmp(&self, text: &str, other: &MavenVersion, other_text: &str) -> Ordering {
        let n = self.items.len().max(other.items.len());
        for i in 0..n {
            let a = self.items.get(i).unwrap_or(&Item::NULL);
            let b = other.items.get(i).unwrap_or(&Item::NULL);
            let ord = a.cmp(text, b, other_text);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    pub(crate) fn hash_norm<H: Hasher>(&self, text: &str, state: &mut H) {
        // Trailing items equal to the padding do not change comparisons.
        let mut end = self.items.len();
        while end > 1 && self.items[end - 1] == Item::NULL {
            end -= 1;
        }
        for item in &self.items[..end] {
            state.write_u8(item.place);
            state.write_u8(item.keyword);
            hash_field(state, item.num.bytes(text));
            hash_field(state, item.text());
        }
    }
}

/// Splits at `.` and `-` and at digit/non-digit transitions, normalising
/// each token as the module docs say.
fn tokenize(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut prefix = 0u8;
    loop {
        let end = s[start..].find(['.', '-']).map_or(s.len(), |at| start + at);
        split_raw(s, start, end, prefix, &mut tokens);
        if end == s.len() {
            return tokens;
        }
        prefix = s.as_bytes()[end];
        start = end + 1;
    }
}

/// One raw token (between separators) into tokens at digit transitions.
fn split_raw(s: &str, start: usize, end: usize, prefix: u8, out: &mut Vec<Token>) {
    if start == end {
        // An empty token is `0`.
        out.push(Token {
            prefix,
            value: Value::Num(Span::new(start, start)),
        });
        return;
    }
    let raw = &s[start..end];
    let mut piece_start = start;
    let mut first = true;
    let mut chars = raw.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let boundary = next.is_none_or(|n| c.is_ascii_digit() != n.is_ascii_digit());
        if !boundary {
            continue;
        }
        let piece_end = start + at + c.len_utf8();
        let followed_by_more = next.is_some();
        let piece_prefix = if first { prefix } else { b'-' };
        first = false;
        let value = if c.is_ascii_digit() {
            Value::Num(Span::digits(s, piece_start, piece_end))
        } else {
            let lower: String = s[piece_start..piece_end]
                .chars()
                .flat_map(char::to_lowercase)
                .collect();
            let q = match lower.as_str() {
                "cr" => "rc",
                "ga" | "final" | "release" => "",
                "a" if followed_by_more => "alpha",
                "b" if followed_by_more => "beta",
                "m" if followed_by_more => "milestone",
                other => other,
            };
            Value::Qual(q.to_owned())
        };
        out.push(Token {
            prefix: piece_prefix,
            value,
        });
        piece_start = piece_end;
    }
}

/// Drops the trailing null tokens, then those before each remaining `-`
/// token, from the end to the start; the first token always stays. A port
/// of the loop osv-scalibr runs, kept step for step.
fn trim(mut tokens: Vec<Token>) -> Vec<Token> {
    let mut i = tokens.len() as isize - 1;
    while i > 0 {
        let at = i as usize;
        if tokens[at].is_null() {
            tokens.remove(at);
            i -= 1;
            continue;
        }
        while i >= 0 && tokens[i as usize].prefix != b'-' {
            i -= 1;
        }
        i -= 1;
    }
    tokens
}

fn keyword(q: &str) -> u8 {
    KEYWORDS
        .iter()
        .position(|k| *k == q)
        .map_or(UNKNOWN, |k| k as u8)
}

/// The place of `token` at index `i`; `rest` follows it (a middle `.0` is
/// placed by the first token after its run).
fn place_token(i: usize, token: &Token, rest: &[Token]) -> Item {
    let item = |place, keyword, num, text: Option<&str>| Item {
        place,
        keyword,
        num,
        text: text.map(Into::into),
    };
    match (&token.value, token.prefix) {
        (Value::Num(n), b'.') if i > 0 && n.is_empty() => {
            let next = rest.iter().find(|t| !(t.prefix == b'.' && t.is_zero()));
            let above = next.is_none_or(|t| place_token(i + 1, t, &[]).place > place::NULL);
            let place = if above {
                place::ZERO_ABOVE
            } else {
                place::ZERO_BELOW
            };
            item(place, 0, Span::default(), None)
        }
        (Value::Num(n), b'-') => item(place::DASH_NUM, 0, *n, None),
        (Value::Num(n), _) => item(place::DOT_NUM, 0, *n, None),
        (Value::Qual(q), prefix) => {
            let k = keyword(q);
            let text = (k == UNKNOWN).then_some(q.as_str());
            let dash = prefix == b'-';
            let place = match (dash, k) {
                (true, RELEASE) => place::NULL,
                (true, k) if k < RELEASE => place::DASH_BELOW,
                (true, _) => place::DASH_ABOVE,
                (false, k) if k <= RELEASE => place::DOT_BELOW,
                (false, _) => place::DOT_ABOVE,
            };
            item(place, k, Span::default(), text)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Scheme;
    use std::cmp::Ordering::{self, *};

    fn cmp(a: &str, b: &str) -> Ordering {
        Scheme::Maven.compare(a, b).unwrap()
    }

    #[test]
    fn specification_order() {
        let ordered = [
            "1-alpha-1",
            "1-alpha-2",
            "1-beta-1",
            "1-milestone-1",
            "1-rc-1",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-abc",
            "1-1",
            "1.1",
            "1.1.1",
            "2",
        ];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn aliases_and_trimming() {
        assert_eq!(cmp("1.0.0", "1"), Equal);
        assert_eq!(cmp("1-ga-1", "1-1"), Equal);
        assert_eq!(cmp("1a1", "1-alpha-1"), Equal);
        assert_eq!(cmp("1CR", "1rc"), Equal);
        assert_eq!(cmp("1.FINAL", "1"), Equal);
        assert_eq!(cmp("1a", "1.0-a"), Equal);
        assert_eq!(cmp("5.0.0.RC1", "5.0.0.RELEASE"), Less);
        assert_eq!(cmp("1.0.1", "1"), Greater);
    }

    #[test]
    fn the_literal_cycle_is_broken() {
        // Read literally the rules give 1.0.alpha < 1 < 1-1 < 1.0.alpha.
        assert_eq!(cmp("1.0.alpha", "1"), Less);
        assert_eq!(cmp("1", "1-1"), Less);
        assert_eq!(cmp("1.0.alpha", "1-1"), Less);
    }
}
