//! Version orderings of the package ecosystems patchline evaluates: dpkg
//! (Debian, Ubuntu), apk (Alpine), rpm (Red Hat family), PEP 440 (PyPI) and
//! SemVer 2.0 (npm, crates.io, Go).
//!
//! API CONTRACT (other crates rely on it; keep it):
//!
//! ```ignore
//! pub enum Scheme { Dpkg, Apk, Rpm, Pep440, Semver }
//! impl Scheme { pub fn parse(self, s: &str) -> Result<Version, VersionError>;
//!               pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError>;
//!               pub fn name(self) -> &'static str; }
//! pub struct Version { /* scheme + parsed form + original text */ }
//! impl Version { pub fn scheme(&self) -> Scheme; pub fn as_str(&self) -> &str;
//!                pub fn cmp_same(&self, other: &Version) -> Option<Ordering>; } // None if schemes differ
//! impl Ord for Version  // total order: scheme first, then the scheme's own order
//! pub struct VersionError { scheme, input, reason }  // Display: "invalid dpkg version \"x\": reason"
//! ```
