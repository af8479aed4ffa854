//! GenAI events: per-message events (`gen_ai.user.message`, `gen_ai.choice`, …) and the newer
//! `gen_ai.client.inference.operation.details`, sent as span events or as OTLP log records linked
//! to a span by trace and span id. They fill a span's messages when its attributes did not.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::{Map, Value};
use vigil_model::keys::{genai as g, otel};
use vigil_model::{LogEvent, Message, Span, SpanId, SpanKind, TraceId};

use super::attrs::{self, as_text, parse_if_json, Attrs};
use super::messages;

pub fn from_logs(request: &ExportLogsServiceRequest) -> Vec<LogEvent> {
    let mut out = Vec::new();
    for rl in &request.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| attrs::flatten(&r.attributes))
            .unwrap_or_default();
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                let attributes = attrs::flatten(&rec.attributes);
                let name = if rec.event_name.is_empty() {
                    Attrs::new(&attributes)
                        .text(otel::EVENT_NAME)
                        .unwrap_or_default()
                } else {
                    rec.event_name.clone()
                };
                let time = if rec.time_unix_nano != 0 {
                    rec.time_unix_nano
                } else {
                    rec.observed_time_unix_nano
                };
                out.push(LogEvent {
                    trace_id: TraceId::from_bytes(&rec.trace_id).ok(),
                    span_id: SpanId::from_bytes(&rec.span_id).ok(),
                    name,
                    time: i64::try_from(time).unwrap_or(0),
                    severity: (!rec.severity_text.is_empty()).then(|| rec.severity_text.clone()),
                    body: rec.body.as_ref().map(attrs::to_json).unwrap_or(Value::Null),
                    attributes,
                    resource_attributes: resource.clone(),
                });
            }
        }
    }
    out
}

/// One GenAI event, from either a span event (attributes only) or a log record (body + attributes).
struct GenAiEvent<'a> {
    name: &'a str,
    time: i64,
    body: Value,
    attributes: &'a Map<String, Value>,
}

/// Applies GenAI events found among the span's own events, and time to first token.
pub fn apply_span_events(span: &mut Span) {
    // Taken out and put back so the events can be read while the span is written, without copying them.
    let events = std::mem::take(&mut span.events);
    let items: Vec<GenAiEvent> = events
        .iter()
        .map(|e| GenAiEvent {
            name: &e.name,
            time: e.time,
            body: Value::Null,
            attributes: &e.attributes,
        })
        .collect();
    apply(span, &items);
    drop(items);
    span.events = events;
    if span.time_to_first_token_ms.is_none() {
        let first = span
            .events
            .iter()
            .filter(|e| is_first_token_event(&e.name))
            .map(|e| e.time)
            .min();
        if let Some(t) = first.filter(|t| *t >= span.start_time) {
            span.time_to_first_token_ms = Some((t - span.start_time) as f64 / 1e6);
        }
    }
}

fn is_first_token_event(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace([' ', '.', '-'], "_");
    n.contains("first_token") || n.contains("first_chunk")
}

/// Merges log-record events into their spans; returns whether any span changed.
pub fn merge_log_events(span: &mut Span, events: &[LogEvent]) -> bool {
    let items: Vec<GenAiEvent> = events
        .iter()
        .filter(|e| e.span_id == Some(span.span_id))
        .map(|e| GenAiEvent {
            name: &e.name,
            time: e.time,
            body: e.body.clone(),
            attributes: &e.attributes,
        })
        .collect();
    if items.is_empty() {
        return false;
    }
    let before = (span.input_messages.len(), span.output_messages.len());
    apply(span, &items);
    let changed = before != (span.input_messages.len(), span.output_messages.len());
    if changed {
        let raw = span.tool_result.clone();
        super::flags::apply(span, raw.as_ref());
    }
    changed
}

fn apply(span: &mut Span, events: &[GenAiEvent]) {
    let mut input: Vec<Message> = Vec::new();
    let mut output: Vec<Message> = Vec::new();
    let mut finish = Vec::new();
    let mut sorted: Vec<&GenAiEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.time);
    for e in sorted {
        let body = if e.body.is_null() {
            Value::Object(e.attributes.clone())
        } else {
            parse_if_json(&e.body)
        };
        let role = match e.name {
            g::EVENT_SYSTEM_MESSAGE => "system",
            g::EVENT_USER_MESSAGE => "user",
            g::EVENT_ASSISTANT_MESSAGE => "assistant",
            g::EVENT_TOOL_MESSAGE => "tool",
            g::EVENT_CHOICE => {
                let msg_obj = body.get("message").cloned().unwrap_or_else(|| body.clone());
                let mut m = event_message("assistant", &msg_obj);
                if m.tool_calls.is_empty() {
                    if let Some(Value::Array(calls)) = body.get("tool_calls") {
                        m.tool_calls = calls
                            .iter()
                            .filter_map(messages::openai_tool_call)
                            .collect();
                    }
                }
                if let Some(f) = body.get("finish_reason").and_then(Value::as_str) {
                    finish.push(f.to_string());
                }
                output.push(m);
                continue;
            }
            g::EVENT_OPERATION_DETAILS => {
                let a = Attrs::new(e.attributes);
                if let Some(v) = a.get(g::INPUT_MESSAGES) {
                    input.extend(messages::from_genai(v));
                }
                if let Some(v) = a.get(g::OUTPUT_MESSAGES) {
                    output.extend(messages::from_genai(v));
                }
                continue;
            }
            // Oldest span-event form: `gen_ai.content.prompt` with a `gen_ai.prompt` attribute.
            "gen_ai.content.prompt" | "gen_ai.content.completion" => {
                let key = if e.name == "gen_ai.content.prompt" {
                    "gen_ai.prompt"
                } else {
                    "gen_ai.completion"
                };
                if let Some(Value::Array(items)) = Attrs::new(e.attributes).json(key) {
                    let msgs = messages::from_openai_objects(&items);
                    if key == "gen_ai.prompt" {
                        input.extend(msgs)
                    } else {
                        output.extend(msgs)
                    }
                }
                continue;
            }
            _ => continue,
        };
        input.push(event_message(role, &body));
    }
    if span.input_messages.is_empty() && !input.is_empty() {
        span.input_messages = input;
    }
    if span.output_messages.is_empty() && !output.is_empty() {
        span.output_messages = output;
    }
    if span.finish_reasons.is_empty() {
        span.finish_reasons = finish;
    }
    if span.kind == SpanKind::Other && !span.output_messages.is_empty() && span.model.is_some() {
        span.kind = SpanKind::Llm;
    }
}

fn event_message(role: &str, body: &Value) -> Message {
    let mut m = messages::from_openai_objects(std::slice::from_ref(body))
        .into_iter()
        .next()
        .unwrap_or_default();
    if m.role.is_empty() || body.get("role").is_none() {
        m.role = role.to_string();
    }
    if role == "tool" && m.tool_call_id.is_none() {
        m.tool_call_id = body.get("id").and_then(Value::as_str).map(str::to_string);
    }
    if m.content.is_none() {
        m.content = body.get("content").and_then(as_text);
    }
    m
}
