//! Parsers of outside input: package URLs, SBOMs (CycloneDX, SPDX), OS
//! package databases (dpkg status, apk installed), os-release and OSV
//! advisories. Everything here is pure (bytes in, plain data out) and every
//! failure is a [`FormatError`] that names the format and the place.
//!
//! Nothing in this crate panics on input: malformed data is an error, data
//! that is merely incomplete (an apk record without a version, SBOM
//! components without a purl) is skipped with a [`Warning`].

pub mod apk;
pub mod cyclonedx;
pub mod dpkg;
mod error;
pub mod inventory;
pub mod os_release;
pub mod osv;
pub mod purl;
mod sbom;
pub mod spdx;
mod text;
pub mod vex;

pub use error::{FormatError, Location};
pub use inventory::{Format, Hint, Inventory, Warning, detect, parse, parse_json_value};
pub use os_release::OsRelease;
pub use osv::Advisory;
pub use purl::{Purl, PurlError};
