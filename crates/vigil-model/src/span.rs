//! The canonical span: one shape for every convention Vigil understands.
//!
//! Field names are the API's JSON names. Anything an instrumentation sent that has no canonical
//! field stays in `attributes`, so nothing is ever dropped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ProjectId, SpanId, TraceId};

/// What a step of an agent run is, independent of the convention that described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    Agent,
    Llm,
    Tool,
    Retrieval,
    Embedding,
    Chain,
    Guardrail,
    #[default]
    Other,
}

impl SpanKind {
    pub const ALL: [SpanKind; 8] = [
        Self::Agent,
        Self::Llm,
        Self::Tool,
        Self::Retrieval,
        Self::Embedding,
        Self::Chain,
        Self::Guardrail,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Llm => "llm",
            Self::Tool => "tool",
            Self::Retrieval => "retrieval",
            Self::Embedding => "embedding",
            Self::Chain => "chain",
            Self::Guardrail => "guardrail",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unset" => Some(Self::Unset),
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// A quiet failure that Vigil detected although the span may say OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A tool returned something empty, truncated, unparseable or error-shaped.
    SilentToolFailure,
    /// An LLM called a tool that the request did not declare.
    HallucinatedTool,
}

impl FlagKind {
    pub const ALL: [FlagKind; 2] = [Self::SilentToolFailure, Self::HallucinatedTool];

    /// Bit in the stored flag mask; stable on disk, never renumber.
    pub fn bit(self) -> i64 {
        match self {
            Self::SilentToolFailure => 1,
            Self::HallucinatedTool => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SilentToolFailure => "silent_tool_failure",
            Self::HallucinatedTool => "hallucinated_tool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn mask_to_names(mask: i64) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|k| mask & k.bit() != 0)
            .map(|k| k.as_str())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub name: FlagKind,
    /// One sentence a human reads to understand why the span was flagged.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Parsed JSON when the arguments were JSON text, else the text itself.
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a tool-result message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SpanEvent {
    pub name: String,
    #[serde(with = "crate::rfc3339")]
    pub time: i64,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// Token usage of one LLM call. `None` means "not reported", never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub project_id: ProjectId,
    pub kind: SpanKind,
    pub name: String,
    pub service_name: Option<String>,
    pub service_version: Option<String>,
    pub environment: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub agent_name: Option<String>,
    /// The model as requested.
    pub model: Option<String>,
    pub response_model: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    /// `None` when the model is unpriced: a missing price is never reported as zero cost.
    pub cost_usd: Option<f64>,
    #[serde(with = "crate::rfc3339")]
    pub start_time: i64,
    #[serde(with = "crate::rfc3339")]
    pub end_time: i64,
    pub duration_ms: f64,
    pub time_to_first_token_ms: Option<f64>,
    pub status: SpanStatus,
    pub error_message: Option<String>,
    #[serde(default)]
    pub input_messages: Vec<Message>,
    #[serde(default)]
    pub output_messages: Vec<Message>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_arguments: Option<Value>,
    pub tool_result: Option<Value>,
    /// Tools the LLM request declared; what "hallucinated tool" is judged against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared_tools: Vec<String>,
    #[serde(default)]
    pub finish_reasons: Vec<String>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Every original span attribute, flattened to `key → JSON value` (a few when decoded lean,
    /// see `lean`).
    #[serde(default, deserialize_with = "crate::lean::attributes")]
    pub attributes: Map<String, Value>,
    #[serde(default, deserialize_with = "crate::lean::attributes")]
    pub resource_attributes: Map<String, Value>,
    pub scope_name: Option<String>,
    pub scope_version: Option<String>,
    /// OTLP span kind (`internal`, `server`, `client`, `producer`, `consumer`).
    pub otel_kind: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::lean::skipped"
    )]
    pub events: Vec<SpanEvent>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::lean::skipped"
    )]
    pub links: Vec<SpanLink>,
}

impl Span {
    pub fn flag_mask(&self) -> i64 {
        self.flags.iter().fold(0, |m, f| m | f.name.bit())
    }

    pub fn has_flag(&self, kind: FlagKind) -> bool {
        self.flags.iter().any(|f| f.name == kind)
    }

    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            reasoning_tokens: self.reasoning_tokens,
        }
    }

    /// The text that full-text search indexes: names, messages, tool arguments and results.
    pub fn search_text(&self) -> String {
        let mut out = String::with_capacity(256);
        self.for_each_search_text(|s| {
            out.push_str(s);
            out.push('\n');
        });
        out
    }

    /// Calls `push` with each non-empty piece of `search_text`, so callers can skip repeats (a
    /// conversation's history is in every LLM call of a turn).
    pub fn for_each_search_text(&self, mut push: impl FnMut(&str)) {
        let mut push = |s: &str| {
            if !s.is_empty() {
                push(s);
            }
        };
        push(&self.name);
        for m in self.input_messages.iter().chain(&self.output_messages) {
            if let Some(c) = &m.content {
                push(c);
            }
            for tc in &m.tool_calls {
                push(&tc.name);
                push(&value_text(&tc.arguments));
            }
        }
        if let Some(t) = &self.tool_name {
            push(t);
        }
        if let Some(v) = &self.tool_arguments {
            push(&value_text(v));
        }
        if let Some(v) = &self.tool_result {
            push(&value_text(v));
        }
        if let Some(e) = &self.error_message {
            push(e);
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An OTLP log record, kept whole; GenAI events among them are merged into their span when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub name: String,
    pub time: i64,
    pub severity: Option<String>,
    pub body: Value,
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub resource_attributes: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_round_trips_through_json() {
        let span = Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([9; 8]),
            kind: SpanKind::Tool,
            name: "execute_tool lookup".into(),
            start_time: 1_700_000_000_123_456_789,
            end_time: 1_700_000_001_000_000_000,
            tool_result: Some(Value::String(String::new())),
            flags: vec![Flag {
                name: FlagKind::SilentToolFailure,
                reason: "empty".into(),
            }],
            ..Span::default()
        };
        let json = serde_json::to_value(&span).unwrap();
        assert_eq!(json["kind"], "tool");
        assert_eq!(json["flags"][0]["name"], "silent_tool_failure");
        assert_eq!(json["start_time"], "2023-11-14T22:13:20.123456789Z");
        let back: Span = serde_json::from_value(json).unwrap();
        assert_eq!(back, span);
        assert_eq!(back.flag_mask(), 1);
    }
}
