//! OSV advisories (schema 1.6, https://ossf.github.io/osv-schema/) in JSON
//! or YAML: the model, parsing with validation, and serialisation back to
//! valid OSV JSON.
//!
//! Parsing goes through a tolerant raw form (every field optional, `null`
//! lists empty, unknown fields ignored) and then [`validate`] checks what
//! matching relies on, so each problem gets a path and a clear message
//! rather than a generic "missing field" from serde:
//! - `id` non-empty; `modified` present and RFC 3339; `published` and
//!   `withdrawn` RFC 3339 when present;
//! - every event has exactly one of `introduced`, `fixed`,
//!   `last_affected`, `limit`;
//! - range types are `SEMVER`, `ECOSYSTEM` or `GIT` (case-insensitive; an
//!   unknown type is an error naming it); SEMVER and ECOSYSTEM ranges have an
//!   `introduced`, GIT ranges a `repo`;
//! - each affected entry names its package by `ecosystem` and `name`, or by
//!   a `purl` they are derived from; only GIT-only entries may omit it.
//!
//! Fields outside the model (`credits`, per-range `database_specific`) are
//! dropped, so re-serialising is valid OSV but not byte-identical.

use crate::error::path_string;
use crate::purl::Purl;
use crate::{FormatError, text};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const JSON: &str = "osv-json";
const YAML: &str = "osv-yaml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAdvisory")]
pub struct Advisory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    pub id: String,
    pub modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Extra>,
}

/// A free-form object of a record (`ecosystem_specific`,
/// `database_specific`), kept as its compact JSON text: a tree of JSON
/// values per record was half of the memory 100,000 Ubuntu records took
/// (their `binaries` lists), and nothing evaluates them — the severity
/// words are read from them once, when the record is compiled. A text of
/// [`EXTRA_COMPRESS_MIN`] bytes or more is kept LZ4-compressed when that
/// is smaller (the real records' texts shrink about 3×; they were still a
/// tenth of a 100,000-record catalog's memory as text). Deflate shrank
/// them a little more but doubled the time to load a catalog: each call
/// builds a compressor's tables for a text of a kilobyte or two.
#[derive(Clone, PartialEq, Eq)]
pub struct Extra(ExtraText);

#[derive(Clone, PartialEq, Eq)]
enum ExtraText {
    Plain(Box<str>),
    /// An LZ4 block of the text, its length first.
    Compressed(Box<[u8]>),
}

/// Shorter texts are kept as they are.
pub const EXTRA_COMPRESS_MIN: usize = 128;

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Extra").field(&self.text()).finish()
    }
}

impl Extra {
    pub fn from_value(v: &Value) -> Extra {
        Extra::from_text(serde_json::to_string(v).unwrap_or_default())
    }

    fn from_text(text: String) -> Extra {
        if text.len() >= EXTRA_COMPRESS_MIN {
            let compressed = lz4_flex::block::compress_prepend_size(text.as_bytes());
            if compressed.len() < text.len() {
                return Extra(ExtraText::Compressed(compressed.into_boxed_slice()));
            }
        }
        Extra(ExtraText::Plain(text.into()))
    }

    /// The compact JSON text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            ExtraText::Plain(t) => std::borrow::Cow::Borrowed(t),
            // The block is this process's own, made from a bounded record.
            ExtraText::Compressed(c) => std::borrow::Cow::Owned(
                lz4_flex::block::decompress_size_prepended(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The value, parsed again.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text()).unwrap_or(Value::Null)
    }

    /// A string member of the object.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.value() {
            Value::Object(mut m) => match m.remove(key)? {
                Value::String(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affected {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<Extra>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Extra>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub ecosystem: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub ty: RangeType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeType {
    Semver,
    Ecosystem,
    Git,
}

/// One range event; serialises as `{"introduced": "1.0"}` etc.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    /// The version (or commit) the event names.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Severity {
    #[serde(rename = "type")]
    pub ty: String,
    pub score: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(rename = "type")]
    pub ty: String,
    pub url: String,
}

impl Advisory {
    /// True when the advisory has been withdrawn and should not match.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }

    /// OSV JSON text.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, vectors and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses one OSV advisory in JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Advisory, FormatError> {
    let mut de = serde_json::Deserializer::from_slice(text::strip_bom(bytes));
    let text::Object(raw): text::Object<RawAdvisory> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FormatError::from_json_path(JSON, &e))?;
    de.end().map_err(|e| FormatError::from_json(JSON, &e))?;
    validate(raw).map_err(|(path, msg)| FormatError::new(JSON, msg).at_path(path))
}

/// Parses one OSV advisory in YAML (the PyPI advisory database's form).
pub fn parse_yaml(bytes: &[u8]) -> Result<Advisory, FormatError> {
    let de = serde_norway::Deserializer::from_slice(text::strip_bom(bytes));
    let text::Object(raw): text::Object<RawAdvisory> = serde_path_to_error::deserialize(de)
        .map_err(|e| FormatError::from_yaml(YAML, e.inner(), path_string(e.path())))?;
    validate(raw).map_err(|(path, msg)| FormatError::new(YAML, msg).at_path(path))
}

/// Parses JSON or YAML, chosen by the file name's extension (`.json`,
/// `.yaml`, `.yml`) or else by the content (JSON starts with `{`).
pub fn parse_auto(name_hint: &str, bytes: &[u8]) -> Result<Advisory, FormatError> {
    let lower = name_hint.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return parse_json(bytes);
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return parse_yaml(bytes);
    }
    let first = text::strip_bom(bytes)
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if first == Some(b'{') {
        parse_json(bytes)
    } else {
        parse_yaml(bytes)
    }
}

// ---- raw, tolerant form ----

// Container renames only change serde's "expected struct X" wording in
// error messages, which users see.
#[derive(Debug, Deserialize)]
#[serde(rename = "advisory")]
struct RawAdvisory {
    #[serde(default)]
    schema_version: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    aliases: Vec<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    related: Vec<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    severity: Vec<Severity>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    affected: Vec<RawAffected>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    references: Vec<Reference>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "affected entry")]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    severity: Vec<Severity>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    ranges: Vec<RawRange>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    versions: Vec<String>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "package")]
struct RawPackage {
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "range")]
struct RawRange {
    #[serde(rename = "type", default)]
    ty: Option<String>,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default, deserialize_with = "text::null_as_empty")]
    events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename = "event")]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

impl TryFrom<RawAdvisory> for Advisory {
    type Error = String;

    fn try_from(raw: RawAdvisory) -> Result<Advisory, String> {
        validate(raw).map_err(|(path, msg)| format!("{path}: {msg}"))
    }
}

type Invalid = (String, String);

fn invalid(path: impl Into<String>, msg: impl Into<String>) -> Invalid {
    (path.into(), msg.into())
}

fn validate(raw: RawAdvisory) -> Result<Advisory, Invalid> {
    let id = raw.id.map(|s| s.trim().to_string()).unwrap_or_default();
    if id.is_empty() {
        return Err(invalid("id", "`id` is missing or empty"));
    }
    let Some(modified) = raw.modified else {
        return Err(invalid("modified", "`modified` is missing"));
    };
    for (field, value) in [
        ("modified", Some(&modified)),
        ("published", raw.published.as_ref()),
        ("withdrawn", raw.withdrawn.as_ref()),
    ] {
        if let Some(v) = value
            && !is_rfc3339(v)
        {
            return Err(invalid(
                field,
                format!(
                    "`{field}` is not an RFC 3339 timestamp: {:?}",
                    text::excerpt(v)
                ),
            ));
        }
    }

    let mut affected = Vec::with_capacity(raw.affected.len());
    for (i, a) in raw.affected.into_iter().enumerate() {
        affected.push(validate_affected(i, a)?);
    }

    Ok(Advisory {
        schema_version: raw.schema_version,
        id,
        modified,
        published: raw.published,
        withdrawn: raw.withdrawn,
        aliases: raw.aliases,
        related: raw.related,
        upstream: raw.upstream,
        summary: raw.summary,
        details: raw.details,
        severity: raw.severity,
        affected,
        references: raw.references,
        database_specific: raw.database_specific.as_ref().map(Extra::from_value),
    })
}

fn validate_affected(i: usize, a: RawAffected) -> Result<Affected, Invalid> {
    let mut ranges = Vec::with_capacity(a.ranges.len());
    for (j, r) in a.ranges.into_iter().enumerate() {
        ranges.push(validate_range(&format!("affected[{i}].ranges[{j}]"), r)?);
    }
    let ppath = format!("affected[{i}].package");
    let package = match a.package {
        Some(p) => {
            let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
            let purl = nonempty(p.purl);
            match (nonempty(p.ecosystem), nonempty(p.name)) {
                (Some(ecosystem), Some(name)) => Some(Package {
                    ecosystem,
                    name,
                    purl,
                }),
                (eco, name) => {
                    let derived = purl.as_deref().and_then(package_from_purl);
                    match derived {
                        Some((deco, dname)) => Some(Package {
                            ecosystem: eco.unwrap_or(deco),
                            name: name.unwrap_or(dname),
                            purl,
                        }),
                        None => {
                            return Err(invalid(
                                ppath,
                                "the package needs `ecosystem` and `name`, or a `purl` of a known ecosystem",
                            ));
                        }
                    }
                }
            }
        }
        // Repository-level entries (GIT ranges only) have no package.
        None if !ranges.is_empty() && ranges.iter().all(|r| r.ty == RangeType::Git) => None,
        None => {
            return Err(invalid(
                ppath,
                "missing `package` (ecosystem and name, or purl)",
            ));
        }
    };
    Ok(Affected {
        package,
        severity: a.severity,
        ranges,
        versions: a.versions,
        ecosystem_specific: a.ecosystem_specific.as_ref().map(Extra::from_value),
        database_specific: a.database_specific.as_ref().map(Extra::from_value),
    })
}

fn validate_range(path: &str, r: RawRange) -> Result<Range, Invalid> {
    let ty = match r.ty.as_deref().map(str::trim) {
        Some(t) if t.eq_ignore_ascii_case("SEMVER") => RangeType::Semver,
        Some(t) if t.eq_ignore_ascii_case("ECOSYSTEM") => RangeType::Ecosystem,
        Some(t) if t.eq_ignore_ascii_case("GIT") => RangeType::Git,
        Some(t) => {
            return Err(invalid(
                format!("{path}.type"),
                format!(
                    "unknown range type {:?} (expected SEMVER, ECOSYSTEM or GIT)",
                    text::excerpt(t)
                ),
            ));
        }
        None => return Err(invalid(format!("{path}.type"), "the range has no `type`")),
    };
    let mut events = Vec::with_capacity(r.events.len());
    for (k, e) in r.events.into_iter().enumerate() {
        let mut found = Vec::new();
        if let Some(v) = e.introduced {
            found.push(("introduced", Event::Introduced(v)));
        }
        if let Some(v) = e.fixed {
            found.push(("fixed", Event::Fixed(v)));
        }
        if let Some(v) = e.last_affected {
            found.push(("last_affected", Event::LastAffected(v)));
        }
        if let Some(v) = e.limit {
            found.push(("limit", Event::Limit(v)));
        }
        if found.len() != 1 {
            let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
            return Err(invalid(
                format!("{path}.events[{k}]"),
                format!(
                    "an event must have exactly one of introduced, fixed, last_affected, limit; found {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        if let Some((_, ev)) = found.pop() {
            events.push(ev);
        }
    }
    match ty {
        RangeType::Semver | RangeType::Ecosystem => {
            if !events.iter().any(|e| matches!(e, Event::Introduced(_))) {
                return Err(invalid(
                    format!("{path}.events"),
                    format!(
                        "a {} range needs at least one `introduced` event",
                        type_name(ty)
                    ),
                ));
            }
        }
        RangeType::Git => {
            if r.repo.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(invalid(format!("{path}.repo"), "a GIT range needs `repo`"));
            }
            if events.is_empty() {
                return Err(invalid(
                    format!("{path}.events"),
                    "a GIT range has no events",
                ));
            }
        }
    }
    Ok(Range {
        ty,
        repo: r.repo,
        events,
    })
}

fn type_name(ty: RangeType) -> &'static str {
    match ty {
        RangeType::Semver => "SEMVER",
        RangeType::Ecosystem => "ECOSYSTEM",
        RangeType::Git => "GIT",
    }
}

/// OSV ecosystem and package name of a purl, for entries that only give a
/// purl. Distribution types need the vendor to tell the ecosystem.
fn package_from_purl(purl: &str) -> Option<(String, String)> {
    let p: Purl = purl.parse().ok()?;
    let ns = p.namespace.as_deref();
    let ecosystem = match (p.ty.as_str(), ns) {
        ("pypi", _) => "PyPI",
        ("npm", _) => "npm",
        ("cargo", _) => "crates.io",
        ("golang", _) => "Go",
        ("maven", _) => "Maven",
        ("gem", _) => "RubyGems",
        ("nuget", _) => "NuGet",
        ("composer", _) => "Packagist",
        ("hex", _) => "Hex",
        ("pub", _) => "Pub",
        ("hackage", _) => "Hackage",
        ("cran", _) => "CRAN",
        ("swift", _) => "SwiftURL",
        ("deb", Some("debian")) => "Debian",
        ("deb", Some("ubuntu")) => "Ubuntu",
        ("apk", Some("alpine")) => "Alpine",
        _ => return None,
    };
    let name = match (p.ty.as_str(), ns) {
        ("maven", Some(ns)) => format!("{ns}:{}", p.name),
        ("npm" | "golang" | "composer" | "swift", Some(ns)) => format!("{ns}/{}", p.name),
        _ => p.name.clone(),
    };
    Some((ecosystem.to_string(), name))
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with the
/// field ranges checked (month, day of that month, hour, minute, second up
/// to a leap second 60).
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return false;
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return false;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (num(11, 2), num(14, 2), num(17, 2)) else {
        return false;
    };
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let (Some(oh), Some(om)) = (num(i + 1, 2), num(i + 4, 2)) else {
                return false;
            };
            b.get(i + 3) == Some(&b':') && oh <= 23 && om <= 59 && i + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{EXTRA_COMPRESS_MIN, Extra, ExtraText, is_rfc3339};

    #[test]
    fn free_form_texts_read_back_as_given() {
        // A long text (an Ubuntu record's `binaries`) is kept compressed,
        // a short one as it is; both read back as the same value.
        let binaries: Vec<serde_json::Value> = (0..40)
            .map(|i| serde_json::json!({"binary_name": format!("libfoo{i}"), "binary_version": "1.2-3ubuntu0.1"}))
            .collect();
        let long = serde_json::json!({"binaries": binaries, "urgency": "medium"});
        let short = serde_json::json!({"urgency": "high"});
        let (l, s) = (Extra::from_value(&long), Extra::from_value(&short));
        assert!(matches!(&l.0, ExtraText::Compressed(c) if c.len() < long.to_string().len() / 2));
        assert!(matches!(&s.0, ExtraText::Plain(_)));
        assert!(short.to_string().len() < EXTRA_COMPRESS_MIN);
        assert_eq!(l.value(), long);
        assert_eq!(s.value(), short);
        assert_eq!(l.get_str("urgency").as_deref(), Some("medium"));
        assert_eq!(l, Extra::from_value(&long));
        assert_eq!(serde_json::to_value(&l).expect("serializes"), long);
        assert!(format!("{l:?}").contains("libfoo39"));
    }

    #[test]
    fn rfc3339() {
        for ok in [
            "2023-07-25T00:34:15.721702Z",
            "2021-05-13T23:15:00Z",
            "2022-06-14T15:08:48+00:00",
            "2020-02-29T00:00:00-05:30",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2021-05-13",
            "2021-05-13T23:15:00",
            "2021-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2021-05-13T24:00:00Z",
            "2021-05-13T23:15:00.Z",
            "2021-05-13T23:15:00Zjunk",
            "2021-05-13T23:15:00+0100",
            "２０２１-05-13T23:15:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
