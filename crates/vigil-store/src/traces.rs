//! The trace store: the one interface ingest, API and CLI use for spans and traces.

use async_trait::async_trait;
use vigil_model::{LogEvent, ProjectId, Span, TraceId};

use crate::quality::IngestVerdicts;
use crate::query::*;
use crate::Result;

#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Writes spans (of any projects). Idempotent on `(project_id, trace_id, span_id)`: a span
    /// delivered twice is stored once. Returns only once the spans are durable, so an OTLP
    /// success sent after it is a promise kept across a crash. Fails with `Error::Overloaded`
    /// instead of queueing without bound.
    async fn write_spans(&self, spans: Vec<Span>) -> Result<WriteReceipt>;

    /// `write_spans` with the verdicts evaluators gave these spans as they were ingested: scores
    /// and spans commit together, so an acknowledged span never lacks its ingest-time scores.
    async fn write_spans_judged(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt>;

    /// `write_spans` for spans Vigil produces itself (gateway calls, guardrail decisions): when the
    /// write pipeline is full it waits for room instead of failing, as there is no client to retry.
    async fn write_spans_waiting(
        &self,
        spans: Vec<Span>,
        verdicts: IngestVerdicts,
    ) -> Result<WriteReceipt>;

    /// Writes OTLP log records of one project; durable on return, like `write_spans`.
    async fn write_log_events(&self, project: &ProjectId, events: Vec<LogEvent>) -> Result<usize>;

    async fn find_traces(&self, query: &TraceQuery) -> Result<TracePage>;

    /// `None` when the trace does not exist *in this project*.
    async fn get_trace(
        &self,
        project: &ProjectId,
        trace_id: TraceId,
    ) -> Result<Option<TraceDetail>>;

    /// A trace's spans in tree order, decoded lean (`vigil_model::lean`: of the attribute maps,
    /// only the keys rules read), for evaluators; `None` as for `get_trace`.
    async fn get_trace_spans_lean(
        &self,
        project: &ProjectId,
        trace_id: TraceId,
    ) -> Result<Option<Vec<Span>>>;

    async fn find_sessions(&self, query: &SessionQuery) -> Result<SessionPage>;

    async fn get_session(
        &self,
        project: &ProjectId,
        session_id: &str,
    ) -> Result<Option<SessionDetail>>;

    async fn metrics(&self, query: &MetricsQuery) -> Result<MetricsResult>;

    /// Models seen since `since` (Unix ns), with usage and whether they were priced.
    async fn model_usage(
        &self,
        project: Option<&ProjectId>,
        since: i64,
    ) -> Result<Vec<ModelUsageRow>>;

    /// The distinct values of each filterable dimension seen since `since` (Unix ns), for pickers.
    async fn facets(&self, project: &ProjectId, since: i64) -> Result<Facets>;

    /// Sessions active since `since` (Unix ns), grouped by length: short (1–2 turns), medium
    /// (3–6) and long (7 or more), so that quality falling with context length shows.
    async fn session_length_breakdown(
        &self,
        project: &ProjectId,
        since: i64,
    ) -> Result<Vec<SessionLengthBucket>>;

    /// Applies retention: deletes whole traces that are too old, then the oldest until the size fits.
    async fn gc(&self, retention: &Retention) -> Result<GcReport>;

    async fn stats(&self) -> Result<StoreStats>;
}
