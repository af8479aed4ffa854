//! Query and result types shared by every backend. Field names are the API's JSON names.

use serde::{Deserialize, Serialize};
use vigil_model::{FlagKind, LogEvent, ProjectId, Span, SpanKind, SpanStatus, TraceId};

use crate::{Error, Result};

pub const MAX_PAGE_SIZE: usize = 500;
pub const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceSortField {
    #[default]
    StartTime,
    Duration,
    Cost,
    Tokens,
    Spans,
}

impl TraceSortField {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start_time" => Some(Self::StartTime),
            "duration" | "duration_ms" => Some(Self::Duration),
            "cost" | "cost_usd" => Some(Self::Cost),
            "tokens" | "total_tokens" => Some(Self::Tokens),
            "spans" | "span_count" => Some(Self::Spans),
            _ => None,
        }
    }
}

/// Filters of `GET /api/v1/traces` and `vigil traces`. Every filter is optional and they combine with AND.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    pub project_id: ProjectId,
    pub start_time_min: Option<i64>,
    pub start_time_max: Option<i64>,
    pub service_name: Option<String>,
    pub environment: Option<String>,
    pub agent_name: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub tool_name: Option<String>,
    pub status: Option<SpanStatus>,
    pub flags: Vec<FlagKind>,
    pub duration_min_ms: Option<f64>,
    pub cost_min_usd: Option<f64>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    /// Full-text search over span inputs, outputs, tool arguments and results.
    pub text: Option<String>,
    pub sort: TraceSortField,
    pub descending: bool,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl TraceQuery {
    pub fn new(project_id: ProjectId) -> Self {
        Self {
            project_id,
            descending: true,
            limit: DEFAULT_PAGE_SIZE,
            ..Self::default()
        }
    }
}

/// Keyset position: the sort value and trace id of the last row of the previous page.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub value: CursorValue,
    pub trace_id: TraceId,
}

/// Integer sort keys stay integers: nanosecond timestamps do not fit an `f64` exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CursorValue {
    Int(i64),
    Float(f64),
}

impl Cursor {
    pub fn encode(&self) -> String {
        let v = match self.value {
            CursorValue::Int(i) => format!("i{i}"),
            CursorValue::Float(f) => format!("f{f}"),
        };
        hex::encode(format!("{v}|{}", self.trace_id.to_hex()))
    }

    pub fn decode(s: &str) -> Result<Self> {
        let bad = || Error::InvalidQuery("`cursor` is not a cursor this API returned".into());
        let raw = String::from_utf8(hex::decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
        let (v, id) = raw.split_once('|').ok_or_else(bad)?;
        let value = match v.split_at_checked(1) {
            Some(("i", n)) => CursorValue::Int(n.parse().map_err(|_| bad())?),
            Some(("f", n)) => CursorValue::Float(
                n.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        Ok(Cursor {
            value,
            trace_id: TraceId::from_hex(id).map_err(|_| bad())?,
        })
    }
}

/// One trace as a list row: its root and totals. Tokens and cost count each LLM call once, even
/// when two instrumentations recorded it as nested spans.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceRow {
    pub trace_id: TraceId,
    pub project_id: ProjectId,
    pub root_name: String,
    pub service_name: Option<String>,
    pub service_version: Option<String>,
    pub environment: Option<String>,
    pub agent_name: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    #[serde(serialize_with = "vigil_model::rfc3339::serialize")]
    pub start_time: i64,
    #[serde(serialize_with = "vigil_model::rfc3339::serialize")]
    pub end_time: i64,
    pub duration_ms: f64,
    pub span_count: i64,
    pub llm_count: i64,
    pub tool_count: i64,
    pub error_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<f64>,
    pub status: SpanStatus,
    pub flags: Vec<FlagKind>,
    pub models: Vec<String>,
    pub providers: Vec<String>,
    /// Names of the tools its tool spans called.
    pub tools: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TracePage {
    pub traces: Vec<TraceRow>,
    pub next_cursor: Option<String>,
}

/// A whole trace: its summary, its spans in tree order (parents before children, siblings by
/// start time) and the OTLP log records linked to it.
#[derive(Clone, Debug, Serialize)]
pub struct TraceDetail {
    pub trace: TraceRow,
    pub spans: Vec<Span>,
    pub log_events: Vec<LogEvent>,
}

#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub project_id: ProjectId,
    pub start_time_min: Option<i64>,
    pub start_time_max: Option<i64>,
    pub user_id: Option<String>,
    pub environment: Option<String>,
    pub agent_name: Option<String>,
    pub limit: usize,
    /// Sessions are listed most recent activity first; the cursor is an offset.
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionRow {
    pub session_id: String,
    pub user_id: Option<String>,
    pub environment: Option<String>,
    pub agent_names: Vec<String>,
    pub turns: i64,
    pub span_count: i64,
    #[serde(serialize_with = "vigil_model::rfc3339::serialize")]
    pub start_time: i64,
    #[serde(serialize_with = "vigil_model::rfc3339::serialize")]
    pub end_time: i64,
    pub duration_ms: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<f64>,
    /// Turns (traces) with at least one failed span.
    pub error_count: i64,
    /// Turns with a flagged span (silent tool failure, hallucinated tool).
    pub flagged_count: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionPage {
    pub sessions: Vec<SessionRow>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionDetail {
    pub session: SessionRow,
    /// The turns in the order they happened.
    pub traces: Vec<TraceRow>,
}

/// Distinct values per dimension, sorted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Facets {
    pub models: Vec<String>,
    pub providers: Vec<String>,
    pub agents: Vec<String>,
    pub environments: Vec<String>,
    pub services: Vec<String>,
    pub tools: Vec<String>,
}

/// Sessions of one length class and how they went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionLengthBucket {
    /// `short` (1–2 turns), `medium` (3–6) or `long` (7 or more).
    pub length: String,
    pub sessions: i64,
    pub turns: i64,
    /// Turns with a failed span.
    pub error_turns: i64,
    /// Turns with a flagged span.
    pub flagged_turns: i64,
    pub tokens: i64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsDimension {
    Model,
    Provider,
    Agent,
    Environment,
    Service,
    Kind,
    /// The tool a tool span called.
    Tool,
}

impl MetricsDimension {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Self::Model),
            "provider" => Some(Self::Provider),
            "agent" | "agent_name" => Some(Self::Agent),
            "environment" => Some(Self::Environment),
            "service" | "service_name" => Some(Self::Service),
            "kind" => Some(Self::Kind),
            "tool" | "tool_name" => Some(Self::Tool),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MetricsQuery {
    pub project_id: ProjectId,
    pub start_time_min: i64,
    pub start_time_max: i64,
    pub bucket_seconds: i64,
    pub group_by: Option<MetricsDimension>,
    pub kind: Option<SpanKind>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub agent_name: Option<String>,
    pub environment: Option<String>,
    pub service_name: Option<String>,
    pub tool_name: Option<String>,
}

/// Aggregates of spans in one time bucket (or the whole range, for totals) and one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsPoint {
    #[serde(
        serialize_with = "vigil_model::rfc3339_opt::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub bucket_start: Option<i64>,
    pub group: Option<String>,
    pub count: i64,
    pub error_count: i64,
    pub error_rate: f64,
    pub flagged_count: i64,
    pub flagged_rate: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// `None` when no span in the bucket had a price.
    pub cost_usd: Option<f64>,
    pub unpriced_count: i64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsResult {
    pub bucket_seconds: i64,
    pub group_by: Option<MetricsDimension>,
    pub series: Vec<MetricsPoint>,
    pub totals: Vec<MetricsPoint>,
}

/// Per model: how much it was used and whether Vigil could price it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelUsageRow {
    pub model: String,
    pub provider: Option<String>,
    pub span_count: i64,
    pub unpriced_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    pub inserted: usize,
    pub duplicates: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Traces that started longer ago than this are deleted.
    pub max_age_seconds: Option<u64>,
    /// Oldest traces are deleted until the live data fits this size.
    pub max_size_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub traces_deleted: u64,
    pub spans_deleted: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub spans: u64,
    pub traces: u64,
    pub bytes: u64,
}
