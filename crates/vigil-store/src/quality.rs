//! What the quality loop keeps: evaluator definitions (opaque JSON here), the durable evaluation
//! queue and scores.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vigil_model::{ProjectId, SpanId, TraceId};

use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvaluatorRow {
    pub id: String,
    pub project_id: ProjectId,
    pub name: String,
    /// The definition as JSON; `vigil-quality` gives it meaning.
    pub definition: serde_json::Value,
    pub enabled: bool,
    pub cursor: i64,
    pub created_ns: i64,
    pub updated_ns: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalJob {
    pub id: i64,
    pub project_id: ProjectId,
    pub evaluator_id: String,
    pub trace_id: TraceId,
    pub attempts: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    /// Age of the oldest job that could run now but has not (ns), the queue's lag.
    pub oldest_ready_age_ns: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSource {
    Evaluator,
    Human,
    Feedback,
}

impl ScoreSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evaluator => "evaluator",
            Self::Human => "human",
            Self::Feedback => "feedback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Evaluator, Self::Human, Self::Feedback]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Verdicts given to spans as they were ingested, stored in the same transaction as the spans.
#[derive(Clone, Debug, Default)]
pub struct IngestVerdicts {
    pub scores: Vec<ScoreRow>,
    /// Per project, the evaluators that judged every span of it in this write (so the queue need
    /// not read those traces back for them).
    pub judged_by: std::collections::HashMap<vigil_model::ProjectId, Vec<String>>,
    /// Per trace, the trace-scoped evaluators that judged it whole from this write (its export
    /// carried every span of it): marks its chunk carries besides its project's.
    pub judged_whole: std::collections::HashMap<(vigil_model::ProjectId, TraceId), Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreRow {
    pub id: i64,
    pub project_id: ProjectId,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub session_id: Option<String>,
    pub name: String,
    pub value: Option<f64>,
    pub passed: Option<bool>,
    pub label: Option<String>,
    pub reason: Option<String>,
    pub source: ScoreSource,
    pub source_id: Option<String>,
    pub created_ns: i64,
    /// What producing it cost (an LLM judge's call).
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureModeRow {
    pub id: String,
    pub project_id: ProjectId,
    pub name: String,
    pub definition: String,
    pub severity: String,
    pub status: String,
    pub evaluator: Option<String>,
    pub fixed_in: Option<String>,
    pub baseline_rate: Option<f64>,
    pub verified_rate: Option<f64>,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub human_examples: u64,
    pub evaluator_examples: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureModeSpec {
    pub name: String,
    pub definition: String,
    #[serde(default = "medium")]
    pub severity: String,
    /// The evaluator (its score name) that detects this failure mode.
    pub evaluator: Option<String>,
}

fn medium() -> String {
    "medium".into()
}

/// A change to a failure mode; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct FailureModeChange {
    pub status: Option<(String, String)>,
    pub fixed_in: Option<Option<String>>,
    pub baseline_rate: Option<Option<f64>>,
    pub verified_rate: Option<Option<f64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureModeEvent {
    pub time_ns: i64,
    pub from_status: String,
    pub to_status: String,
    pub reason: String,
}

/// Sessions (a trace without a session counts as its own) scored by an evaluator, and how many
/// of them it failed at least once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateWindow {
    pub failing: u64,
    pub sessions: u64,
}

impl RateWindow {
    /// Failing sessions per 1,000 (`None` without any).
    pub fn per_thousand(&self) -> Option<f64> {
        (self.sessions > 0).then(|| self.failing as f64 * 1000.0 / self.sessions as f64)
    }
}

/// A recent trace with the signals that make it worth a human's look.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnnotationCandidate {
    pub trace_id: TraceId,
    pub start_ns: i64,
    pub duration_ms: f64,
    pub cost_usd: Option<f64>,
    pub status: String,
    pub flags: i64,
    pub root_name: String,
    pub session_id: Option<String>,
    /// Names of evaluators that failed it.
    pub failing_evaluators: Vec<String>,
    pub negative_feedback: u64,
    /// LLM-judge scores close to the middle (0.35–0.65): the judge was unsure.
    pub uncertain_judgements: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetItem {
    #[serde(default)]
    pub id: i64,
    pub input: String,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub source_trace: Option<TraceId>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetRow {
    pub id: String,
    pub project_id: ProjectId,
    pub name: String,
    pub created_ns: i64,
    pub items: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub item_id: i64,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    /// Evaluator name → passed.
    pub verdicts: std::collections::BTreeMap<String, bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentRun {
    pub id: String,
    pub project_id: ProjectId,
    pub dataset_id: String,
    pub name: String,
    pub model: String,
    pub prompt: String,
    pub summary: serde_json::Value,
    pub created_ns: i64,
}

#[async_trait]
pub trait QualityStore: Send + Sync {
    /// Creates or replaces the definition of the project's evaluator `name` (its queue position
    /// is kept).
    async fn put_evaluator(
        &self,
        project: &ProjectId,
        name: &str,
        definition: serde_json::Value,
        enabled: bool,
    ) -> Result<EvaluatorRow>;
    async fn list_evaluators(&self, project: Option<&ProjectId>) -> Result<Vec<EvaluatorRow>>;
    /// Queues (once each) the traces that arrived since the evaluator's cursor, up to `limit` and
    /// up to trace row `upto` (`max_trace_ref` as it was a settling delay ago), runnable from
    /// `not_before_ns`; returns how many were queued. A trace whose chunks the evaluator all
    /// judged at ingest (same definition) is not queued.
    async fn eval_enqueue_new(
        &self,
        evaluator_id: &str,
        limit: usize,
        not_before_ns: i64,
        upto: i64,
    ) -> Result<usize>;
    /// The newest trace row's reference (0 when there is none); traces only get larger ones.
    async fn max_trace_ref(&self) -> Result<i64>;
    /// Queues (once each) the traces that started in `[from_ns, to_ns]` (a backfill).
    async fn eval_backfill(&self, evaluator_id: &str, from_ns: i64, to_ns: i64) -> Result<usize>;
    /// Leases up to `limit` runnable jobs (queued and due, or running with an expired lease).
    async fn eval_lease(&self, now_ns: i64, lease_ns: i64, limit: usize) -> Result<Vec<EvalJob>>;
    /// Writes each job's scores (an evaluator scores a target once) and marks the jobs done, in one
    /// transaction.
    async fn eval_finish(&self, jobs: Vec<(i64, Vec<ScoreRow>)>) -> Result<()>;
    /// Sends a job back to the queue (`retry_at`) or marks it failed.
    async fn eval_fail(&self, job_id: i64, error: &str, retry_at_ns: Option<i64>) -> Result<()>;
    async fn eval_queue_stats(&self, project: &ProjectId, now_ns: i64) -> Result<QueueStats>;

    async fn insert_score(&self, score: ScoreRow) -> Result<i64>;
    async fn list_scores(
        &self,
        project: &ProjectId,
        trace: Option<TraceId>,
        name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScoreRow>>;
    /// For alignment: (evaluator passed?, human passed?) per trace where both scored, for the
    /// evaluator's score `name` and humans' score `human_name`.
    async fn score_pairs(
        &self,
        project: &ProjectId,
        name: &str,
        human_name: &str,
    ) -> Result<Vec<(bool, bool)>>;

    /// Creates a failure mode, or updates the definition of the project's one with that name.
    async fn put_failure_mode(
        &self,
        project: &ProjectId,
        spec: FailureModeSpec,
    ) -> Result<FailureModeRow>;
    async fn list_failure_modes(&self, project: Option<&ProjectId>) -> Result<Vec<FailureModeRow>>;
    /// Applies a change; a status change is recorded as an event with its reason.
    async fn change_failure_mode(
        &self,
        project: &ProjectId,
        id: &str,
        change: FailureModeChange,
    ) -> Result<()>;
    async fn add_failure_mode_example(
        &self,
        project: &ProjectId,
        id: &str,
        trace: TraceId,
        source: ScoreSource,
    ) -> Result<()>;
    async fn failure_mode_events(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Vec<FailureModeEvent>>;
    /// The evaluator's failure rate over traces that started in `[from_ns, to_ns]`, optionally only
    /// of one `service.version` or excluding one.
    async fn failure_rate(
        &self,
        project: &ProjectId,
        evaluator: &str,
        from_ns: i64,
        to_ns: i64,
        version: Option<&str>,
        exclude_version: Option<&str>,
    ) -> Result<RateWindow>;
    /// Per UTC day (`YYYY-MM-DD`) in `[from_ns, to_ns]`.
    async fn failure_rate_by_day(
        &self,
        project: &ProjectId,
        evaluator: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(String, RateWindow)>>;

    /// The most recent traces since `since_ns` (up to `limit`) with their risk signals.
    async fn annotation_candidates(
        &self,
        project: &ProjectId,
        since_ns: i64,
        limit: usize,
    ) -> Result<Vec<AnnotationCandidate>>;
    /// Every human annotation (`name = 'annotation'`): (trace, annotator, passed).
    async fn annotations(&self, project: &ProjectId) -> Result<Vec<(TraceId, String, bool)>>;

    /// Creates the dataset if needed and appends items; returns the dataset.
    async fn add_dataset_items(
        &self,
        project: &ProjectId,
        name: &str,
        items: Vec<DatasetItem>,
    ) -> Result<DatasetRow>;
    async fn list_datasets(&self, project: &ProjectId) -> Result<Vec<DatasetRow>>;
    async fn get_dataset(
        &self,
        project: &ProjectId,
        name: &str,
    ) -> Result<Option<(DatasetRow, Vec<DatasetItem>)>>;
    async fn put_experiment(
        &self,
        run: ExperimentRun,
        results: Vec<ExperimentResult>,
    ) -> Result<()>;
    /// A run by id, or by name (the latest of that name), with its results.
    async fn get_experiment(
        &self,
        project: &ProjectId,
        id_or_name: &str,
    ) -> Result<Option<(ExperimentRun, Vec<ExperimentResult>)>>;
    async fn list_experiments(
        &self,
        project: &ProjectId,
        dataset_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExperimentRun>>;

    /// Failing evaluator verdicts since `since_ns`: (trace, evaluator, reason), newest first.
    async fn failing_verdicts(
        &self,
        project: &ProjectId,
        since_ns: i64,
        limit: usize,
    ) -> Result<Vec<(TraceId, String, String)>>;
    /// Each `service.version` seen, with when it was first seen (a deployment), oldest first.
    async fn deployments(&self, project: &ProjectId) -> Result<Vec<(String, i64)>>;
    /// As `score_pairs`, with when the human label was given.
    async fn score_pairs_timed(
        &self,
        project: &ProjectId,
        name: &str,
        human_name: &str,
    ) -> Result<Vec<(bool, bool, i64)>>;
}
