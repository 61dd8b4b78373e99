//! The one error type of the crate, [`FormatError`], and where it points
//! ([`Location`]): a line (and column) for text formats, a structural path
//! such as `components[3].purl` for documents, or both.

use std::fmt;

/// Where in the input a problem is. Any part may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    /// 1-based line number.
    pub line: Option<usize>,
    /// 1-based column, only together with `line`.
    pub column: Option<usize>,
    /// Structural path, e.g. `components[3].purl` or
    /// `affected[0].ranges[1].events[2]`.
    pub path: Option<String>,
}

impl Location {
    pub fn line(line: usize) -> Self {
        Location {
            line: Some(line),
            ..Location::default()
        }
    }

    pub fn line_column(line: usize, column: usize) -> Self {
        Location {
            line: Some(line),
            column: Some(column),
            path: None,
        }
    }

    pub fn path(path: impl Into<String>) -> Self {
        Location {
            path: Some(path.into()),
            ..Location::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.line.is_none() && self.path.is_none()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = match (self.line, self.column) {
            (Some(l), Some(c)) => Some(format!("line {l}, column {c}")),
            (Some(l), None) => Some(format!("line {l}")),
            _ => None,
        };
        match (&self.path, line) {
            (Some(p), Some(l)) => write!(f, "{p} ({l})"),
            (Some(p), None) => f.write_str(p),
            (None, Some(l)) => f.write_str(&l),
            (None, None) => Ok(()),
        }
    }
}

/// A failure to read outside input: which format, where, and what.
///
/// Displays as `FORMAT: LOCATION: MESSAGE`, e.g.
/// `dpkg-status: line 12: expected "Field: value" ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FormatError {
    /// Short format name: `purl`, `purls`, `dpkg-status`, `apk-installed`,
    /// `cyclonedx-json`, `cyclonedx-xml`, `spdx-json`, `os-release`,
    /// `osv-json`, `osv-yaml`, `format`.
    pub format: &'static str,
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) if !loc.is_empty() => write!(f, "{}: {}: {}", self.format, loc, self.message),
            _ => write!(f, "{}: {}", self.format, self.message),
        }
    }
}

impl FormatError {
    pub fn new(format: &'static str, message: impl Into<String>) -> Self {
        FormatError {
            format,
            location: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn at_line(self, line: usize) -> Self {
        self.at(Location::line(line))
    }

    pub fn at_path(self, path: impl Into<String>) -> Self {
        self.at(Location::path(path))
    }

    /// A serde_json error, with its line and column. serde_json appends
    /// " at line L column C" to its message; that part moves into the
    /// location so it is not said twice.
    pub(crate) fn from_json(format: &'static str, err: &serde_json::Error) -> Self {
        Self::from_json_with_path(format, err, None)
    }

    pub(crate) fn from_json_with_path(
        format: &'static str,
        err: &serde_json::Error,
        path: Option<String>,
    ) -> Self {
        let mut message = err.to_string();
        let mut location = Location {
            path,
            ..Location::default()
        };
        if err.line() > 0 {
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            if message.ends_with(&suffix) {
                message.truncate(message.len() - suffix.len());
            }
            location.line = Some(err.line());
            location.column = Some(err.column());
        }
        if err.is_eof() {
            message = format!("truncated document: {message}");
        }
        FormatError::new(format, message).at(location)
    }

    /// A serde_path_to_error-wrapped serde_json error: the path plus the
    /// line and column.
    pub(crate) fn from_json_path(
        format: &'static str,
        err: &serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        Self::from_json_with_path(format, err.inner(), path_string(err.path()))
    }

    /// A serde_norway (YAML) error, optionally wrapped with its path.
    pub(crate) fn from_yaml(
        format: &'static str,
        err: &serde_norway::Error,
        path: Option<String>,
    ) -> Self {
        let mut message = err.to_string();
        // serde_norway already prefixes the path it knows; it is in the
        // location, so it is not repeated in the message.
        if let Some(p) = &path
            && let Some(rest) = message.strip_prefix(&format!("{p}: "))
        {
            message = rest.to_string();
        }
        let mut location = Location {
            path,
            ..Location::default()
        };
        if let Some(loc) = err.location() {
            // serde_norway also appends the position to its message; strip
            // it for the same reason as for JSON.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(i) = message.find(&suffix) {
                message.replace_range(i..i + suffix.len(), "");
            }
            location.line = Some(loc.line());
            location.column = Some(loc.column());
        }
        FormatError::new(format, message).at(location)
    }
}

/// serde_path_to_error renders the root as "."; that says nothing.
pub(crate) fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    if s.is_empty() || s == "." {
        None
    } else {
        Some(s)
    }
}
