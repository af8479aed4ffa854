//! OpenInference conventions (`openinference.span.kind`, `llm.*`, `input.value`, `tool.*`).

use serde_json::Value;
use vigil_model::keys::openinference as oi;
use vigil_model::{Span, SpanKind};

use super::attrs::{parse_if_json, Attrs};
use super::genai::tool_names;
use super::{fill, messages, normalize_provider};

pub fn apply(a: &Attrs, span: &mut Span, raw_tool_result: &mut Option<Value>) {
    let kind = a.str(oi::SPAN_KIND).map(|k| k.to_ascii_uppercase());
    if let Some(k) = kind.as_deref() {
        let mapped = match k {
            "LLM" => Some(SpanKind::Llm),
            "TOOL" => Some(SpanKind::Tool),
            "RETRIEVER" | "RERANKER" => Some(SpanKind::Retrieval),
            "EMBEDDING" => Some(SpanKind::Embedding),
            "CHAIN" | "PROMPT" => Some(SpanKind::Chain),
            "AGENT" => Some(SpanKind::Agent),
            "GUARDRAIL" => Some(SpanKind::Guardrail),
            _ => None,
        };
        // An explicit OpenInference kind outranks a kind only guessed so far.
        if let Some(m) = mapped {
            if span.kind == SpanKind::Other {
                span.kind = m;
            }
        }
    }
    let invocation = a.json("llm.invocation_parameters");
    let input_value = a.json(oi::INPUT_VALUE);
    // `llm.model_name` is often the dated response model; the requested one is in the parameters.
    fill(&mut span.model, || {
        a.text(oi::LLM_REQUEST_MODEL_NAME)
            .or_else(|| {
                invocation
                    .as_ref()
                    .and_then(|v| v.get("model")?.as_str().map(str::to_string))
            })
            .or_else(|| {
                (span.kind == SpanKind::Llm).then_some(()).and_then(|_| {
                    input_value
                        .as_ref()?
                        .get("model")?
                        .as_str()
                        .map(str::to_string)
                })
            })
            .or_else(|| a.text(oi::LLM_MODEL_NAME))
            .or_else(|| a.text("embedding.model_name"))
    });
    fill(&mut span.response_model, || {
        a.first_str(&[oi::LLM_RESPONSE_MODEL_NAME, oi::LLM_MODEL_NAME])
    });
    fill(&mut span.provider, || {
        a.first_str(&[oi::LLM_PROVIDER, oi::LLM_SYSTEM])
            .map(|p| normalize_provider(&p))
    });
    fill(&mut span.input_tokens, || a.int(oi::TOKEN_PROMPT));
    fill(&mut span.output_tokens, || a.int(oi::TOKEN_COMPLETION));
    fill(&mut span.cached_input_tokens, || {
        a.int(oi::TOKEN_CACHE_READ)
    });
    fill(&mut span.reasoning_tokens, || a.int(oi::TOKEN_REASONING));
    fill(&mut span.agent_name, || a.text(oi::AGENT_NAME));
    if span.finish_reasons.is_empty() {
        if let Some(f) = a.text(oi::LLM_FINISH_REASON) {
            span.finish_reasons = vec![f];
        }
    }
    if span.input_messages.is_empty() {
        span.input_messages = messages::from_openinference(&a.unflatten(oi::INPUT_MESSAGES));
    }
    if span.output_messages.is_empty() {
        span.output_messages = messages::from_openinference(&a.unflatten(oi::OUTPUT_MESSAGES));
    }
    if span.declared_tools.is_empty() {
        let tools: Vec<Value> = a
            .unflatten(oi::TOOLS)
            .iter()
            .filter_map(|t| t.get("tool")?.get("json_schema").map(parse_if_json))
            .collect();
        span.declared_tools = tool_names(&Value::Array(tools));
    }
    if span.kind == SpanKind::Llm {
        // Request bodies in `input.value` still tell messages and tools when nothing flattened them.
        if let Some(body) = input_value.as_ref().filter(|v| v.is_object()) {
            if span.input_messages.is_empty() {
                if let Some(Value::Array(msgs)) = body.get("messages") {
                    span.input_messages = messages::from_openai_objects(msgs);
                }
            }
            if span.declared_tools.is_empty() {
                if let Some(tools) = body.get("tools") {
                    span.declared_tools = tool_names(tools);
                }
            }
        }
    }
    if span.kind == SpanKind::Tool {
        fill(&mut span.tool_name, || {
            a.first_str(&[oi::TOOL_NAME, oi::TOOL_CALL_FUNCTION_NAME])
        });
        fill(&mut span.tool_call_id, || {
            a.first_str(&[oi::TOOL_CALL_ID, "tool.id"])
        });
        fill(&mut span.tool_arguments, || {
            a.json(oi::TOOL_CALL_FUNCTION_ARGUMENTS)
                .or_else(|| input_value.clone())
        });
        if span.tool_result.is_none() {
            if let Some(raw) = a.get(oi::OUTPUT_VALUE) {
                span.tool_result = Some(parse_if_json(raw));
                *raw_tool_result = Some(raw.clone());
            }
        }
    }
}
