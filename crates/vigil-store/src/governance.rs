//! What governance keeps: the audit chain and its signed checkpoints, approvals of tool calls,
//! guardrail policies and redaction counts. Hashing and signing live in `vigil-governance`; the
//! store only keeps rows, and refuses a second row with the same chain position (`Conflict`), which
//! is how two writers of one chain notice each other.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vigil_model::{ProjectId, SpanId, TraceId};

use crate::Result;

/// One entry of a project's audit chain, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub project_id: ProjectId,
    pub seq: i64,
    pub time_ns: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The event as canonical JSON; `None` once erased.
    pub content: Option<String>,
    pub content_hash: String,
    /// Not hashed: only used to find the rows a user's erasure must clear.
    #[serde(skip)]
    pub data_subject: Option<String>,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// A signed head of a chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub project_id: ProjectId,
    pub seq: i64,
    pub entry_hash: String,
    pub time_ns: i64,
    pub public_key: String,
    pub signature: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A proposed tool call a policy sent to a human.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub project_id: ProjectId,
    pub trace_id: Option<TraceId>,
    pub parent_span_id: Option<SpanId>,
    /// The `guardrail` span that records this decision in the caller's trace.
    pub span_id: SpanId,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub agent: Option<String>,
    pub environment: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub rule: Option<String>,
    pub reason: String,
    pub status: ApprovalStatus,
    pub created_ns: i64,
    pub expires_ns: i64,
    pub decided_ns: Option<i64>,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
    /// Keyed hash of the exact call approved (tool, canonical arguments, policy version).
    #[serde(skip)]
    pub call_hash: Option<String>,
    pub policy_version: i64,
    /// When the agent redeemed the approval (it may once).
    pub consumed_ns: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredPolicy {
    pub version: i64,
    pub source: String,
    pub updated_ns: i64,
}

#[async_trait]
pub trait GovernanceStore: Send + Sync {
    /// The last entry's position and hash, or `None` for an empty chain.
    async fn audit_head(&self, project: &ProjectId) -> Result<Option<(i64, String)>>;
    /// Appends rows in one transaction; `Error::Conflict` if any position is taken.
    async fn audit_insert(&self, rows: Vec<AuditRow>) -> Result<()>;
    /// Entries with `seq > after`, in order.
    async fn audit_rows(
        &self,
        project: &ProjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AuditRow>>;
    async fn audit_projects(&self) -> Result<Vec<ProjectId>>;
    /// Clears the content of every entry about `data_subject`; returns how many.
    async fn audit_erase(&self, project: &ProjectId, data_subject: &str) -> Result<u64>;
    async fn audit_add_checkpoint(&self, checkpoint: AuditCheckpoint) -> Result<()>;
    async fn audit_checkpoints(&self, project: &ProjectId) -> Result<Vec<AuditCheckpoint>>;

    async fn create_approval(&self, approval: Approval) -> Result<()>;
    async fn get_approval(&self, project: &ProjectId, id: &str) -> Result<Option<Approval>>;
    /// Moves a pending approval to `status`; returns the row as it is afterwards and whether this
    /// call changed it (an approval is decided once; a late answer changes nothing).
    async fn decide_approval(
        &self,
        project: &ProjectId,
        id: &str,
        status: ApprovalStatus,
        by: Option<String>,
        comment: Option<String>,
        now_ns: i64,
    ) -> Result<Option<(Approval, bool)>>;
    async fn list_approvals(
        &self,
        project: &ProjectId,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<Approval>>;
    /// Marks an approved, unredeemed approval as redeemed; `false` if it was already redeemed
    /// (or is not approved): a replay.
    async fn consume_approval(&self, project: &ProjectId, id: &str, now_ns: i64) -> Result<bool>;
    /// Pending approvals whose time ran out, across projects, oldest first.
    async fn overdue_approvals(&self, now_ns: i64, limit: usize) -> Result<Vec<Approval>>;

    async fn put_policy(&self, project: &ProjectId, source: &str) -> Result<StoredPolicy>;
    async fn get_policy(&self, project: &ProjectId) -> Result<Option<StoredPolicy>>;
    /// Cost so far of one trace (`None` when unknown or unpriced).
    async fn trace_cost(&self, project: &ProjectId, trace: &TraceId) -> Result<Option<f64>>;

    async fn add_redaction_counts(&self, rows: Vec<(ProjectId, String, String, u64)>)
        -> Result<()>;
    /// `(day, detector, count)` for days in `[from_day, to_day]` (`YYYY-MM-DD`).
    async fn redaction_counts(
        &self,
        project: &ProjectId,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<(String, String, u64)>>;

    /// Deletes every trace whose user is `user_id` (GDPR erasure); returns traces deleted.
    async fn erase_user_traces(&self, project: &ProjectId, user_id: &str) -> Result<u64>;
}
