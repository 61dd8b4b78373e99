//! Parsers of outside input: package URLs, SBOMs (CycloneDX, SPDX), OS
//! package databases (dpkg status, apk installed), os-release and OSV
//! advisories. Everything here is pure (bytes in, plain data out) and every
//! failure is a [`FormatError`] that names the format and the place.
