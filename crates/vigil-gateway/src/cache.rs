//! Response caching: an exact cache keyed by a hash of the normalised request, and a semantic cache
//! that matches a new request to an earlier one whose prompt embedding is similar enough.
//!
//! Entries are per project and per requested model, live for `ttl`, and the whole cache is bounded
//! in bytes (oldest entries go first). Only complete, successful answers are stored, in OpenAI shape;
//! a hit is served in the caller's format, streamed if the caller asked for a stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Exact cache on (`false` by default: answers of a model are not always meant to repeat).
    pub enabled: bool,
    pub ttl: String,
    /// Memory the cache may hold (`64MiB`).
    pub max_size: String,
    pub semantic: Option<SemanticConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl: "10m".into(),
            max_size: "64MiB".into(),
            semantic: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticConfig {
    /// The embedding model, called through this gateway (an alias or `provider/model`).
    pub embedding_model: String,
    /// Cosine similarity at or above which an earlier answer is reused (`0.95`).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_threshold() -> f64 {
    0.95
}

/// Sorts object keys recursively and drops fields that do not change the answer, so that the same
/// question asked with keys in another order, or streamed instead of not, hits the same entry.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if matches!(
                    k.as_str(),
                    "stream" | "stream_options" | "user" | "metadata"
                ) {
                    continue;
                }
                out.insert(k.clone(), normalise(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

pub fn exact_key(project: &str, requested_model: &str, openai_view: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    h.update([0]);
    h.update(requested_model.as_bytes());
    h.update([0]);
    h.update(normalise(openai_view).to_string().as_bytes());
    h.finalize().into()
}

/// The text a semantic match compares: the user's question, when the conversation ends with one.
/// A conversation that ends with a tool result or an assistant turn is mid-task; answering it from
/// another conversation's cache would be wrong, so it is never matched semantically.
pub fn semantic_text(openai_view: &Value) -> Option<String> {
    openai_view["messages"]
        .as_array()?
        .last()
        .filter(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
}

#[derive(Clone)]
pub struct Entry {
    /// The answer in OpenAI `chat.completion` shape.
    pub response: Value,
    /// What producing it cost, reported as saved on a hit.
    pub cost_usd: Option<f64>,
    pub target_model: String,
    pub provider: String,
}

struct Stored {
    entry: Entry,
    at: Instant,
    bytes: usize,
    scope: (String, String),
    embedding: Option<Vec<f32>>,
}

pub struct Cache {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], Stored>,
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

impl Cache {
    pub fn new(ttl: Duration, max_bytes: usize) -> Self {
        Self {
            ttl,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Entry> {
        let inner = self.lock();
        inner
            .entries
            .get(key)
            .filter(|s| s.at.elapsed() < self.ttl)
            .map(|s| s.entry.clone())
    }

    /// The freshest entry of the same project and model whose embedding is at least `threshold`
    /// similar, with the similarity.
    pub fn nearest(
        &self,
        scope: (&str, &str),
        embedding: &[f32],
        threshold: f64,
    ) -> Option<(Entry, f64)> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .filter(|s| s.at.elapsed() < self.ttl && s.scope.0 == scope.0 && s.scope.1 == scope.1)
            .filter_map(|s| Some((s, cosine(s.embedding.as_deref()?, embedding))))
            .filter(|(_, sim)| *sim >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, sim)| (s.entry.clone(), sim))
    }

    pub fn put(
        &self,
        key: [u8; 32],
        scope: (&str, &str),
        entry: Entry,
        embedding: Option<Vec<f32>>,
    ) {
        let bytes =
            entry.response.to_string().len() + embedding.as_ref().map_or(0, |e| e.len() * 4) + 128;
        if bytes > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
        }
        // Oldest first out, until the new entry fits.
        while inner.bytes + bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.entries.remove(&oldest) {
                inner.bytes -= old.bytes;
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(key);
        inner.entries.insert(
            key,
            Stored {
                entry,
                at: Instant::now(),
                bytes,
                scope: (scope.0.to_string(), scope.1.to_string()),
                embedding,
            },
        );
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// A cached `chat.completion` replayed as an OpenAI chunk stream.
pub fn openai_stream_of(resp: &Value, include_usage: bool) -> String {
    let base = |choices: Value| {
        serde_json::json!({"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"],
                           "model": resp["model"], "choices": choices})
    };
    let msg = &resp["choices"][0]["message"];
    let mut delta =
        serde_json::json!({"role": "assistant", "content": msg["content"].as_str().unwrap_or("")});
    if let Some(tc) = msg["tool_calls"].as_array() {
        let calls: Vec<Value> = tc
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c["index"] = serde_json::json!(i);
                c
            })
            .collect();
        delta["tool_calls"] = Value::Array(calls);
    }
    let mut out = format!(
        "data: {}\n\n",
        base(serde_json::json!([{"index": 0, "delta": delta, "finish_reason": null}]))
    );
    out += &format!(
        "data: {}\n\n",
        base(
            serde_json::json!([{"index": 0, "delta": {}, "finish_reason": resp["choices"][0]["finish_reason"]}])
        )
    );
    if include_usage {
        let mut u = base(serde_json::json!([]));
        u["usage"] = resp["usage"].clone();
        out += &format!("data: {u}\n\n");
    }
    out + "data: [DONE]\n\n"
}

/// A cached answer replayed as Anthropic stream events.
pub fn anthropic_stream_of(resp: &Value) -> String {
    let msg = crate::translate::openai_response_to_anthropic(resp);
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut start = msg.clone();
    start["content"] = serde_json::json!([]);
    start["stop_reason"] = Value::Null;
    let mut out = ev(
        "message_start",
        serde_json::json!({"type": "message_start", "message": start}),
    );
    for (i, block) in msg["content"].as_array().into_iter().flatten().enumerate() {
        let (open, delta) = if block["type"] == "text" {
            (
                serde_json::json!({"type": "text", "text": ""}),
                serde_json::json!({"type": "text_delta", "text": block["text"]}),
            )
        } else {
            (
                serde_json::json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                serde_json::json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        };
        out += &ev(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": i, "content_block": open}),
        );
        out += &ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": i, "delta": delta}),
        );
        out += &ev(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": i}),
        );
    }
    out += &ev(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": null},
        "usage": {"output_tokens": msg["usage"]["output_tokens"]}}),
    );
    out + &ev("message_stop", serde_json::json!({"type": "message_stop"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_ignore_order_and_streaming_and_entries_expire_and_are_bounded() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "temperature": 0});
        let b = json!({"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"});
        assert_eq!(exact_key("p", "m", &a), exact_key("p", "m", &b));
        assert_ne!(exact_key("p", "m", &a), exact_key("q", "m", &a));
        let c = Cache::new(Duration::from_millis(50), 10_000);
        let e = Entry {
            response: json!({"x": 1}),
            cost_usd: Some(0.1),
            target_model: "m".into(),
            provider: "p".into(),
        };
        c.put([1; 32], ("p", "m"), e.clone(), Some(vec![1.0, 0.0]));
        assert!(c.get(&[1; 32]).is_some());
        assert!(c.nearest(("p", "m"), &[0.99, 0.05], 0.95).is_some());
        assert!(c.nearest(("p", "m"), &[0.0, 1.0], 0.95).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get(&[1; 32]).is_none());
        for i in 0..200u8 {
            c.put([i; 32], ("p", "m"), e.clone(), None);
        }
        assert!(c.lock().bytes <= 10_000);
    }

    #[test]
    fn cached_answers_replay_as_streams() {
        let resp = json!({"id": "c1", "created": 1, "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}}]});
        let s = openai_stream_of(&resp, true);
        assert!(
            s.contains("\"Hello\"")
                && s.contains("\"total_tokens\":3")
                && s.ends_with("data: [DONE]\n\n")
        );
        let a = anthropic_stream_of(&resp);
        assert!(a.contains("text_delta") && a.contains("message_stop"));
    }
}
