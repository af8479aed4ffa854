//! Lean decoding of stored spans: for readers that judge spans (rule evaluators, LLM judges) and
//! read none of the attribute maps but a few keys.
//!
//! A span keeps every original attribute, and in a stored span they are most of the bytes and
//! most of the allocations: the raw message JSON an instrumentation sent beside the canonical
//! messages, resource attributes, events. Decoding them only to drop them was most of what the
//! evaluation queue spent reading a trace back. Inside `decoding_lean`, `Span`'s deserializer
//! skips them (parsing without allocating) and keeps only `KEPT`; everywhere else it decodes in full.

use std::cell::Cell;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The attributes a lean span keeps: the OpenInference input and output a rule reads when a span
/// has no canonical messages, and the tags that mark the quality loop's own calls.
pub const KEPT: [&str; 3] = ["input.value", "output.value", "vigil.tags"];

thread_local! {
    static LEAN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with spans decoded lean on this thread (see the module's documentation).
pub fn decoding_lean<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            LEAN.with(|l| l.set(self.0));
        }
    }
    let _reset = Reset(LEAN.with(|l| l.replace(true)));
    f()
}

fn lean() -> bool {
    LEAN.with(Cell::get)
}

/// An attribute map: in full, or only the `KEPT` keys when decoding lean.
pub(crate) fn attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    if !lean() {
        return Map::deserialize(d);
    }
    struct Kept;
    impl<'de> Visitor<'de> for Kept {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of attributes")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<Key>()? {
                match key.0 {
                    Some(k) => {
                        out.insert(k.to_string(), map.next_value::<Value>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(Kept)
}

/// A list (events, links) that lean decoding skips: empty when decoding lean.
pub(crate) fn skipped<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    if !lean() {
        return Vec::deserialize(d);
    }
    IgnoredAny::deserialize(d)?;
    Ok(Vec::new())
}

/// An attribute key: which of `KEPT` it is, read without allocating.
struct Key(Option<&'static str>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(KEPT.iter().copied().find(|k| *k == v)))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Key, E> {
                Ok(Key(KEPT.iter().copied().find(|k| k.as_bytes() == v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Span, SpanEvent};

    use serde_json::json;

    #[test]
    fn lean_spans_keep_what_rules_read_and_full_spans_everything() {
        let span = Span {
            trace_id: crate::TraceId([1; 16]),
            span_id: crate::SpanId([2; 8]),
            name: "answer".into(),
            attributes: [
                ("output.value".to_string(), json!("the answer")),
                ("vigil.tags".to_string(), json!(["llm-judge"])),
                (
                    "gen_ai.input.messages".to_string(),
                    json!("[{\"role\": \"user\"}]"),
                ),
                ("http.status_code".to_string(), json!(200)),
            ]
            .into_iter()
            .collect(),
            resource_attributes: [("service.name".to_string(), json!("bot"))]
                .into_iter()
                .collect(),
            events: vec![SpanEvent {
                name: "gen_ai.choice".into(),
                ..SpanEvent::default()
            }],
            ..Span::default()
        };
        let bytes = serde_json::to_vec(&span).unwrap();
        let full: Span = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(full, span);
        let lean: Span = decoding_lean(|| serde_json::from_slice(&bytes).unwrap());
        assert_eq!(lean.name, "answer");
        let mut kept: Vec<&str> = lean.attributes.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["output.value", "vigil.tags"]);
        assert_eq!(lean.attributes["output.value"], json!("the answer"));
        assert!(lean.resource_attributes.is_empty() && lean.events.is_empty());
        // The mode ends with the call.
        let again: Span = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(again, span);
    }
}
