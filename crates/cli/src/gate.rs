//! `--severity`, `--ignore-unfixed` and `--fail-on` of `affected`, `show`
//! and `report`: which findings are shown, and whether the command fails
//! a CI gate.
//!
//! A finding is a record affecting an artifact. `--severity LEVEL` keeps
//! records rated LEVEL or higher; an unrated record (no severity the
//! record states can be read) is `unknown`, the lowest level, so it is
//! kept only by `--severity unknown` — and every answer says how many
//! records a filter left out, never an empty list that looks clean.
//! `--ignore-unfixed` drops component hits with no fixed version (a
//! failure, which has no component, is kept). `--fail-on LEVEL` exits
//! with [`crate::exit::FINDINGS`] when a finding left after the filters is
//! rated LEVEL or higher (`unknown`: any finding).

use std::borrow::Cow;

use clap::ValueEnum;
use patchline_core::ComponentHit;
use patchline_core::notice::Severity;

/// A level of `--severity` and `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Level {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::None => "none",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn of(severity: Option<Severity>) -> Level {
        match severity {
            None => Level::Unknown,
            Some(Severity::None) => Level::None,
            Some(Severity::Low) => Level::Low,
            Some(Severity::Medium) => Level::Medium,
            Some(Severity::High) => Level::High,
            Some(Severity::Critical) => Level::Critical,
        }
    }

    /// Is a record of `severity` at this level or higher?
    pub fn admits(self, severity: Option<Severity>) -> bool {
        Level::of(severity) >= self
    }
}

/// The three flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gate {
    pub severity: Option<Level>,
    pub ignore_unfixed: bool,
    pub fail_on: Option<Level>,
}

impl Gate {
    /// Does `--severity` keep a record of this severity?
    pub fn keeps(&self, severity: Option<Severity>) -> bool {
        self.severity.is_none_or(|l| l.admits(severity))
    }

    /// The hits `--ignore-unfixed` keeps (all of them without it).
    pub fn hits<'a>(&self, hits: &'a [ComponentHit]) -> Cow<'a, [ComponentHit]> {
        if !self.ignore_unfixed || hits.iter().all(|h| !unfixed(h)) {
            return Cow::Borrowed(hits);
        }
        Cow::Owned(hits.iter().filter(|h| !unfixed(h)).cloned().collect())
    }

    /// Does a finding of this severity fail the gate?
    pub fn fails(&self, severity: Option<Severity>) -> bool {
        self.fail_on.is_some_and(|l| l.admits(severity))
    }

    /// Is any filter on?
    pub fn filters(&self) -> bool {
        self.severity.is_some() || self.ignore_unfixed
    }

    /// The filters as the JSON answers state them.
    pub fn doc(&self, left_out: usize) -> serde_json::Value {
        serde_json::json!({
            "severity": self.severity.map(Level::as_str),
            "ignore_unfixed": self.ignore_unfixed,
            "left_out": left_out,
        })
    }
}

/// A component hit without a fixed version.
fn unfixed(h: &ComponentHit) -> bool {
    h.component.is_some() && h.fixed.is_none()
}

/// How a rating reads in text: `high (cvss_v3 7.5)`, `unknown`.
pub fn rating_text(rating: Option<&patchline_core::severity::Rating>) -> String {
    match rating {
        None => "unknown".to_string(),
        Some(r) => match r.score {
            Some(s) => format!("{} ({} {s:.1})", r.level.as_str(), r.source.as_str()),
            None => format!("{} ({} {})", r.level.as_str(), r.source.as_str(), r.vector),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_admit_what_is_at_or_above_them() {
        assert!(Level::High.admits(Some(Severity::Critical)));
        assert!(Level::High.admits(Some(Severity::High)));
        assert!(!Level::High.admits(Some(Severity::Medium)));
        assert!(!Level::None.admits(None), "unrated is below none");
        assert!(Level::Unknown.admits(None));
        assert!(Level::Unknown.admits(Some(Severity::None)));
        let gate = Gate {
            severity: Some(Level::Medium),
            ignore_unfixed: false,
            fail_on: Some(Level::Critical),
        };
        assert!(gate.keeps(Some(Severity::Medium)) && !gate.keeps(None));
        assert!(gate.fails(Some(Severity::Critical)) && !gate.fails(Some(Severity::High)));
        assert!(!Gate::default().fails(Some(Severity::Critical)));
    }
}
