//! The one error type of the bus, with kinds a caller can match: the server
//! turns [`BusError::is_unavailable`] into 503, a refused payload into 413,
//! and everything else into a generic internal error. Messages never carry
//! the credentials of the bus URL.

use thiserror::Error;

/// Why a bus operation failed.
#[derive(Debug, Error)]
pub enum BusError {
    /// The configuration given at start is unusable (prefix, URL, limits,
    /// a server without JetStream). Not retryable: fix the configuration.
    #[error("bus configuration: {0}")]
    Config(String),

    /// The bus did not answer in time, or the connection is down, or
    /// JetStream is not serving the stream right now. Retryable; the
    /// server answers 503.
    #[error("the bus is unavailable ({op}): {reason}")]
    Unavailable { op: &'static str, reason: String },

    /// The payload is over the bus's cap; nothing was sent.
    #[error("{what} of {size} bytes is over the bus limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },

    /// The work queue holds its maximum of jobs or bytes and refuses new
    /// ones (it never drops queued work to make room). Retryable later.
    #[error("the work queue {stream} is full ({reason})")]
    Full { stream: String, reason: String },

    /// A stream or consumer of this prefix exists with a configuration this
    /// build cannot use (another retention, storage or subject): another
    /// program or version owns the names, or the prefix is shared by
    /// mistake.
    #[error("{name} exists with an incompatible configuration: {detail}")]
    Incompatible { name: String, detail: String },

    /// An id or tenant the caller passed cannot be carried (empty, too long,
    /// or with characters a header cannot hold).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// JetStream refused the operation for another reason.
    #[error("the bus refused {op}: {reason}")]
    Server { op: &'static str, reason: String },
}

/// What kind of failure, for callers that map errors in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusErrorKind {
    Config,
    Unavailable,
    TooLarge,
    Full,
    Incompatible,
    Invalid,
    Server,
}

impl BusError {
    pub fn kind(&self) -> BusErrorKind {
        match self {
            BusError::Config(_) => BusErrorKind::Config,
            BusError::Unavailable { .. } => BusErrorKind::Unavailable,
            BusError::TooLarge { .. } => BusErrorKind::TooLarge,
            BusError::Full { .. } => BusErrorKind::Full,
            BusError::Incompatible { .. } => BusErrorKind::Incompatible,
            BusError::Invalid { .. } => BusErrorKind::Invalid,
            BusError::Server { .. } => BusErrorKind::Server,
        }
    }

    /// Whether trying again later may succeed and a client should be told
    /// "503, retry": the bus is down or slow, or the work queue is full.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BusError::Unavailable { .. } | BusError::Full { .. })
    }
}

/// Removes every secret (user names, passwords, tokens of the bus URL) from a
/// message before it becomes part of an error or a log line.
pub(crate) fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_every_secret() {
        let secrets = vec!["alice".to_string(), "s3cr3t".to_string(), String::new()];
        assert_eq!(
            redact("auth failed for alice:s3cr3t@host", &secrets),
            "auth failed for ***:***@host"
        );
    }

    #[test]
    fn unavailable_and_full_are_retryable() {
        let down = BusError::Unavailable {
            op: "publish",
            reason: "timed out".into(),
        };
        let full = BusError::Full {
            stream: "p_WORK".into(),
            reason: "maximum messages exceeded".into(),
        };
        let big = BusError::TooLarge {
            what: "job",
            size: 2,
            max: 1,
        };
        assert!(down.is_unavailable() && full.is_unavailable() && !big.is_unavailable());
        assert_eq!(big.kind(), BusErrorKind::TooLarge);
    }
}
