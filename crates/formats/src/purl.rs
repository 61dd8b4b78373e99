//! Package URLs (purl-spec, ECMA-427): parsing, the per-type normalisation
//! the spec mandates, and the canonical text form. Hand-written rather than
//! wrapping a crate so the canonical form follows the current spec exactly
//! (every byte outside `A-Za-z0-9.-_~:` percent-encoded, `+` as `%2B`, `@` in
//! qualifier values as `%40`); inventories are compared by this text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A parsed package URL. Fields hold decoded, normalised values: `ty`
/// lowercase, qualifier keys lowercase, no empty qualifier values, names
/// normalised per type (pypi lowercase with `-` for `_`, deb/apk/npm/...
/// lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Purl {
    pub ty: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
    pub subpath: Option<String>,
}

/// Why a string is not a valid purl.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid purl {input:?}: {reason}")]
pub struct PurlError {
    input: String,
    reason: String,
}

impl PurlError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        PurlError {
            input: crate::text::excerpt(input),
            reason: reason.into(),
        }
    }

    /// What is wrong, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Purl {
    /// Builds a purl from decoded parts, validating the type and name and
    /// applying the type's normalisation.
    pub fn new(
        ty: &str,
        namespace: Option<&str>,
        name: &str,
        version: Option<&str>,
    ) -> Result<Purl, PurlError> {
        let shown = format!("pkg:{ty}/{name}");
        let ty = ty.to_ascii_lowercase();
        check_type(&ty).map_err(|r| PurlError::new(&shown, r))?;
        let namespace = match namespace {
            Some(ns) => {
                let segments: Vec<&str> = ns.split('/').filter(|s| !s.is_empty()).collect();
                (!segments.is_empty()).then(|| segments.join("/"))
            }
            None => None,
        };
        let name = name.trim_matches('/');
        if name.is_empty() {
            return Err(PurlError::new(&shown, "the name is required"));
        }
        let mut purl = Purl {
            ty,
            namespace,
            name: name.to_string(),
            version: version.filter(|v| !v.is_empty()).map(str::to_string),
            qualifiers: BTreeMap::new(),
            subpath: None,
        };
        purl.normalize();
        Ok(purl)
    }

    /// The value of a qualifier (keys are lowercase).
    pub fn qualifier(&self, key: &str) -> Option<&str> {
        self.qualifiers.get(key).map(String::as_str)
    }

    /// Sets a qualifier; an empty value removes it, as the spec says an
    /// empty value is the same as no qualifier.
    pub fn set_qualifier(&mut self, key: &str, value: impl Into<String>) {
        let key = key.to_ascii_lowercase();
        let value = value.into();
        if value.is_empty() {
            self.qualifiers.remove(&key);
        } else {
            self.qualifiers.insert(key, value);
        }
    }

    /// Builder form of [`Purl::set_qualifier`].
    pub fn with_qualifier(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set_qualifier(key, value);
        self
    }

    /// The `upstream` qualifier split into source name and optional source
    /// version: `upstream=util-linux@2.31.1-0.4ubuntu3.1` gives
    /// `("util-linux", Some("2.31.1-0.4ubuntu3.1"))`.
    pub fn upstream(&self) -> Option<(&str, Option<&str>)> {
        let up = self.qualifier("upstream")?;
        Some(match up.split_once('@') {
            Some((name, version)) if !version.is_empty() => (name, Some(version)),
            Some((name, _)) => (name, None),
            None => (up, None),
        })
    }

    /// The source package an OS package (deb, apk, rpm) was built from,
    /// as name and optional version, in the qualifiers the producers write:
    ///
    /// - `upstream=NAME[@VERSION]` (syft, and patchline's own readers),
    /// - deb: `source=NAME` with `source_version=VERSION` (osv-scalibr), or
    ///   `source=NAME (VERSION)` as dpkg's `Source:` field spells it,
    /// - apk: `origin=NAME` (osv-scalibr, the apk database's `o:`),
    /// - rpm: `sourcerpm=NAME-VERSION-RELEASE.src.rpm` (osv-scalibr); the
    ///   file name is returned whole, as `upstream` holds it for rpm.
    ///
    /// `upstream` wins when several are present. `None` for other types or
    /// when no qualifier names a source.
    pub fn source_package(&self) -> Option<(&str, Option<&str>)> {
        let keys: &[&str] = match self.ty.as_str() {
            "deb" => &["upstream", "source"],
            "apk" => &["upstream", "origin"],
            "rpm" => &["upstream", "sourcerpm"],
            _ => return None,
        };
        let (key, text) = keys
            .iter()
            .find_map(|k| Some((*k, self.qualifier(k)?.trim())).filter(|(_, t)| !t.is_empty()))?;
        let (name, version) = split_source(text);
        if name.is_empty() {
            return None;
        }
        let version = version.or_else(|| {
            (key == "source")
                .then(|| self.qualifier("source_version").map(str::trim))
                .flatten()
                .filter(|v| !v.is_empty())
        });
        Some((name, version))
    }

    /// The canonical text form (same as `to_string()`).
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// Applies the type-specific normalisation to the fields in place.
    fn normalize(&mut self) {
        if let Some(ns) = &self.namespace
            && let Cow::Owned(n) = normalize_namespace(&self.ty, ns)
        {
            self.namespace = Some(n);
        }
        if let Cow::Owned(n) = normalize_name(&self.ty, &self.name) {
            self.name = n;
        }
        if let Some(v) = &self.version
            && let Cow::Owned(n) = normalize_version(&self.ty, v)
        {
            self.version = Some(n);
        }
    }
}

/// `name@version`, `name (version)` or `name`.
fn split_source(text: &str) -> (&str, Option<&str>) {
    if let Some((name, version)) = text.split_once('@') {
        let (name, version) = (name.trim(), version.trim());
        if !name.is_empty() {
            return (name, Some(version).filter(|v| !v.is_empty()));
        }
        return (text, None);
    }
    if let Some(open) = text.find('(')
        && let Some(inner) = text[open + 1..].strip_suffix(')')
    {
        let name = text[..open].trim();
        let version = inner.trim();
        // `(1.0)` alone names no package.
        return (
            name,
            Some(version).filter(|v| !v.is_empty() && !name.is_empty()),
        );
    }
    (text, None)
}

/// Types whose namespace the spec says is case-insensitive (lowercased).
const LOWERCASE_NAMESPACE: &[&str] = &[
    "alpm",
    "apk",
    "bitbucket",
    "composer",
    "deb",
    "github",
    "hex",
    "npm",
    "qpkg",
    "rpm",
];

/// Types whose name the spec says is case-insensitive (lowercased).
const LOWERCASE_NAME: &[&str] = &[
    "alpm",
    "apk",
    "bitbucket",
    "bitnami",
    "composer",
    "deb",
    "github",
    "hex",
    "npm",
    "oci",
    "pub",
    "pypi",
];

fn normalize_namespace<'a>(ty: &str, ns: &'a str) -> Cow<'a, str> {
    if LOWERCASE_NAMESPACE.contains(&ty) && ns.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(ns.to_lowercase())
    } else {
        Cow::Borrowed(ns)
    }
}

fn normalize_name<'a>(ty: &str, name: &'a str) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(name);
    if LOWERCASE_NAME.contains(&ty) && name.chars().any(|c| c.is_uppercase()) {
        out = Cow::Owned(name.to_lowercase());
    }
    // PyPI treats `_` and `-` alike (PEP 503); the purl spec keeps `-`.
    if ty == "pypi" && out.contains('_') {
        out = Cow::Owned(out.replace('_', "-"));
    }
    out
}

fn normalize_version<'a>(ty: &str, version: &'a str) -> Cow<'a, str> {
    // Hugging Face versions are commit hashes, case-insensitive.
    if ty == "huggingface" && version.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(version.to_lowercase())
    } else {
        Cow::Borrowed(version)
    }
}

fn check_type(ty: &str) -> Result<(), String> {
    let mut chars = ty.chars();
    match chars.next() {
        None => return Err("the type is required".into()),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(format!("the type {ty:?} must start with an ASCII letter"));
        }
        _ => {}
    }
    if let Some(c) = ty
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
    {
        return Err(format!("the type {ty:?} contains {c:?}"));
    }
    Ok(())
}

fn check_qualifier_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    match chars.next() {
        None => return Err("empty qualifier key".into()),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(format!(
                "qualifier key {key:?} must start with an ASCII letter"
            ));
        }
        _ => {}
    }
    if key
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "qualifier key {:?} may only hold letters, digits, '.', '-' and '_'",
            crate::text::excerpt(key)
        ));
    }
    Ok(())
}

/// Rules the spec states per type that make a purl invalid, not just
/// non-canonical.
fn check_type_rules(p: &Purl) -> Result<(), String> {
    match p.ty.as_str() {
        "swift" => {
            if p.namespace.is_none() {
                return Err("a swift purl needs a namespace (the source host and owner)".into());
            }
            if p.version.is_none() {
                return Err("a swift purl needs a version".into());
            }
        }
        "cran" if p.version.is_none() => return Err("a cran purl needs a version".into()),
        // Namespace (user) and channel come together or not at all.
        "conan" if p.namespace.is_some() != p.qualifiers.contains_key("channel") => {
            return Err(
                "a conan purl has a namespace exactly when it has a channel qualifier".into(),
            );
        }
        _ => {}
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    let end = (i + 3).min(bytes.len());
                    return Err(format!(
                        "bad percent-encoding {:?}",
                        String::from_utf8_lossy(&bytes[i..end])
                    ));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes are not UTF-8".to_string())
}

/// Percent-encodes everything but the spec's unreserved set. The colon is
/// never encoded (ECMA-427: "whether used as a Separator Character or
/// otherwise"), so `1:2.4.47-2+b1` becomes `1:2.4.47-2%2Bb1`.
fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

impl FromStr for Purl {
    type Err = PurlError;

    /// Parses right to left as the spec's "how to parse" says: subpath,
    /// qualifiers, scheme, type, version, name, namespace.
    fn from_str(input: &str) -> Result<Purl, PurlError> {
        let err = |reason: String| PurlError::new(input, reason);

        let (rest, subpath_enc) = match input.rfind('#') {
            Some(i) => (&input[..i], Some(&input[i + 1..])),
            None => (input, None),
        };
        let (rest, qualifiers_enc) = match rest.rfind('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };

        let scheme_ok = rest.len() >= 4 && rest.as_bytes()[..4].eq_ignore_ascii_case(b"pkg:");
        if !scheme_ok {
            return Err(err("must start with the scheme \"pkg:\"".into()));
        }
        let rest = rest[4..].trim_start_matches('/');
        let Some((ty, rest)) = rest.split_once('/') else {
            return Err(err("expected TYPE/NAME after \"pkg:\"".into()));
        };
        let ty = ty.to_ascii_lowercase();
        check_type(&ty).map_err(err)?;

        // The version is the part after '@' in the last segment: an
        // unencoded '@' earlier (npm scope "@babel/core") is not a version.
        let rest = rest.trim_end_matches('/');
        let (ns_enc, last) = match rest.rfind('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => ("", rest),
        };
        let (name_enc, version_enc) = match last.rfind('@') {
            Some(i) => (&last[..i], Some(&last[i + 1..])),
            None => (last, None),
        };

        // Slashes around the name are not significant (a decoded "%2Fa"
        // would otherwise print as "a" and not round-trip).
        let name = percent_decode(name_enc)
            .map_err(err)?
            .trim_matches('/')
            .to_string();
        if name.is_empty() {
            return Err(err("the name is required".into()));
        }
        let version = match version_enc {
            Some(v) => Some(percent_decode(v).map_err(err)?).filter(|v| !v.is_empty()),
            None => None,
        };

        let mut segments = Vec::new();
        for seg in ns_enc.split('/').filter(|s| !s.is_empty()) {
            let seg = percent_decode(seg).map_err(err)?;
            if seg.contains('/') {
                return Err(err("a namespace segment contains an encoded '/'".into()));
            }
            segments.push(seg);
        }
        let namespace = (!segments.is_empty()).then(|| segments.join("/"));

        let mut qualifiers = BTreeMap::new();
        if let Some(q) = qualifiers_enc {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(err(format!(
                        "qualifier {:?} has no '='",
                        crate::text::excerpt(pair)
                    )));
                };
                let key = key.to_ascii_lowercase();
                check_qualifier_key(&key).map_err(err)?;
                let value = percent_decode(value).map_err(err)?;
                if value.is_empty() {
                    continue;
                }
                if qualifiers.insert(key.clone(), value).is_some() {
                    return Err(err(format!("qualifier key {key:?} appears twice")));
                }
            }
        }

        let subpath = match subpath_enc {
            Some(s) => {
                let mut segs = Vec::new();
                for seg in s.split('/') {
                    let seg = percent_decode(seg).map_err(err)?;
                    if seg.is_empty() || seg == "." || seg == ".." {
                        continue;
                    }
                    if seg.contains('/') {
                        return Err(err("a subpath segment contains an encoded '/'".into()));
                    }
                    segs.push(seg);
                }
                (!segs.is_empty()).then(|| segs.join("/"))
            }
            None => None,
        };

        let mut purl = Purl {
            ty,
            namespace,
            name,
            version,
            qualifiers,
            subpath,
        };
        purl.normalize();
        check_type_rules(&purl).map_err(err)?;
        Ok(purl)
    }
}

impl fmt::Display for Purl {
    /// The canonical form. Normalisation is applied again here so a purl
    /// assembled field by field still prints canonically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.ty.to_ascii_lowercase();
        let mut out = String::with_capacity(64);
        out.push_str("pkg:");
        out.push_str(&ty);
        out.push('/');
        if let Some(ns) = &self.namespace {
            let ns = normalize_namespace(&ty, ns);
            let mut first = true;
            for seg in ns.split('/').filter(|s| !s.is_empty()) {
                if !first {
                    out.push('/');
                }
                first = false;
                encode_into(&mut out, seg);
            }
            if !first {
                out.push('/');
            }
        }
        encode_into(&mut out, &normalize_name(&ty, self.name.trim_matches('/')));
        if let Some(v) = self.version.as_deref().filter(|v| !v.is_empty()) {
            out.push('@');
            encode_into(&mut out, &normalize_version(&ty, v));
        }
        let mut quals: Vec<(String, &str)> = self
            .qualifiers
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        quals.sort();
        for (i, (k, v)) in quals.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            encode_into(&mut out, v);
        }
        if let Some(sp) = &self.subpath {
            let mut first = true;
            for seg in sp
                .split('/')
                .filter(|s| !s.is_empty() && *s != "." && *s != "..")
            {
                out.push(if first { '#' } else { '/' });
                first = false;
                encode_into(&mut out, seg);
            }
        }
        f.write_str(&out)
    }
}

impl Serialize for Purl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Purl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_plus_and_at_but_not_colon() {
        let p: Purl =
            "pkg:deb/debian/bsdutils@1:2.29.2-1+deb9u1?upstream=util-linux%402.29.2-1%2Bdeb9u1"
                .parse()
                .unwrap();
        assert_eq!(p.version.as_deref(), Some("1:2.29.2-1+deb9u1"));
        assert_eq!(p.qualifier("upstream"), Some("util-linux@2.29.2-1+deb9u1"));
        assert_eq!(
            p.to_string(),
            "pkg:deb/debian/bsdutils@1:2.29.2-1%2Bdeb9u1?upstream=util-linux%402.29.2-1%2Bdeb9u1"
        );
        assert_eq!(p.upstream(), Some(("util-linux", Some("2.29.2-1+deb9u1"))));
    }

    #[test]
    fn source_package_dialects() {
        let src = |text: &str| {
            let p: Purl = text.parse().unwrap();
            p.source_package()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
        };
        let pair = |n: &str, v: Option<&str>| Some((n.to_string(), v.map(str::to_string)));
        assert_eq!(
            src("pkg:deb/debian/libssl3@3.0.11-1?source=openssl&source_version=3.0.11-1"),
            pair("openssl", Some("3.0.11-1"))
        );
        assert_eq!(
            src("pkg:deb/debian/libssl3@3.0.11-1?source=openssl%20%283.0.11-1%29"),
            pair("openssl", Some("3.0.11-1"))
        );
        assert_eq!(
            src("pkg:deb/debian/libssl3@3.0.11-1?source=openssl"),
            pair("openssl", None)
        );
        assert_eq!(
            src("pkg:deb/debian/libssl3@1?source=x&upstream=openssl%403.0.11-1"),
            pair("openssl", Some("3.0.11-1"))
        );
        assert_eq!(
            src("pkg:apk/alpine/libcrypto3@3.1.4-r0?origin=openssl"),
            pair("openssl", None)
        );
        assert_eq!(
            src("pkg:rpm/rhel/openssh-clients@5.3p1?sourcerpm=openssh-5.3p1-124.el6_10.src.rpm"),
            pair("openssh-5.3p1-124.el6_10.src.rpm", None)
        );
        // Each qualifier belongs to its type; others name no source.
        assert_eq!(src("pkg:apk/alpine/a@1?source=b"), None);
        assert_eq!(src("pkg:deb/debian/a@1?origin=b"), None);
        assert_eq!(src("pkg:npm/a@1?upstream=b"), None);
        assert_eq!(src("pkg:deb/debian/a@1?source=%20%281.0%29"), None);
    }

    #[test]
    fn new_normalises() {
        let p = Purl::new("PyPI", None, "Django_Package", Some("1.0")).unwrap();
        assert_eq!(p.to_string(), "pkg:pypi/django-package@1.0");
        assert!(Purl::new("3x", None, "a", None).is_err());
        assert!(Purl::new("npm", None, "", None).is_err());
    }
}
