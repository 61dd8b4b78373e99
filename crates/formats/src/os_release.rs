//! `/etc/os-release` (os-release(5)): shell-style `KEY=value` lines, and the
//! `ID-VERSION_ID` distro string ("debian-12", "alpine-3.18.4") the rest of
//! the project uses as the purl `distro` qualifier.

use crate::{FormatError, text};

const FORMAT: &str = "os-release";

/// The fields of os-release that identify the distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`; os-release(5) says it defaults to `linux` when absent.
    pub id: String,
    /// `ID_LIKE`, space-separated.
    pub id_like: Vec<String>,
    pub version_id: Option<String>,
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// `ID-VERSION_ID`, e.g. `debian-12`, `ubuntu-18.04`, `alpine-3.18.4`;
    /// only `ID` when there is no `VERSION_ID` (Debian testing/sid, Arch).
    pub fn distro(&self) -> Option<String> {
        if self.id.is_empty() {
            return None;
        }
        Some(match &self.version_id {
            Some(v) if !v.is_empty() => format!("{}-{}", self.id, v),
            _ => self.id.clone(),
        })
    }
}

/// Splits a distro string into ID and version at the first `-` followed by
/// a digit, since IDs may themselves contain dashes: `opensuse-leap-15.5`
/// is (`opensuse-leap`, `15.5`), `debian-12` is (`debian`, `12`).
pub fn split_distro(distro: &str) -> (&str, Option<&str>) {
    let bytes = distro.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return (&distro[..i], Some(&distro[i + 1..]));
        }
    }
    (distro, None)
}

/// Parses os-release text. Comments and blank lines are skipped; values
/// may be unquoted, `"double"` (with `\"`, `\\`, `\$`, `` \` `` escapes) or
/// `'single'` quoted, as in a shell assignment.
pub fn parse(text: &str) -> Result<OsRelease, FormatError> {
    let mut os = OsRelease::default();
    let mut id = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, raw) in text::numbered_lines(text) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(FormatError::new(
                FORMAT,
                format!("expected KEY=value, found {:?}", text::excerpt(line)),
            )
            .at_line(n));
        };
        let key = key.trim_end();
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(FormatError::new(
                FORMAT,
                format!("invalid variable name {:?}", text::excerpt(key)),
            )
            .at_line(n));
        }
        let value =
            unquote(value.trim_start()).map_err(|m| FormatError::new(FORMAT, m).at_line(n))?;
        let opt = |v: String| (!v.is_empty()).then_some(v);
        match key {
            "ID" => id = Some(value.to_ascii_lowercase()),
            "ID_LIKE" => {
                os.id_like = value
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
            "VERSION_ID" => os.version_id = opt(value),
            "VERSION_CODENAME" => os.version_codename = opt(value),
            "PRETTY_NAME" => os.pretty_name = opt(value),
            _ => {}
        }
    }
    os.id = id
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "linux".to_string());
    Ok(os)
}

/// Shell-style unquoting of one assignment value. Quoted and unquoted parts
/// may be concatenated (`a"b c"d`); an unquoted `#` after whitespace starts a
/// comment.
fn unquote(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err("unterminated double quote".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                        // A backslash before a newline would continue the
                        // line; os-release values are single-line.
                        Some(other) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => return Err("unterminated double quote".into()),
                    },
                    Some(other) => out.push(other),
                }
            },
            '\'' => loop {
                match chars.next() {
                    None => return Err("unterminated single quote".into()),
                    Some('\'') => break,
                    Some(other) => out.push(other),
                }
            },
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => return Err("trailing backslash".into()),
            },
            c if c.is_whitespace() => {
                // Whitespace ends an unquoted value in a shell; tolerate
                // a trailing comment, refuse other trailing words.
                let rest: String = chars.collect();
                let rest = rest.trim();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err(format!(
                    "unquoted whitespace in value (quote values with spaces): {:?}",
                    text::excerpt(value)
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}
