//! OpenLLMetry (Traceloop) conventions: `traceloop.*`, legacy `gen_ai.prompt.N.*` /
//! `gen_ai.completion.N.*`, `llm.usage.*`, `llm.request.functions.N.*`.

use serde_json::Value;
use vigil_model::keys::openllmetry as ol;
use vigil_model::{Span, SpanKind};

use super::attrs::{parse_if_json, Attrs};
use super::{fill, messages};

pub fn apply(a: &Attrs, span: &mut Span, raw_tool_result: &mut Option<Value>) {
    let tl_kind = a.str(ol::SPAN_KIND);
    if span.kind == SpanKind::Other {
        span.kind = match (tl_kind, a.str(ol::REQUEST_TYPE)) {
            (Some("tool"), _) => SpanKind::Tool,
            (Some("agent"), _) => SpanKind::Agent,
            (Some("workflow" | "task"), _) => SpanKind::Chain,
            (_, Some("chat" | "completion")) => SpanKind::Llm,
            (_, Some("embedding")) => SpanKind::Embedding,
            (_, Some("rerank")) => SpanKind::Retrieval,
            _ => SpanKind::Other,
        };
    }
    fill(&mut span.input_tokens, || {
        a.first_int(&[ol::USAGE_PROMPT_TOKENS, ol::LLM_USAGE_PROMPT_TOKENS])
    });
    fill(&mut span.output_tokens, || {
        a.first_int(&[ol::USAGE_COMPLETION_TOKENS, ol::LLM_USAGE_COMPLETION_TOKENS])
    });
    fill(&mut span.cached_input_tokens, || {
        a.int(ol::USAGE_CACHE_READ_INPUT_TOKENS)
    });
    fill(&mut span.reasoning_tokens, || {
        a.first_int(&[
            "gen_ai.usage.reasoning_tokens",
            ol::LLM_USAGE_REASONING_TOKENS,
        ])
    });
    // Keys spelled out, not formatted: most spans name no session, and formatting five keys for
    // each of them was a few per cent of ingest.
    let first_text = |keys: &[&str]| keys.iter().find_map(|k| a.text(k));
    fill(&mut span.session_id, || {
        first_text(&ol::ASSOCIATION_SESSION)
    });
    fill(&mut span.user_id, || first_text(&ol::ASSOCIATION_USER));
    if tl_kind == Some("agent") {
        fill(&mut span.agent_name, || a.text(ol::ENTITY_NAME));
    }
    if span.input_messages.is_empty() {
        span.input_messages = messages::from_openllmetry(&a.unflatten(ol::PROMPT_PREFIX)).0;
    }
    if span.output_messages.is_empty() {
        let (msgs, finish) = messages::from_openllmetry(&a.unflatten(ol::COMPLETION_PREFIX));
        span.output_messages = msgs;
        if span.finish_reasons.is_empty() {
            span.finish_reasons = finish;
        }
    }
    if span.finish_reasons.is_empty() {
        if let Some(f) = a.first_str(&["llm.response.finish_reason", "llm.response.stop_reason"]) {
            span.finish_reasons = vec![f];
        }
    }
    if span.declared_tools.is_empty() {
        span.declared_tools = a
            .unflatten(ol::REQUEST_FUNCTIONS)
            .iter()
            .filter_map(|f| f.get("name")?.as_str().map(str::to_string))
            .collect();
    }
    if span.kind == SpanKind::Tool && tl_kind == Some("tool") {
        fill(&mut span.tool_name, || a.text(ol::ENTITY_NAME));
        fill(&mut span.tool_arguments, || a.json(ol::ENTITY_INPUT));
        if span.tool_result.is_none() {
            if let Some(raw) = a.get(ol::ENTITY_OUTPUT) {
                span.tool_result = Some(parse_if_json(raw));
                *raw_tool_result = Some(raw.clone());
            }
        }
    }
    // Deprecated single-string content keys.
    if span.kind == SpanKind::Llm && span.input_messages.is_empty() {
        if let Some(p) = a.get("gen_ai.prompt").map(parse_if_json) {
            span.input_messages = match &p {
                Value::Array(items) => messages::from_openai_objects(items),
                other => vec![vigil_model::Message {
                    role: "user".into(),
                    content: super::attrs::as_text(other),
                    ..Default::default()
                }],
            };
        }
    }
}
