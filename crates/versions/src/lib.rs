//! Version orderings of the package ecosystems patchline evaluates: dpkg
//! (Debian, Ubuntu), apk (Alpine and the apk distributions), rpm (Red Hat
//! family and the other rpm distributions), PEP 440 (PyPI), SemVer 2.0
//! (npm, crates.io, Go, Hex, …), Maven, RubyGems, NuGet, Packagist, Pub,
//! Hackage and CRAN.
//!
//! This module owns the public surface ([`Scheme`], [`Version`],
//! [`VersionError`]) and the small helpers the scheme modules share (byte
//! spans into the original text, numeric comparison of digit runs). Each
//! scheme's parsing and ordering rules live in their own module.
//!
//! API CONTRACT (other crates rely on it; keep it):
//!
//! ```text
//! pub enum Scheme { Dpkg, Apk, Rpm, Pep440, Semver, Maven, RubyGems, NuGet, Packagist,
//!                   Pub, Hackage, Cran }
//! impl Scheme { pub fn parse(self, s: &str) -> Result<Version, VersionError>;
//!               pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError>;
//!               pub fn name(self) -> &'static str; }
//! pub struct Version { /* scheme + parsed form + original text */ }
//! impl Version { pub fn scheme(&self) -> Scheme; pub fn as_str(&self) -> &str;
//!                pub fn cmp_same(&self, other: &Version) -> Option<Ordering>; } // None if schemes differ
//! impl Ord for Version  // total order: scheme first, then the scheme's own order
//! pub struct VersionError { scheme, input, reason }  // Display: "invalid dpkg version \"x\": reason"
//! ```
//!
//! Design notes:
//! - A [`Version`] stores its original text once and a parsed form made of
//!   byte spans into that text, so comparing two versions never allocates.
//! - `Eq` means "compares `Equal`" (`1.0 == 1.0.0` in PEP 440, `0:1.0-0 ==
//!   1.0` in dpkg), and `Hash` hashes a normalised form so that it agrees.
//! - Every scheme's order is a total preorder (antisymmetric and transitive)
//!   even on odd inputs, because sorting and B-tree lookups rely on that.
//!
//! ```
//! use patchline_versions::Scheme;
//! use std::cmp::Ordering;
//!
//! assert_eq!(Scheme::Dpkg.compare("1.0~rc1", "1.0").unwrap(), Ordering::Less);
//! assert_eq!(Scheme::Pep440.parse("1.0").unwrap(), Scheme::Pep440.parse("1.0.0").unwrap());
//! assert!(Scheme::Dpkg.parse("1.0-").is_err());
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

mod apk;
mod dpkg;
mod maven;
mod numeric;
mod packagist;
mod pep440;
mod rpm;
mod rubygems;
mod semver;

/// A version ordering: how strings of one ecosystem are parsed and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    /// Debian and Ubuntu packages, exactly as `dpkg --compare-versions`.
    Dpkg,
    /// Alpine packages (apk-tools rules, with its fallbacks for odd strings).
    Apk,
    /// Red Hat family packages: `epoch:version-release` with `rpmvercmp`.
    Rpm,
    /// PyPI: PEP 440, plus pre-PEP 440 "legacy" versions sorted before all
    /// valid ones.
    Pep440,
    /// SemVer 2.0 precedence, lenient on a leading `v` and missing parts.
    Semver,
    /// Maven: the version order specification, tokens and null padding.
    Maven,
    /// RubyGems: `Gem::Version` segments, pre-releases before releases.
    RubyGems,
    /// NuGet: SemVer with four release numbers, case-insensitive labels.
    NuGet,
    /// Packagist (Composer): PHP's `version_compare`.
    Packagist,
    /// Pub (Dart): SemVer, build metadata ordering equal versions.
    Pub,
    /// Hackage (Haskell): lists of numbers, the longer winning a tie.
    Hackage,
    /// CRAN (R): lists of numbers split at `.` and `-`, the longer winning
    /// a tie.
    Cran,
}

impl Scheme {
    /// Every scheme, in the order `Version`'s `Ord` sorts them.
    pub const ALL: [Scheme; 12] = [
        Scheme::Dpkg,
        Scheme::Apk,
        Scheme::Rpm,
        Scheme::Pep440,
        Scheme::Semver,
        Scheme::Maven,
        Scheme::RubyGems,
        Scheme::NuGet,
        Scheme::Packagist,
        Scheme::Pub,
        Scheme::Hackage,
        Scheme::Cran,
    ];

    /// Short lower-case name used in messages (`"dpkg"`, `"apk"`, `"rpm"`,
    /// `"pep440"`, `"semver"`, `"maven"`, `"rubygems"`, `"nuget"`,
    /// `"packagist"`, `"pub"`, `"hackage"`, `"cran"`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Dpkg => "dpkg",
            Scheme::Apk => "apk",
            Scheme::Rpm => "rpm",
            Scheme::Pep440 => "pep440",
            Scheme::Semver => "semver",
            Scheme::Maven => "maven",
            Scheme::RubyGems => "rubygems",
            Scheme::NuGet => "nuget",
            Scheme::Packagist => "packagist",
            Scheme::Pub => "pub",
            Scheme::Hackage => "hackage",
            Scheme::Cran => "cran",
        }
    }

    /// Parses `s` as a version of this scheme.
    ///
    /// Fails on the empty string, on any whitespace or control character
    /// (callers trim inventory fields; an embedded space means two fields ran
    /// together), and on what the scheme itself cannot read (see each
    /// scheme's module). Never panics.
    pub fn parse(self, s: &str) -> Result<Version, VersionError> {
        let err = |reason: String| VersionError {
            scheme: self,
            input: s.to_owned(),
            reason,
        };
        check_common(s).map_err(err)?;
        let repr = match self {
            Scheme::Dpkg => dpkg::DpkgVersion::parse(s).map(Repr::Dpkg),
            Scheme::Apk => Ok(Repr::Apk(apk::ApkVersion::parse(s))),
            Scheme::Rpm => rpm::RpmVersion::parse(s).map(Repr::Rpm),
            Scheme::Pep440 => Ok(Repr::Pep440(pep440::Pep440Version::parse(s))),
            Scheme::Semver => {
                semver::SemverVersion::parse_with(s, semver::Flavor::SEMVER).map(Repr::Semver)
            }
            Scheme::Maven => Ok(Repr::Maven(maven::MavenVersion::parse(s))),
            Scheme::RubyGems => rubygems::RubyGemsVersion::parse(s).map(Repr::RubyGems),
            Scheme::NuGet => {
                semver::NugetVersion::parse_with(s, semver::Flavor::NUGET).map(Repr::NuGet)
            }
            Scheme::Packagist => Ok(Repr::Packagist(packagist::PackagistVersion::parse(s))),
            Scheme::Pub => semver::PubVersion::parse_with(s, semver::Flavor::PUB).map(Repr::Pub),
            Scheme::Hackage => numeric::NumericVersion::parse_hackage(s).map(Repr::Hackage),
            Scheme::Cran => numeric::NumericVersion::parse_cran(s).map(Repr::Cran),
        }
        .map_err(|reason| err(reason.to_owned()))?;
        Ok(Version {
            text: s.into(),
            repr,
        })
    }

    /// Parses both strings and compares them; a shortcut for one-off checks
    /// (parse once and keep the [`Version`] in hot loops).
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        Ok(self.parse(a)?.cmp(&self.parse(b)?))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Rejects what no scheme accepts. Whitespace and control characters are
/// refused everywhere (not only inside) so that `as_str` round-trips exactly
/// and so that two differently padded strings never become two entries.
fn check_common(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty version string".to_owned());
    }
    if let Some((at, c)) = s
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "contains whitespace or control character {c:?} at byte {at}"
        ));
    }
    Ok(())
}

/// A parsed version: the original text plus a scheme-specific parsed form.
///
/// Ordering, equality and hashing follow the scheme's rules (see the crate
/// docs); versions of different schemes order by [`Scheme`] first.
#[derive(Clone)]
pub struct Version {
    text: Box<str>,
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Dpkg(dpkg::DpkgVersion),
    Apk(apk::ApkVersion),
    Rpm(rpm::RpmVersion),
    Pep440(pep440::Pep440Version),
    Semver(semver::SemverVersion),
    Maven(maven::MavenVersion),
    RubyGems(rubygems::RubyGemsVersion),
    NuGet(semver::NugetVersion),
    Packagist(packagist::PackagistVersion),
    Pub(semver::PubVersion),
    Hackage(numeric::NumericVersion),
    Cran(numeric::NumericVersion),
}

impl Version {
    /// The scheme this version was parsed with.
    pub fn scheme(&self) -> Scheme {
        match self.repr {
            Repr::Dpkg(_) => Scheme::Dpkg,
            Repr::Apk(_) => Scheme::Apk,
            Repr::Rpm(_) => Scheme::Rpm,
            Repr::Pep440(_) => Scheme::Pep440,
            Repr::Semver(_) => Scheme::Semver,
            Repr::Maven(_) => Scheme::Maven,
            Repr::RubyGems(_) => Scheme::RubyGems,
            Repr::NuGet(_) => Scheme::NuGet,
            Repr::Packagist(_) => Scheme::Packagist,
            Repr::Pub(_) => Scheme::Pub,
            Repr::Hackage(_) => Scheme::Hackage,
            Repr::Cran(_) => Scheme::Cran,
        }
    }

    /// The original text, exactly as given to [`Scheme::parse`].
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Compares with the scheme's own order; `None` if the schemes differ.
    pub fn cmp_same(&self, other: &Version) -> Option<Ordering> {
        let (a, b) = (&*self.text, &*other.text);
        Some(match (&self.repr, &other.repr) {
            (Repr::Dpkg(x), Repr::Dpkg(y)) => x.cmp(a, y, b),
            (Repr::Apk(x), Repr::Apk(y)) => x.cmp(a, y, b),
            (Repr::Rpm(x), Repr::Rpm(y)) => x.cmp(a, y, b),
            (Repr::Pep440(x), Repr::Pep440(y)) => x.cmp(a, y, b),
            (Repr::Semver(x), Repr::Semver(y)) => x.cmp(a, y, b),
            (Repr::Maven(x), Repr::Maven(y)) => x.cmp(a, y, b),
            (Repr::RubyGems(x), Repr::RubyGems(y)) => x.cmp(a, y, b),
            (Repr::NuGet(x), Repr::NuGet(y)) => x.cmp(a, y, b),
            (Repr::Packagist(x), Repr::Packagist(y)) => x.cmp(a, y, b),
            (Repr::Pub(x), Repr::Pub(y)) => x.cmp(a, y, b),
            (Repr::Hackage(x), Repr::Hackage(y)) => x.cmp(a, y, b),
            (Repr::Cran(x), Repr::Cran(y)) => x.cmp(a, y, b),
            _ => return None,
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_same(other)
            .unwrap_or_else(|| self.scheme().cmp(&other.scheme()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Hash the normalised parsed form, never the text: versions that
        // compare Equal (`1.0` / `1.0.0`) must land in the same bucket.
        self.scheme().hash(state);
        let text = &*self.text;
        match &self.repr {
            Repr::Dpkg(v) => v.hash_norm(text, state),
            Repr::Apk(v) => v.hash_norm(text, state),
            Repr::Rpm(v) => v.hash_norm(text, state),
            Repr::Pep440(v) => v.hash_norm(text, state),
            Repr::Semver(v) => v.hash_norm(text, state),
            Repr::Maven(v) => v.hash_norm(text, state),
            Repr::RubyGems(v) => v.hash_norm(text, state),
            Repr::NuGet(v) => v.hash_norm(text, state),
            Repr::Packagist(v) => v.hash_norm(text, state),
            Repr::Pub(v) => v.hash_norm(text, state),
            Repr::Hackage(v) => v.hash_norm(text, state),
            Repr::Cran(v) => v.hash_norm(text, state),
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({} {:?})", self.scheme().name(), self.text)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a string is not a version of a scheme.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {input:?}: {reason}")]
pub struct VersionError {
    /// The scheme the string was parsed with.
    pub scheme: Scheme,
    /// The rejected string, verbatim.
    pub input: String,
    /// Human-readable cause (for dpkg, dpkg's own wording).
    pub reason: String,
}

/// A byte range of a version's original text. Parsed forms hold spans
/// rather than owned pieces so that a `Version` is one allocation for the
/// text plus a few small arrays, and comparisons only slice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        Span { start, end }
    }

    /// A span of decimal digits with its leading zeros dropped, so that
    /// numeric comparison is "shorter is smaller, else bytewise" and equal
    /// numbers have equal bytes (which keeps hashing simple). Zero becomes
    /// the empty span.
    pub(crate) fn digits(text: &str, start: usize, end: usize) -> Span {
        let bytes = &text.as_bytes()[start..end];
        let zeros = bytes.iter().take_while(|&&b| b == b'0').count();
        Span::new(start + zeros, end)
    }

    pub(crate) fn bytes(self, text: &str) -> &[u8] {
        &text.as_bytes()[self.start..self.end]
    }

    /// The span as text; spans always sit on character boundaries.
    pub(crate) fn as_str(self, text: &str) -> &str {
        &text[self.start..self.end]
    }

    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// Compares two digit runs that have no leading zeros (see [`Span::digits`]).
/// Works for any length, so no version number can overflow.
pub(crate) fn cmp_num(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Feeds a byte string into a hasher with a terminator. 0xFF never occurs in
/// UTF-8, so consecutive fields cannot run into each other.
pub(crate) fn hash_field<H: Hasher>(state: &mut H, bytes: &[u8]) {
    state.write(bytes);
    state.write_u8(0xFF);
}

/// Length of the run of bytes at the start of `bytes` matching `pred`.
pub(crate) fn run_len(bytes: &[u8], pred: impl Fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&b| pred(b)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of(v: &Version) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn common_rejections() {
        for scheme in Scheme::ALL {
            for bad in [
                "", "1 0", " 1", "1\t", "1\n", "1\u{0}", "1\u{7f}", "1\u{a0}",
            ] {
                let err = scheme.parse(bad).unwrap_err();
                assert_eq!(err.scheme, scheme);
                assert_eq!(err.input, bad);
            }
        }
    }

    #[test]
    fn error_display() {
        let err = Scheme::Dpkg.parse("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dpkg version \"a b\": contains whitespace or control character ' ' at byte 1"
        );
        let err = Scheme::Dpkg.parse("1.0-").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dpkg version \"1.0-\": revision number is empty"
        );
    }

    #[test]
    fn version_keeps_text_and_scheme() {
        let v = Scheme::Rpm.parse("1:2.3-4.el9").unwrap();
        assert_eq!(v.as_str(), "1:2.3-4.el9");
        assert_eq!(v.scheme(), Scheme::Rpm);
        assert_eq!(v.to_string(), "1:2.3-4.el9");
        assert_eq!(format!("{v:?}"), "Version(rpm \"1:2.3-4.el9\")");
    }

    #[test]
    fn schemes_order_first_and_cmp_same_refuses_mixing() {
        let d = Scheme::Dpkg.parse("9").unwrap();
        let s = Scheme::Semver.parse("1.0.0").unwrap();
        assert_eq!(d.cmp_same(&s), None);
        assert!(d < s);
        assert_ne!(d, Scheme::Apk.parse("9").unwrap());
    }

    #[test]
    fn equal_versions_hash_equally() {
        let pairs = [
            (Scheme::Pep440, "1.0", "1.0.0"),
            (Scheme::Pep440, "1.0-1", "1.0.post1"),
            (Scheme::Pep440, "1.0+ABC.01", "1.0+abc.1"),
            (Scheme::Pep440, "0.1-Bulbasaur", "0.1-bulbasaur"),
            (Scheme::Dpkg, "0:1.0-0", "1.0"),
            (Scheme::Dpkg, "1.00-00", "1.0"),
            (Scheme::Apk, "1-r01", "1-r1"),
            (Scheme::Rpm, "1.1.αα", "1.1.β"),
            (Scheme::Rpm, "0:1.0", "1_0"),
            (Scheme::Semver, "v1.2", "1.2.0+build"),
            (Scheme::Semver, "1.2.3-01", "1.2.3-1"),
            (Scheme::Maven, "1.0.0", "1"),
            (Scheme::Maven, "1-ga-1", "1-1"),
            (Scheme::Maven, "1.0.0-Alpha01", "1a1"),
            (Scheme::RubyGems, "1.0.a.0", "1.a"),
            (Scheme::RubyGems, "1.00", "1"),
            (Scheme::NuGet, "1.0-BETA", "1.0.0.0-beta"),
            (Scheme::Packagist, "1.0#", "v1.0"),
            (Scheme::Packagist, "1.0-alpha", "1.0.a"),
            (Scheme::Pub, "v1.2.3+b", "1.2.3+b"),
            (Scheme::Hackage, "v1.02", "1.2"),
            (Scheme::Cran, "0.01.0", "0.1-0"),
        ];
        for (scheme, a, b) in pairs {
            let (va, vb) = (scheme.parse(a).unwrap(), scheme.parse(b).unwrap());
            assert_eq!(va, vb, "{scheme} {a} == {b}");
            assert_eq!(hash_of(&va), hash_of(&vb), "{scheme} hash {a} / {b}");
        }
    }

    #[test]
    fn cmp_num_handles_long_numbers() {
        assert_eq!(cmp_num(b"99", b"100"), Ordering::Less);
        assert_eq!(cmp_num(b"", b"1"), Ordering::Less);
        assert_eq!(
            cmp_num(
                b"999999999999999999999999999991",
                b"999999999999999999999999999999"
            ),
            Ordering::Less
        );
    }
}
