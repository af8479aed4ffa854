//! Storage: the interface every backend implements, and the embedded SQLite backend.
//!
//! The API, ingest pipeline and CLI talk only to the traits in `traces` and `projects`, so a
//! PostgreSQL backend can be added beside `sqlite/` without touching them.

mod error;
pub mod gateway;
pub mod governance;
pub mod keys;
pub mod projects;
pub mod quality;
pub mod query;
pub mod rollup;
pub mod sink;
pub mod sqlite;
pub mod summary;
pub mod traces;
pub mod users;

#[cfg(test)]
mod conformance;

pub use error::{Error, Result};
pub use gateway::{GatewayEvent, GatewayKeyInfo, GatewayKeySpec, GatewayStore, SpendDelta};
pub use governance::{
    Approval, ApprovalStatus, AuditCheckpoint, AuditRow, GovernanceStore, StoredPolicy,
};
pub use projects::{ApiKeyInfo, NewApiKey, ProjectRow, ProjectStore, Scope};
pub use quality::{
    AnnotationCandidate, DatasetItem, DatasetRow, EvalJob, EvaluatorRow, ExperimentResult,
    ExperimentRun, FailureModeChange, FailureModeEvent, FailureModeRow, FailureModeSpec,
    IngestVerdicts, QualityStore, QueueStats, RateWindow, ScoreRow, ScoreSource,
};
pub use query::*;
pub use sqlite::{Durability, SqliteSettings, SqliteStore};
pub use traces::TraceStore;
pub use users::UserRow;

/// Everything a node needs from storage, as one object.
pub trait Store: TraceStore + ProjectStore + GatewayStore + GovernanceStore + QualityStore {}
impl<T: TraceStore + ProjectStore + GatewayStore + GovernanceStore + QualityStore> Store for T {}
