//! Every gateway call becomes an `llm` span in the canonical model, written to the store in
//! batches by a background task so the call itself never waits on the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use vigil_model::{
    now_unix_nanos, Message, PriceTable, ProjectId, Span, SpanId, SpanKind, SpanStatus, TraceId,
    Usage,
};
use vigil_store::Store;

/// Spans waiting to be written; when full, new spans are dropped and counted (the gateway never
/// slows a call down to trace it).
const SINK_CAPACITY: usize = 20_000;
const BATCH: usize = 1000;

#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    pub dropped: Arc<AtomicU64>,
}

impl SpanSink {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Span>(SINK_CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let spans = std::mem::take(&mut batch);
                let n = spans.len();
                // A full write pipeline answers Overloaded: wait and retry rather than lose spans.
                let mut pending = Some(spans);
                for attempt in 0..20u32 {
                    let Some(spans) = pending.take() else { break };
                    match store.write_spans(spans.clone()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() && attempt < 19 => {
                            pending = Some(spans);
                            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, spans = n, "gateway spans could not be stored")
                        }
                    }
                }
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// W3C `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
pub fn parse_traceparent(v: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = v.trim().split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let t = TraceId::from_hex(trace).ok()?;
    let s = SpanId::from_hex(span).ok()?;
    (t.as_bytes().iter().any(|b| *b != 0) && s.as_bytes().iter().any(|b| *b != 0)).then_some((t, s))
}

pub fn random_trace_id() -> TraceId {
    let b: [u8; 16] = rand::random();
    TraceId::from_bytes(&b).unwrap_or_default()
}

pub fn random_span_id() -> SpanId {
    let b: [u8; 8] = rand::random();
    SpanId::from_bytes(&b).unwrap_or_default()
}

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
    /// The request in OpenAI shape.
    pub request: Value,
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
    pub outcome: Outcome,
}

impl CallRecord {
    pub fn into_span(self, prices: &PriceTable) -> Span {
        let end = now_unix_nanos();
        let (trace_id, parent) = match self.trace {
            Some((t, p)) => (t, Some(p)),
            None => (random_trace_id(), None),
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
            span_id: random_span_id(),
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
