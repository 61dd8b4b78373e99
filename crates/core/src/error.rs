//! Errors of the core, as kinds callers can match: the server maps them to
//! status codes, the CLI to exit codes and messages.

use thiserror::Error;

/// Why a catalog change was refused. Every refusal leaves the catalog as it
/// was before the change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogError {
    #[error("invalid {what} {id:?}: {reason}")]
    InvalidId {
        what: &'static str,
        id: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("artifact {artifact}: unknown parent {parent}")]
    UnknownParent { artifact: String, parent: String },
    #[error("unknown artifact {0}")]
    UnknownArtifact(String),
    #[error("artifact {artifact}: {kind} cannot be {relation} {parent_kind} ({parent}){hint}")]
    RelationMismatch {
        artifact: String,
        kind: &'static str,
        relation: &'static str,
        parent: String,
        parent_kind: &'static str,
        hint: String,
    },
    #[error("artifact {artifact}: making {parent} its parent would create a cycle")]
    Cycle { artifact: String, parent: String },
    #[error("artifact {artifact} already exists with different content ({detail})")]
    Conflict { artifact: String, detail: String },
    #[error("artifact {artifact}: component {purl:?} is invalid: {reason}")]
    InvalidComponent {
        artifact: String,
        purl: String,
        reason: String,
    },
    #[error("artifact {artifact} still has {children} children; remove or re-parent them first")]
    HasChildren { artifact: String, children: usize },
    #[error("artifact {artifact}: lineage deeper than {depth_max} levels")]
    TooDeep { artifact: String, depth_max: usize },
}

/// Why an advisory or failure was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdvisoryError {
    #[error("advisory {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("advisory {id}: the id is already used by a {other}")]
    IdTaken { id: String, other: &'static str },
    #[error("failure {id}: unknown artifact {artifact}")]
    UnknownArtifact { id: String, artifact: String },
}
