//! Exit codes scripts can rely on, and how failures are printed.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure of patchline or its environment (IO, database) |
//! | 2 | usage error (unknown command or flag, bad flag value, missing argument) — clap's code |
//! | 3 | input rejected (malformed file, invalid artifact, cycle...): nothing changed |
//! | 4 | not found (unknown artifact, advisory or tenant id) |
//! | 5 | the data directory is in use by another patchline process (writes) |
//! | 6 | no catalog at the data directory (reads never create one) |
//! | 7 | partial success: some inputs were rejected, the others were applied |
//! | 8 | `--fail-on`: a finding shown is rated at or above the level given (the answer is printed whole first) |
//!
//! README.md has the same table; `tests/hardening.rs` checks each code.

use std::process::ExitCode;

use patchline_core::CatalogError;
use patchline_engine::EngineError;
use patchline_store::StoreError;

pub const INTERNAL: u8 = 1;
pub const REJECTED: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const BUSY: u8 = 5;
pub const NO_CATALOG: u8 = 6;
pub const PARTIAL: u8 = 7;
pub const FINDINGS: u8 = 8;

/// A command's failure: what to print and which code to exit with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn rejected(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: REJECTED,
            error: error.into(),
        }
    }

    pub fn not_found(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: NOT_FOUND,
            error: error.into(),
        }
    }

    /// Some inputs were applied, others rejected.
    pub fn partial(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: PARTIAL,
            error: error.into(),
        }
    }

    /// `--fail-on` found what it looks for.
    pub fn findings(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: FINDINGS,
            error: error.into(),
        }
    }

    pub fn report(self) -> ExitCode {
        if self.code == FINDINGS {
            // Not an error of the command: what the gate looked for.
            eprintln!("{:#}", self.error);
            return ExitCode::from(self.code);
        }
        eprintln!("error: {:#}", self.error);
        ExitCode::from(self.code)
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        let code = match &e {
            EngineError::Rejected {
                error: CatalogError::UnknownArtifact(_),
                ..
            } => NOT_FOUND,
            EngineError::Rejected { .. }
            | EngineError::Advisory { .. }
            | EngineError::Invalid(_)
            | EngineError::Forbidden(_) => REJECTED,
            EngineError::NotFound { .. } | EngineError::Alias { .. } => NOT_FOUND,
            EngineError::Store(StoreError::NoCatalog(_)) => NO_CATALOG,
            EngineError::Store(StoreError::Busy(_)) => BUSY,
            EngineError::Store(_) => INTERNAL,
            EngineError::Busy(_) => BUSY,
        };
        Failure {
            code,
            error: e.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            code: INTERNAL,
            error,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure {
            code: INTERNAL,
            error: error.into(),
        }
    }
}
