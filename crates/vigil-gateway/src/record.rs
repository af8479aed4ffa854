//! Every gateway call becomes an `llm` span in the canonical model, written to the store in
//! batches by a background task so the call itself never waits on the disk.

use serde_json::{json, Map, Value};
use vigil_model::{
    now_unix_nanos, Message, PriceTable, ProjectId, Span, SpanId, SpanKind, SpanStatus, TraceId,
    Usage,
};

pub use vigil_store::sink::SpanSink;

pub use vigil_model::parse_traceparent;

/// OpenAI-shaped messages (requests of either format are translated to this shape first) →
/// canonical messages, with ingest's parser.
pub fn messages(list: &Value) -> Vec<Message> {
    list.as_array()
        .map(|items| vigil_ingest::normalize::from_openai_objects(items))
        .unwrap_or_default()
}

/// What a call produced, gathered from the response or the stream.
#[derive(Default, Debug, Clone)]
pub struct Outcome {
    pub response_model: Option<String>,
    pub output: Vec<Message>,
    pub finish_reasons: Vec<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub ttft_ms: Option<f64>,
    pub error: Option<String>,
    pub cancelled: bool,
    pub cache_hit: bool,
}

/// Everything known about one call when it ends.
#[derive(Clone)]
pub struct CallRecord {
    pub project: ProjectId,
    pub trace: Option<(TraceId, SpanId)>,
    pub start_ns: i64,
    pub requested_model: String,
    pub target_model: Option<String>,
    pub provider: Option<String>,
    pub client_format: &'static str,
    /// The request in OpenAI shape (shared: the call's record is copied for its cancel guard).
    pub request: std::sync::Arc<Value>,
    pub attempts: Vec<Value>,
    pub circuit: Option<&'static str>,
    pub session: Option<String>,
    pub user: Option<String>,
    pub tags: Option<String>,
    /// The virtual key used, and its team.
    pub key: Option<(String, Option<String>)>,
    /// On a cache hit: what the original answer cost.
    pub cost_saved_usd: Option<f64>,
    /// An embeddings call rather than a chat.
    pub embedding: bool,
    /// The guardrail policy's verdicts on tool calls in the answer (`{tool, decision, rule, reason}`).
    pub guard: Vec<Value>,
    pub outcome: Outcome,
}

impl CallRecord {
    pub fn into_span(self, prices: &PriceTable) -> Span {
        let end = now_unix_nanos();
        let (trace_id, parent) = match self.trace {
            Some((t, p)) => (t, Some(p)),
            None => (TraceId::random(), None),
        };
        let model = self
            .target_model
            .clone()
            .unwrap_or_else(|| self.requested_model.clone());
        let usage = Usage {
            input_tokens: self.outcome.input_tokens,
            output_tokens: self.outcome.output_tokens,
            ..Usage::default()
        };
        let cost = if self.outcome.cache_hit {
            Some(0.0)
        } else {
            prices
                .cost(
                    self.outcome.response_model.as_deref().unwrap_or(&model),
                    usage,
                )
                .or_else(|| prices.cost(&model, usage))
        };
        let mut attributes = Map::new();
        let mut put = |k: &str, v: Value| {
            attributes.insert(k.to_string(), v);
        };
        put("gen_ai.operation.name", json!("chat"));
        put("gen_ai.request.model", json!(model));
        put("vigil.gateway.requested_model", json!(self.requested_model));
        put("vigil.gateway.client_format", json!(self.client_format));
        put(
            "vigil.gateway.attempts",
            Value::Array(self.attempts.clone()),
        );
        put(
            "vigil.gateway.failovers",
            json!(self
                .attempts
                .iter()
                .filter(|a| a["failover"] == true)
                .count()),
        );
        put("vigil.gateway.cache_hit", json!(self.outcome.cache_hit));
        if let Some(c) = self.circuit {
            put("vigil.gateway.circuit", json!(c));
        }
        if self.outcome.cancelled {
            put("vigil.gateway.cancelled", json!(true));
        }
        if let Some((id, team)) = &self.key {
            put("vigil.gateway.key_id", json!(id));
            if let Some(t) = team {
                put("vigil.gateway.team", json!(t));
            }
        }
        if let Some(saved) = self.cost_saved_usd {
            put("vigil.gateway.cost_saved_usd", json!(saved));
        }
        if let Some(t) = &self.tags {
            put(
                "vigil.tags",
                json!(t
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()),
            );
        }
        for key in ["temperature", "max_tokens", "top_p"] {
            if let Some(v) = self.request.get(key).filter(|v| !v.is_null()) {
                put(&format!("gen_ai.request.{key}"), v.clone());
            }
        }
        if !self.guard.is_empty() {
            put("vigil.guard.tool_calls", Value::Array(self.guard.clone()));
        }
        let declared_tools: Vec<String> = self.request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                t.pointer("/function/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let status = if self.outcome.error.is_some() || self.outcome.cancelled {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        };
        let error_message = if self.outcome.cancelled {
            Some("cancelled: the client disconnected before the response ended".to_string())
        } else {
            self.outcome.error.clone()
        };
        Span {
            trace_id,
            span_id: SpanId::random(),
            parent_span_id: parent,
            project_id: self.project,
            kind: if self.embedding {
                SpanKind::Embedding
            } else {
                SpanKind::Llm
            },
            name: format!(
                "{} {model}",
                if self.embedding { "embeddings" } else { "chat" }
            ),
            service_name: Some("vigil-gateway".into()),
            session_id: self.session,
            user_id: self.user,
            model: Some(model),
            response_model: self.outcome.response_model,
            provider: self.provider,
            input_tokens: self.outcome.input_tokens,
            output_tokens: self.outcome.output_tokens,
            cost_usd: cost,
            start_time: self.start_ns,
            end_time: end.max(self.start_ns),
            duration_ms: (end - self.start_ns).max(0) as f64 / 1e6,
            time_to_first_token_ms: self.outcome.ttft_ms,
            status,
            error_message,
            input_messages: if self.embedding {
                Vec::new()
            } else {
                messages(&self.request["messages"])
            },
            output_messages: self.outcome.output,
            declared_tools,
            finish_reasons: self.outcome.finish_reasons,
            attributes,
            otel_kind: Some("client".into()),
            scope_name: Some("vigil-gateway".into()),
            ..Span::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_rejects_zero_ids() {
        let (t, s) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.to_hex(), "00f067aa0ba902b7");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }
}
