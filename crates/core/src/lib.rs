//! Pure domain of patchline: ids and artifacts, the lineage catalog,
//! inventories stored as deltas, OSV advisories compiled for evaluation,
//! and propagation of advisories and failures down the lineage. No IO, no
//! async, no SQL, no HTTP: everything here is plain data and functions.

pub mod advisory;
pub mod catalog;
pub mod clock;
pub mod doc;
pub mod ecosystem;
pub mod error;
pub mod inventory;
pub mod model;
pub mod notice;
pub mod propagate;
pub mod remedy;
pub mod severity;
pub mod text;
pub mod timestamp;

pub use advisory::{AdvIdx, Advisory, AdvisoryDb, Failure, Published, Record};
pub use catalog::{Actor, ArtIdx, Catalog, Changes, Checkpoint, Mode, Node, Outcome, TenantIdx};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AdvisoryError, CatalogError};
pub use model::{AdvisoryId, ArtifactId, ArtifactSpec, Kind, Relation, TenantId, Visibility};
pub use propagate::{ArtifactMatch, ComponentHit, Impact, Inheritance};
