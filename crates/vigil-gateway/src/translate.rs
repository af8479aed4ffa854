//! Cross-format routing: OpenAI Chat Completions ⇄ Anthropic Messages. Requests, responses and
//! stream events are translated so that a client of either SDK can be served by a model of either
//! API: system prompts, multi-part content, tools and tool choice, tool calls and their results,
//! finish reasons and usage.

use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; OpenAI clients often omit it.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (string or parts) → Anthropic content blocks.
fn openai_content_to_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": p.get("text").cloned().unwrap_or_default()})),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                    Some(match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                        Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Appends a message, merging it into the previous one when the role repeats (Anthropic wants
/// user and assistant turns to alternate).
fn push_block_message(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(content) = last["content"].as_array_mut() {
                content.extend(blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI chat request, to be served by an Anthropic model.
pub fn openai_request_to_anthropic(req: &Value, model: &str) -> Value {
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in req["messages"].as_array().into_iter().flatten() {
        match m["role"].as_str().unwrap_or("user") {
            "system" | "developer" => system.push(text_of(&m["content"])),
            "assistant" => {
                let mut blocks = openai_content_to_blocks(&m["content"]);
                for tc in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = tc
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": tc["id"],
                        "name": tc.pointer("/function/name").cloned().unwrap_or_default(),
                        "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({"arguments": args})),
                    }));
                }
                push_block_message(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => push_block_message(
                &mut messages,
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m["tool_call_id"],
                    "content": text_of(&m["content"]),
                })],
            ),
            _ => push_block_message(
                &mut messages,
                "user",
                openai_content_to_blocks(&m["content"]),
            ),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let max_tokens = req["max_completion_tokens"]
        .as_u64()
        .or_else(|| req["max_tokens"].as_u64())
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    match &req["stop"] {
        Value::String(s) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Value::Array(a) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = req["tools"].as_array() {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f["name"],
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object", "properties": {}})),
                })
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let choice = match &req["tool_choice"] {
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    };
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = req["user"].as_str() {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Value::Object(out)
}

pub fn anthropic_stop_to_openai(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

pub fn openai_finish_to_anthropic(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// An Anthropic response, as OpenAI's `chat.completion`.
pub fn anthropic_response_to_openai(resp: &Value, created: i64) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in resp["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": b["id"],
                "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let input = resp
        .pointer("/usage/input_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        + resp
            .pointer("/usage/cache_read_input_tokens")
            .and_then(Value::as_i64)
            .unwrap_or(0)
        + resp
            .pointer("/usage/cache_creation_input_tokens")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    let output = resp
        .pointer("/usage/output_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    json!({
        "id": resp["id"],
        "object": "chat.completion",
        "created": created,
        "model": resp["model"],
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": anthropic_stop_to_openai(resp["stop_reason"].as_str().unwrap_or("end_turn")),
        }],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    })
}

/// Anthropic content blocks → OpenAI content parts (text and images) and tool results.
fn anthropic_user_content(content: &Value) -> (Value, Vec<Value>) {
    let blocks = match content {
        Value::String(s) => return (json!(s), Vec::new()),
        Value::Array(b) => b,
        _ => return (json!(""), Vec::new()),
    };
    let mut parts = Vec::new();
    let mut tool_results = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
            Some("image") => {
                let url = match b.pointer("/source/type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        b.pointer("/source/media_type")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png"),
                        b.pointer("/source/data")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                    _ => b
                        .pointer("/source/url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => tool_results.push(json!({
                "role": "tool",
                "tool_call_id": b["tool_use_id"],
                "content": text_of(&b["content"]),
            })),
            _ => {}
        }
    }
    let content = if parts.iter().all(|p| p["type"] == "text") {
        json!(parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"))
    } else {
        Value::Array(parts)
    };
    (content, tool_results)
}

/// An Anthropic messages request, to be served by an OpenAI-format model.
pub fn anthropic_request_to_openai(req: &Value, model: &str) -> Value {
    let mut messages = Vec::new();
    let system = text_of(&req["system"]);
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in req["messages"].as_array().into_iter().flatten() {
        if m["role"] == "assistant" {
            let mut text = String::new();
            let mut tool_calls = Vec::new();
            match &m["content"] {
                Value::String(s) => text.push_str(s),
                Value::Array(blocks) => {
                    for b in blocks {
                        match b["type"].as_str() {
                            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
                            Some("tool_use") => tool_calls.push(json!({
                                "id": b["id"], "type": "function",
                                "function": {"name": b["name"], "arguments": b["input"].to_string()},
                            })),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !tool_calls.is_empty() {
                msg["tool_calls"] = Value::Array(tool_calls);
            }
            messages.push(msg);
        } else {
            let (content, tool_results) = anthropic_user_content(&m["content"]);
            messages.extend(tool_results);
            if content != json!("") {
                messages.push(json!({"role": "user", "content": content}));
            }
        }
    }
    let mut out = json!({"model": model, "messages": messages});
    if let Some(n) = req["max_tokens"].as_u64() {
        out["max_tokens"] = json!(n);
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out[key] = v.clone();
        }
    }
    if let Some(stop) = req["stop_sequences"].as_array() {
        out["stop"] = Value::Array(stop.clone());
    }
    if req["stream"].as_bool() == Some(true) {
        out["stream"] = json!(true);
        out["stream_options"] = json!({"include_usage": true});
    }
    if let Some(tools) = req["tools"].as_array() {
        out["tools"] = Value::Array(
            tools
                .iter()
                .map(|t| json!({"type": "function", "function": {
                    "name": t["name"],
                    "description": t.get("description").cloned().unwrap_or(json!("")),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
                }}))
                .collect(),
        );
    }
    if let Some(choice) = req.get("tool_choice") {
        out["tool_choice"] = match choice["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => json!("auto"),
        };
    }
    if let Some(user) = req.pointer("/metadata/user_id") {
        out["user"] = user.clone();
    }
    out
}

/// An OpenAI `chat.completion`, as an Anthropic message.
pub fn openai_response_to_anthropic(resp: &Value) -> Value {
    let choice = &resp["choices"][0];
    let mut content = Vec::new();
    let text = text_of(&choice["message"]["content"]);
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for tc in choice["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let args = tc
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": tc["id"],
            "name": tc.pointer("/function/name").cloned().unwrap_or_default(),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    json!({
        "id": resp["id"],
        "type": "message",
        "role": "assistant",
        "model": resp["model"],
        "content": content,
        "stop_reason": openai_finish_to_anthropic(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": resp.pointer("/usage/prompt_tokens").cloned().unwrap_or(json!(0)),
            "output_tokens": resp.pointer("/usage/completion_tokens").cloned().unwrap_or(json!(0)),
        },
    })
}

/// Translates an upstream OpenAI chunk stream into Anthropic message events.
#[derive(Default)]
pub struct OpenAiToAnthropicStream {
    started: bool,
    /// Index of the open content block and whether it is text.
    open: Option<(usize, bool)>,
    next_index: usize,
    /// OpenAI tool-call index → our block index.
    tool_blocks: Vec<(u64, usize)>,
    stop: Option<String>,
    output_tokens: i64,
    finished: bool,
}

fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl OpenAiToAnthropicStream {
    /// One upstream `data:` payload → zero or more events for the client.
    pub fn chunk(&mut self, data: &str) -> String {
        let mut out = String::new();
        if data.trim() == "[DONE]" {
            return self.finish();
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return out;
        };
        if !self.started {
            self.started = true;
            out += &anthropic_event(
                "message_start",
                json!({"type": "message_start", "message": {
                "id": v["id"], "type": "message", "role": "assistant", "model": v["model"], "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            );
        }
        if let Some(n) = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_i64)
        {
            self.output_tokens = n;
        }
        let choice = &v["choices"][0];
        if let Some(text) = choice
            .pointer("/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if !matches!(self.open, Some((_, true))) {
                out += &self.close();
                let i = self.next_index;
                self.next_index += 1;
                self.open = Some((i, true));
                out += &anthropic_event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
            }
            let i = self.open.map(|o| o.0).unwrap_or(0);
            out += &anthropic_event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for tc in choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = tc["index"].as_u64().unwrap_or(0);
            let block = match self.tool_blocks.iter().find(|(t, _)| *t == k) {
                Some((_, b)) => *b,
                None => {
                    out += &self.close();
                    let i = self.next_index;
                    self.next_index += 1;
                    self.tool_blocks.push((k, i));
                    self.open = Some((i, false));
                    out += &anthropic_event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": i, "content_block": {
                        "type": "tool_use", "id": tc["id"], "name": tc.pointer("/function/name").cloned().unwrap_or_default(), "input": {}}}),
                    );
                    i
                }
            };
            if let Some(args) = tc
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                out += &anthropic_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.stop = Some(openai_finish_to_anthropic(f).to_string());
        }
        out
    }

    fn close(&mut self) -> String {
        match self.open.take() {
            Some((i, _)) => anthropic_event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
            ),
            None => String::new(),
        }
    }

    /// Closes the message (at `[DONE]` or when the upstream stream ends).
    pub fn finish(&mut self) -> String {
        if self.finished || !self.started {
            return String::new();
        }
        self.finished = true;
        let mut out = self.close();
        out += &anthropic_event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.clone().unwrap_or_else(|| "end_turn".into()), "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens}}),
        );
        out += &anthropic_event("message_stop", json!({"type": "message_stop"}));
        out
    }
}

/// Translates an upstream Anthropic event stream into OpenAI chat chunks.
#[derive(Default)]
pub struct AnthropicToOpenAiStream {
    pub include_usage: bool,
    id: String,
    model: String,
    created: i64,
    input_tokens: i64,
    output_tokens: i64,
    /// Anthropic block index → OpenAI tool-call index.
    tool_index: Vec<(u64, usize)>,
    finish: Option<&'static str>,
    done: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(include_usage: bool, created: i64) -> Self {
        Self {
            include_usage,
            created,
            ..Self::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    }

    pub fn event(&mut self, data: &str) -> String {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return String::new();
        };
        match v["type"].as_str() {
            Some("message_start") => {
                self.id = v
                    .pointer("/message/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = v
                    .pointer("/message/model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.input_tokens = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                self.chunk(json!({"role": "assistant", "content": ""}), None)
            }
            Some("content_block_start")
                if v.pointer("/content_block/type") == Some(&json!("tool_use")) =>
            {
                let i = self.tool_index.len();
                self.tool_index.push((v["index"].as_u64().unwrap_or(0), i));
                self.chunk(json!({"tool_calls": [{"index": i, "id": v["content_block"]["id"], "type": "function",
                    "function": {"name": v["content_block"]["name"], "arguments": ""}}]}), None)
            }
            Some("content_block_delta") => match v.pointer("/delta/type").and_then(Value::as_str) {
                Some("text_delta") => self.chunk(json!({"content": v["delta"]["text"]}), None),
                Some("input_json_delta") => {
                    let block = v["index"].as_u64().unwrap_or(0);
                    let i = self
                        .tool_index
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map_or(0, |(_, i)| *i);
                    self.chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": v["delta"]["partial_json"]}}]}), None)
                }
                _ => String::new(),
            },
            Some("message_delta") => {
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_i64) {
                    self.output_tokens = n;
                }
                self.finish = v
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .map(anthropic_stop_to_openai);
                String::new()
            }
            Some("message_stop") => self.finish(),
            _ => String::new(),
        }
    }

    pub fn finish(&mut self) -> String {
        if self.done || self.id.is_empty() {
            return String::new();
        }
        self.done = true;
        let mut out = self.chunk(json!({}), Some(self.finish.unwrap_or("stop")));
        if self.include_usage {
            out += &format!(
                "data: {}\n\n",
                json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": {"prompt_tokens": self.input_tokens,
                "completion_tokens": self.output_tokens, "total_tokens": self.input_tokens + self.output_tokens}})
            );
        }
        out + "data: [DONE]\n\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_requests_become_anthropic_and_back() {
        let req = json!({
            "model": "fast", "max_tokens": 100, "stop": "END", "tool_choice": "required",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is order 7?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"id\": 7}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"status\": \"shipped\"}"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}]
        });
        let a = openai_request_to_anthropic(&req, "claude-haiku-4-5");
        assert_eq!(a["system"], "Be brief.");
        assert_eq!(a["messages"][1]["content"][0]["input"]["id"], 7);
        assert_eq!(a["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(a["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(a["tool_choice"]["type"], "any");
        assert_eq!(a["stop_sequences"][0], "END");
        let back = anthropic_request_to_openai(&a, "gpt-4o-mini");
        assert_eq!(back["messages"][0]["role"], "system");
        assert_eq!(
            back["messages"][2]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        assert_eq!(back["messages"][3]["role"], "tool");
        assert_eq!(back["tool_choice"], "required");
    }

    #[test]
    fn responses_and_streams_translate() {
        let resp = json!({"id": "msg_1", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"id": 7}}],
            "usage": {"input_tokens": 10, "output_tokens": 5}});
        let o = anthropic_response_to_openai(&resp, 0);
        assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"id\":7}"
        );
        assert_eq!(o["usage"]["total_tokens"], 15);
        let a = openai_response_to_anthropic(&o);
        assert_eq!(a["stop_reason"], "tool_use");
        assert_eq!(a["content"][1]["input"]["id"], 7);

        let mut s = OpenAiToAnthropicStream::default();
        let mut out = s.chunk(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#);
        out += &s.chunk(
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        );
        out += &s.chunk("[DONE]");
        assert!(
            out.contains("message_start")
                && out.contains("text_delta")
                && out.contains("\"end_turn\"")
                && out.ends_with("{\"type\":\"message_stop\"}\n\n")
        );

        let mut s = AnthropicToOpenAiStream::new(true, 0);
        let mut out = s.event(r#"{"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":3}}}"#);
        out += &s.event(r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"lookup","input":{}}}"#);
        out += &s.event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"id\":7}"}}"#);
        out += &s.event(r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":4}}"#);
        out += &s.event(r#"{"type":"message_stop"}"#);
        assert!(
            out.contains("\"tool_calls\"")
                && out.contains("\"finish_reason\":\"tool_calls\"")
                && out.contains("\"total_tokens\":7")
                && out.ends_with("data: [DONE]\n\n")
        );
    }
}
