//! OpenTelemetry GenAI semantic conventions (`gen_ai.*`, current and older keys).

use serde_json::Value;
use vigil_model::keys::genai as g;
use vigil_model::{Message, Span, SpanKind};

use super::attrs::{indexed, parse_if_json, Attrs};
use super::{fill, messages, normalize_provider};

pub fn apply(a: &Attrs, span: &mut Span, raw_tool_result: &mut Option<Value>) {
    if let Some(op) = a.str(g::OPERATION_NAME) {
        let kind = match op {
            "chat" | "text_completion" | "generate_content" | "responses" | "completion" => {
                Some(SpanKind::Llm)
            }
            "embeddings" | "embedding" => Some(SpanKind::Embedding),
            "execute_tool" => Some(SpanKind::Tool),
            "invoke_agent" | "create_agent" => Some(SpanKind::Agent),
            "invoke_workflow" => Some(SpanKind::Chain),
            "retrieval" | "search_memory" => Some(SpanKind::Retrieval),
            _ => None,
        };
        if let Some(kind) = kind {
            span.kind = kind;
        }
    }
    fill(&mut span.model, || a.text(g::REQUEST_MODEL));
    fill(&mut span.response_model, || a.text(g::RESPONSE_MODEL));
    fill(&mut span.provider, || {
        a.first_str(&[g::PROVIDER_NAME, g::SYSTEM])
            .map(|p| normalize_provider(&p))
    });
    fill(&mut span.input_tokens, || a.int(g::USAGE_INPUT_TOKENS));
    fill(&mut span.output_tokens, || a.int(g::USAGE_OUTPUT_TOKENS));
    fill(&mut span.cached_input_tokens, || {
        a.int(g::USAGE_CACHE_READ_INPUT_TOKENS)
    });
    fill(&mut span.reasoning_tokens, || {
        a.int(g::USAGE_REASONING_OUTPUT_TOKENS)
    });
    fill(&mut span.agent_name, || a.text(g::AGENT_NAME));
    fill(&mut span.session_id, || a.text(g::CONVERSATION_ID));
    fill(&mut span.time_to_first_token_ms, || {
        a.float("gen_ai.response.time_to_first_chunk")
            .map(|s| s * 1000.0)
    });
    if span.finish_reasons.is_empty() {
        if let Some(v) = a.get(g::RESPONSE_FINISH_REASONS) {
            span.finish_reasons = match v {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
        }
    }
    if span.input_messages.is_empty() {
        let mut input = Vec::new();
        if let Some(sys) = a.json(g::SYSTEM_INSTRUCTIONS) {
            let text: Vec<String> = match &sys {
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("content").and_then(Value::as_str).map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            if !text.is_empty() {
                input.push(Message {
                    role: "system".into(),
                    content: Some(text.join("\n")),
                    ..Message::default()
                });
            }
        }
        if let Some(v) = a.get(g::INPUT_MESSAGES) {
            input.extend(messages::from_genai(v));
        }
        span.input_messages = input;
    }
    if span.output_messages.is_empty() {
        if let Some(v) = a.get(g::OUTPUT_MESSAGES) {
            span.output_messages = messages::from_genai(v);
            if span.finish_reasons.is_empty() {
                if let Value::Array(items) = parse_if_json(v) {
                    span.finish_reasons = items
                        .iter()
                        .filter_map(|m| m.get("finish_reason")?.as_str().map(str::to_string))
                        .collect();
                }
            }
        }
    }
    if span.declared_tools.is_empty() {
        if let Some(defs) = a.get(g::TOOL_DEFINITIONS) {
            span.declared_tools = match defs.as_str().and_then(typed_tool_names) {
                Some(names) => names,
                None => tool_names(&parse_if_json(defs)),
            };
        }
    }
    fill(&mut span.tool_name, || a.text(g::TOOL_NAME));
    fill(&mut span.tool_call_id, || a.text(g::TOOL_CALL_ID));
    fill(&mut span.tool_arguments, || a.json(g::TOOL_CALL_ARGUMENTS));
    if span.tool_result.is_none() {
        if let Some(raw) = a.get(g::TOOL_CALL_RESULT) {
            span.tool_result = Some(parse_if_json(raw));
            *raw_tool_result = Some(raw.clone());
        }
    }
}

/// `tool_names` of a JSON list of `{name}` / `{function: {name}}` objects, read without building
/// the definitions (their parameter schemas are most of the text); `None` for any other shape.
fn typed_tool_names(text: &str) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Def {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        function: Option<Function>,
    }
    #[derive(serde::Deserialize)]
    struct Function {
        #[serde(default)]
        name: Option<String>,
    }
    let defs: Vec<Def> = serde_json::from_str(text).ok()?;
    let mut names: Vec<String> = defs
        .into_iter()
        .filter_map(|d| d.name.or_else(|| d.function?.name))
        .collect();
    names.dedup();
    Some(names)
}

/// Names from a list of tool definitions in any of the common shapes:
/// `{name}`, `{type: function, function: {name}}`, `{tool: {json_schema: …}}`, or an indexed object.
pub fn tool_names(defs: &Value) -> Vec<String> {
    let mut names: Vec<String> = indexed(defs)
        .iter()
        .filter_map(|d| {
            let d = parse_if_json(d);
            d.get("name")
                .or_else(|| d.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tool_names_match_the_general_path_or_decline() {
        let read = [
            r#"[{"type":"function","name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}]"#,
            r#"[{"type":"function","function":{"name":"lookup","parameters":{}}},{"name":"a"},{"name":"a"},{"other":1}]"#,
            r#"[]"#,
        ];
        for text in read {
            let general = tool_names(&serde_json::from_str::<Value>(text).unwrap());
            assert_eq!(typed_tool_names(text), Some(general), "{text}");
        }
        for text in [
            r#"{"0":{"name":"a"}}"#,
            r#"["{\"name\":\"a\"}"]"#,
            r#"[{"name":3}]"#,
            "x",
        ] {
            assert_eq!(typed_tool_names(text), None, "{text}");
        }
    }
}
