//! Chat messages in the three shapes instrumentations send them, parsed into `Message`s.

use serde_json::{Map, Value};
use vigil_model::{Message, ToolCall};

use super::attrs::{as_text, indexed, parse_if_json};

/// GenAI semconv messages: `[{role, parts: [{type: text|tool_call|tool_call_response|…}], name?}]`.
/// Also accepts the older OpenAI-like `{role, content, tool_calls}` objects.
pub fn from_genai(value: &Value) -> Vec<Message> {
    if let Some(messages) = value.as_str().and_then(typed_genai) {
        return messages;
    }
    let value = parse_if_json(value);
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items.iter().filter_map(genai_message).collect()
}

/// The GenAI shape read straight from its JSON text, without a map per object: most of a span's
/// normalisation time went into building and hashing those. Anything that does not fit exactly
/// (a missing `parts`, a field of another type, a duplicate key) returns `None`, and the general
/// path over `Value`s, which accepts every shape, reads the text instead.
fn typed_genai(text: &str) -> Option<Vec<Message>> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(default)]
        role: Option<String>,
        #[serde(default)]
        name: Option<String>,
        parts: Vec<Part>,
    }
    let typed: Vec<Typed> = serde_json::from_str(text).ok()?;
    let messages = typed
        .into_iter()
        .map(|m| {
            let msg = Message {
                role: m.role.unwrap_or_else(|| "user".into()),
                name: m.name,
                ..Message::default()
            };
            with_parts(msg, m.parts)
        })
        .collect();
    Some(messages)
}

fn genai_message(item: &Value) -> Option<Message> {
    let obj = item.as_object()?;
    let Some(Value::Array(parts)) = obj.get("parts") else {
        return openai_object(item);
    };
    Some(with_parts(
        new_message(obj),
        parts.iter().map(Part::from_value).collect(),
    ))
}

/// One part of a GenAI message, as both readings see it: deserialised from the text by the typed
/// one, taken from a `Value` by the general one.
#[derive(serde::Deserialize)]
struct Part {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
    /// A tool call's answer; some instrumentations name it `result`.
    #[serde(default, alias = "result")]
    response: Option<Value>,
}

impl Part {
    /// The general reading: a field of another type counts as absent.
    fn from_value(part: &Value) -> Part {
        let text = |key| part.get(key).and_then(Value::as_str).map(str::to_string);
        Part {
            kind: text("type"),
            content: part.get("content").cloned(),
            id: text("id"),
            name: text("name"),
            arguments: part.get("arguments").cloned(),
            response: part.get("response").or_else(|| part.get("result")).cloned(),
        }
    }
}

/// `msg` with the text, tool calls and answered call of its parts.
fn with_parts(mut msg: Message, parts: Vec<Part>) -> Message {
    // `as_text`, taking the value: message bodies are moved, not copied.
    let into_text = |v: Value| match v {
        Value::String(s) => Some(s),
        other => as_text(&other),
    };
    let mut texts = Vec::new();
    for part in parts {
        match part.kind.as_deref().unwrap_or("text") {
            "text" | "reasoning" => texts.extend(part.content.and_then(into_text)),
            "tool_call" => msg.tool_calls.push(ToolCall {
                id: part.id,
                name: part.name.unwrap_or_default(),
                arguments: part
                    .arguments
                    .map(|a| parse_if_json(&a))
                    .unwrap_or(Value::Null),
            }),
            "tool_call_response" => {
                msg.tool_call_id = part.id;
                texts.extend(part.response.and_then(into_text));
            }
            other => texts.push(format!("[{other}]")),
        }
    }
    with_texts(msg, texts)
}

/// `{role, content, tool_calls: [{id, function: {name, arguments}}], tool_call_id}` — OpenAI's shape,
/// which old GenAI events and request bodies use.
fn openai_style_fields(obj: &Map<String, Value>, msg: &mut Message, texts: &mut Vec<String>) {
    match obj.get("content") {
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    texts.push(t.to_string());
                } else if p.get("type").and_then(Value::as_str) == Some("tool_use") {
                    msg.tool_calls.push(ToolCall {
                        id: p.get("id").and_then(Value::as_str).map(str::to_string),
                        name: p
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        arguments: p.get("input").cloned().unwrap_or(Value::Null),
                    });
                } else if p.get("type").and_then(Value::as_str) == Some("tool_result") {
                    msg.tool_call_id = p
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(t) = p.get("content").and_then(as_text) {
                        texts.push(t);
                    }
                }
            }
        }
        Some(v) => {
            if let Some(t) = as_text(v) {
                texts.push(t);
            }
        }
        None => {}
    }
    if let Some(Value::Array(calls)) = obj.get("tool_calls") {
        msg.tool_calls
            .extend(calls.iter().filter_map(openai_tool_call));
    }
    if msg.tool_call_id.is_none() {
        // `tool_call_id` on any message; a bare `id` names the answered call only on a tool message.
        let id = obj
            .get("tool_call_id")
            .or_else(|| obj.get("id").filter(|_| msg.role == "tool"));
        msg.tool_call_id = id.and_then(Value::as_str).map(str::to_string);
    }
}

pub fn openai_tool_call(call: &Value) -> Option<ToolCall> {
    let f = call.get("function").unwrap_or(call);
    let name = f.get("name").and_then(Value::as_str)?;
    Some(ToolCall {
        id: call.get("id").and_then(Value::as_str).map(str::to_string),
        name: name.to_string(),
        arguments: f
            .get("arguments")
            .or_else(|| f.get("input"))
            .map(parse_if_json)
            .unwrap_or(Value::Null),
    })
}

/// OpenAI-shaped message objects (request bodies, GenAI events).
pub fn from_openai_objects(items: &[Value]) -> Vec<Message> {
    items.iter().filter_map(openai_object).collect()
}

fn openai_object(item: &Value) -> Option<Message> {
    let obj = item.as_object()?;
    let mut msg = new_message(obj);
    let mut texts = Vec::new();
    openai_style_fields(obj, &mut msg, &mut texts);
    Some(with_texts(msg, texts))
}

fn new_message(obj: &Map<String, Value>) -> Message {
    Message {
        role: obj
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_string(),
        name: obj.get("name").and_then(Value::as_str).map(str::to_string),
        ..Message::default()
    }
}

fn with_texts(mut msg: Message, texts: Vec<String>) -> Message {
    if !texts.is_empty() {
        msg.content = Some(texts.join("\n"));
    }
    msg
}

/// OpenInference flattened messages, already unflattened: `[{message: {role, content, contents, tool_calls, …}}]`.
pub fn from_openinference(items: &[Value]) -> Vec<Message> {
    items
        .iter()
        .filter_map(|item| {
            let m = item.get("message")?;
            let mut msg = Message {
                role: m
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_string(),
                name: m.get("name").and_then(Value::as_str).map(str::to_string),
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..Message::default()
            };
            let mut texts: Vec<String> = m.get("content").and_then(as_text).into_iter().collect();
            let contents = m.get("contents").map(indexed).unwrap_or_default();
            if texts.is_empty() {
                texts.extend(
                    contents
                        .iter()
                        .filter_map(|c| c.get("message_content")?.get("text").and_then(as_text)),
                );
            }
            msg.tool_calls = m
                .get("tool_calls")
                .map(indexed)
                .unwrap_or_default()
                .iter()
                .filter_map(oi_tool_call)
                .collect();
            if msg.tool_calls.is_empty() {
                msg.tool_calls = contents.iter().filter_map(oi_tool_call).collect();
            }
            if let Some(name) = m.get("function_call_name").and_then(Value::as_str) {
                msg.tool_calls.push(ToolCall {
                    id: None,
                    name: name.to_string(),
                    arguments: m
                        .get("function_call_arguments_json")
                        .map(parse_if_json)
                        .unwrap_or(Value::Null),
                });
            }
            if !texts.is_empty() {
                msg.content = Some(texts.join("\n"));
            }
            Some(msg)
        })
        .collect()
}

fn oi_tool_call(v: &Value) -> Option<ToolCall> {
    let tc = v.get("tool_call")?;
    let f = tc.get("function")?;
    Some(ToolCall {
        id: tc.get("id").and_then(as_text),
        name: f.get("name").and_then(Value::as_str)?.to_string(),
        arguments: f.get("arguments").map(parse_if_json).unwrap_or(Value::Null),
    })
}

/// OpenLLMetry legacy `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`, already unflattened.
pub fn from_openllmetry(items: &[Value]) -> (Vec<Message>, Vec<String>) {
    let mut finish = Vec::new();
    let msgs = items
        .iter()
        .filter_map(|m| {
            let obj = m.as_object()?;
            if let Some(f) = obj.get("finish_reason").and_then(Value::as_str) {
                finish.push(f.to_string());
            }
            let mut msg = Message {
                role: obj
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("user")
                    .to_string(),
                tool_call_id: obj
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..Message::default()
            };
            msg.content = obj.get("content").map(|c| match parse_if_json(c) {
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| {
                        p.get("text")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| as_text(p))
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => as_text(&other).unwrap_or_default(),
            });
            msg.tool_calls = obj
                .get("tool_calls")
                .map(indexed)
                .unwrap_or_default()
                .iter()
                .filter_map(openai_tool_call)
                .collect();
            if let Some(fc) = obj.get("function_call").and_then(openai_tool_call) {
                msg.tool_calls.push(fc);
            }
            Some(msg)
        })
        .collect();
    (msgs, finish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn genai_parts_become_content_and_tool_calls() {
        let v = json!([
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": 1}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"ok": true}}]},
            {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
        ]);
        let m = from_genai(&Value::String(v.to_string()));
        assert_eq!(m[0].tool_calls[0].name, "lookup");
        assert_eq!(m[0].tool_calls[0].arguments, json!({"q": 1}));
        assert_eq!(m[1].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(m[1].content.as_deref(), Some("{\"ok\":true}"));
        assert_eq!(m[2].content.as_deref(), Some("hi"));
    }

    /// The typed reading of GenAI message text gives what the general path over `Value`s gives
    /// (handed a parsed value, `from_genai` takes that path), and declines what it cannot read.
    #[test]
    fn typed_genai_reading_matches_the_general_path() {
        let texts = [
            r#"[{"role":"system","parts":[{"type":"text","content":"Be brief.\nUse tools."}]}]"#,
            r#"[{"role":"user","parts":[{"content":"no type"},{"type":"text","content":{"rich":[1,2]}}]}]"#,
            r#"[{"role":"assistant","name":"bot","finish_reason":"tool_calls","parts":[{"type":"reasoning","content":"hm"},{"type":"tool_call","id":"c1","name":"lookup","arguments":"{\"q\":1}"},{"type":"tool_call","name":"x"}]}]"#,
            r#"[{"role":"tool","parts":[{"type":"tool_call_response","id":"c1","response":"[]"}]},{"parts":[{"type":"tool_call_response","result":{"ok":true}}]}]"#,
            r#"[{"role":"user","parts":[{"type":"image","uri":"x"},{"type":"text","content":null}]}]"#,
            r#"[]"#,
            // Shapes only the general path reads: they must come out the same.
            r#"[{"role":"user","content":"openai style","tool_calls":[{"id":"t","function":{"name":"f","arguments":"{}"}}]}]"#,
            r#"[{"role":7,"parts":[]}]"#,
            r#"[{"role":"user","parts":[{"type":"text","content":"a","content":"b"}]}]"#,
            r#"[{"role":"user","parts":[{"type":"tool_call","id":5,"name":"f"}]}]"#,
            r#"[{"role":"tool","parts":[{"type":"tool_call_response","response":null,"result":"x"}]}]"#,
            r#"["loose text", {"role":"user","parts":[{"type":"text","content":"x"}]}]"#,
            r#"{"role":"user"}"#,
            r#"not json"#,
        ];
        for text in texts {
            let general = match serde_json::from_str::<Value>(text) {
                Ok(v) => from_genai(&v),
                Err(_) => Vec::new(),
            };
            assert_eq!(from_genai(&Value::String(text.into())), general, "{text}");
        }
        assert!(typed_genai(r#"[{"role":"user","content":"no parts"}]"#).is_none());
        assert!(typed_genai(r#"[{"role":"user","parts":[]}]"#).is_some());
    }

    #[test]
    fn openllmetry_completions_carry_finish_reasons_and_tool_calls() {
        let items = vec![
            json!({"role": "assistant", "finish_reason": "tool_calls", "tool_calls": {"0": {"id": "t", "name": "f", "arguments": "{\"a\":1}"}}}),
        ];
        let (m, f) = from_openllmetry(&items);
        assert_eq!(f, vec!["tool_calls"]);
        assert_eq!(m[0].tool_calls[0].arguments, json!({"a": 1}));
    }
}
