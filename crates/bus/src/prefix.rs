//! The deployment's name on the bus (`--bus-prefix`), and every stream,
//! consumer and subject name derived from it. Two deployments with
//! different prefixes share no name, so they never see each other's
//! messages on one NATS server.

use crate::BusError;
use std::fmt;
use std::str::FromStr;

/// Longest accepted prefix; stream names stay well under JetStream's limits
/// (and the 255-byte file names of the store directory).
pub const PREFIX_MAX_CHARS: usize = 32;

/// A validated prefix: 1 to [`PREFIX_MAX_CHARS`] characters of
/// `[A-Za-z0-9_-]`, which are valid in stream names, consumer names and
/// subject tokens alike (no `.`, `*`, `>`, space or path separator).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusPrefix(String);

impl BusPrefix {
    pub fn new(name: &str) -> Result<BusPrefix, BusError> {
        let bad = |why: &str| {
            BusError::Config(format!(
                "invalid bus prefix {name:?}: {why} (use 1-{PREFIX_MAX_CHARS} characters of A-Z, a-z, 0-9, '_' and '-')"
            ))
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.chars().count() > PREFIX_MAX_CHARS {
            return Err(bad("it is too long"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(bad(&format!("{c:?} is not allowed")));
        }
        Ok(BusPrefix(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The committed-changes stream, `<prefix>_CHANGES`.
    pub fn changes_stream(&self) -> String {
        format!("{}_CHANGES", self.0)
    }

    /// The delivery work-queue stream, `<prefix>_WORK`.
    pub fn work_stream(&self) -> String {
        format!("{}_WORK", self.0)
    }

    /// The one durable pull consumer every node shares, `<prefix>_WORKERS`.
    pub fn work_consumer(&self) -> String {
        format!("{}_WORKERS", self.0)
    }

    /// Subject of committed changes, `<prefix>.changes`.
    pub fn changes_subject(&self) -> String {
        format!("{}.changes", self.0)
    }

    /// Subject of delivery jobs, `<prefix>.work`.
    pub fn work_subject(&self) -> String {
        format!("{}.work", self.0)
    }

    /// Core NATS subject of live notices, `<prefix>.live`.
    pub fn live_subject(&self) -> String {
        format!("{}.live", self.0)
    }
}

impl FromStr for BusPrefix {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BusPrefix::new(s)
    }
}

impl fmt::Display for BusPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        for good in ["p", "patchline", "prod-eu_1", &"a".repeat(32)] {
            assert!(BusPrefix::new(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"a".repeat(33) as &str, "too long"),
            ("a.b", "'.'"),
            ("a*", "'*'"),
            ("a>", "'>'"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("é", "'é'"),
        ] {
            let err = BusPrefix::new(bad).expect_err(bad).to_string();
            assert!(err.contains(why) && err.contains("A-Z"), "{bad}: {err}");
        }
    }

    #[test]
    fn names_derive_from_the_prefix() {
        let p: BusPrefix = "eu-1".parse().unwrap();
        assert_eq!(p.changes_stream(), "eu-1_CHANGES");
        assert_eq!(p.work_stream(), "eu-1_WORK");
        assert_eq!(p.work_consumer(), "eu-1_WORKERS");
        assert_eq!(p.changes_subject(), "eu-1.changes");
        assert_eq!(p.work_subject(), "eu-1.work");
        assert_eq!(p.live_subject(), "eu-1.live");
    }
}
