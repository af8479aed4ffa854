//! OTLP attribute values → JSON, and typed reads over a flattened attribute map.

use opentelemetry_proto::tonic::common::v1::{any_value::Value as Av, AnyValue, KeyValue};
use serde_json::{Map, Number, Value};

/// Deeper values are replaced by a marker: recursion on network input must be bounded.
const MAX_DEPTH: usize = 32;

/// An OTLP value as JSON, for a value the caller keeps (it is copied).
pub fn to_json(value: &AnyValue) -> Value {
    into_json(value.clone())
}

/// An OTLP value as JSON: its strings are moved, not copied.
pub fn into_json(value: AnyValue) -> Value {
    convert(value, 0)
}

fn convert(value: AnyValue, depth: usize) -> Value {
    if depth >= MAX_DEPTH {
        return Value::String("[nested too deep]".into());
    }
    match value.value {
        None => Value::Null,
        Some(Av::StringValue(s)) => Value::String(s),
        Some(Av::BoolValue(b)) => Value::Bool(b),
        Some(Av::IntValue(i)) => Value::Number(i.into()),
        Some(Av::DoubleValue(d)) => Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(Av::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(Av::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|v| convert(v, depth + 1))
                .collect(),
        ),
        Some(Av::KvlistValue(kv)) => {
            let mut map = Map::with_capacity(kv.values.len());
            for item in kv.values {
                let v = item
                    .value
                    .map(|v| convert(v, depth + 1))
                    .unwrap_or(Value::Null);
                map.insert(item.key, v);
            }
            Value::Object(map)
        }
        // Dictionary-encoded strings only appear with profiles; nothing to resolve them against here.
        Some(_) => Value::Null,
    }
}

/// Attributes as a JSON map, taking them: keys and string values are moved, not copied.
pub fn flatten_owned(kvs: Vec<KeyValue>) -> Map<String, Value> {
    // Sized up front: growing an insertion-ordered map rehashes it each time.
    let mut map = Map::with_capacity(kvs.len());
    for kv in kvs {
        let v = kv.value.map(into_json).unwrap_or(Value::Null);
        map.insert(kv.key, v);
    }
    map
}

/// `flatten_owned` for attributes the caller keeps (they are copied).
pub fn flatten(kvs: &[KeyValue]) -> Map<String, Value> {
    flatten_owned(kvs.to_vec())
}

/// Typed, forgiving reads: instrumentations disagree on whether a count is an int, a double or a string.
pub struct Attrs<'a> {
    map: &'a Map<String, Value>,
    /// One bit per key present (`key_bit`). Normalisation asks for dozens of keys of several
    /// conventions and a span carries only a few of them: most lookups end here, before hashing.
    present: u128,
}

/// A cheap signature of a key (length, last and middle byte) folded onto 128 bits.
fn key_bit(key: &str) -> u128 {
    let b = key.as_bytes();
    let (last, mid) = (
        b.last().copied().unwrap_or(0),
        b.get(b.len() / 2).copied().unwrap_or(0),
    );
    let h = (b.len() as u32)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(u32::from(last).wrapping_mul(0x85EB_CA6B))
        .wrapping_add(u32::from(mid).wrapping_mul(0xC2B2_AE35));
    1u128 << (h >> 25)
}

impl<'a> Attrs<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        let present = map.keys().fold(0u128, |m, k| m | key_bit(k));
        Attrs { map, present }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        if self.present & key_bit(key) == 0 {
            return None;
        }
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.as_str()),
            _ => None,
        }
    }

    /// A string, or the first string of an array (some SDKs send single values as arrays).
    pub fn text(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(a) => a.iter().find_map(|v| v.as_str().map(str::to_string)),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
            _ => None,
        }
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|f| f.is_finite())
    }

    /// A structured value: JSON text is parsed, structured AnyValues are used as they are.
    pub fn json(&self, key: &str) -> Option<Value> {
        self.get(key).map(parse_if_json)
    }

    pub fn first_str(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.text(k))
    }

    pub fn first_int(&self, keys: &[&str]) -> Option<i64> {
        keys.iter().find_map(|k| self.int(k))
    }

    /// Collects `prefix.N.rest…` keys into a nested JSON tree (numeric segments become object keys),
    /// for the flattened message lists of OpenInference and OpenLLMetry.
    pub fn unflatten(&self, prefix: &str) -> Vec<Value> {
        let mut root = Map::new();
        for (key, value) in self.map.iter() {
            let Some(rest) = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
            else {
                continue;
            };
            let segments: Vec<&str> = rest.split('.').collect();
            // Real message keys are a handful of segments deep; recursion on input stays bounded.
            if segments.len() <= MAX_DEPTH {
                insert_path(&mut root, &segments, value.clone());
            }
        }
        indexed(&Value::Object(root))
    }
}

fn insert_path(node: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        // A leaf never overwrites a subtree that other keys already built.
        if !node.get(*head).is_some_and(Value::is_object) {
            node.insert(head.to_string(), value);
        }
        return;
    }
    let child = node
        .entry(head.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(map) = child {
        insert_path(map, rest, value);
    }
}

/// The children of an object keyed by `0`, `1`, … in numeric order (an array is returned as is).
pub fn indexed(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(a) => a.clone(),
        Value::Object(map) => {
            let mut items: Vec<(usize, &Value)> = map
                .iter()
                .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, v)))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            items.into_iter().map(|(_, v)| v.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// JSON text becomes the value it encodes; anything else stays as it is.
pub fn parse_if_json(v: &Value) -> Value {
    if let Value::String(s) = v {
        let t = s.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                return parsed;
            }
        }
    }
    v.clone()
}

/// Text of a value for display in a message: strings as they are, structures as JSON.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unflatten_orders_numeric_segments_and_keeps_dotted_fields() {
        let mut m = Map::new();
        m.insert("p.1.message.role".into(), json!("assistant"));
        m.insert("p.0.message.role".into(), json!("user"));
        m.insert("p.10.message.role".into(), json!("tool"));
        m.insert(
            "p.1.message.tool_calls.0.tool_call.function.name".into(),
            json!("f"),
        );
        let items = Attrs::new(&m).unflatten("p");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["message"]["role"], "user");
        assert_eq!(
            items[1]["message"]["tool_calls"]["0"]["tool_call"]["function"]["name"],
            "f"
        );
        assert_eq!(items[2]["message"]["role"], "tool");
    }

    #[test]
    fn typed_reads_accept_the_shapes_sdks_send() {
        let m: Map<String, Value> = serde_json::from_value(
            json!({"a": "37", "b": 12.0, "c": ["stop"], "d": "", "e": "{\"x\":1}"}),
        )
        .unwrap();
        let a = Attrs::new(&m);
        assert_eq!(a.int("a"), Some(37));
        assert_eq!(a.int("b"), Some(12));
        assert_eq!(a.text("c").as_deref(), Some("stop"));
        assert_eq!(a.str("d"), None);
        assert_eq!(a.json("e"), Some(json!({"x": 1})));
    }

    #[test]
    fn the_key_signature_never_hides_a_present_key() {
        let keys: Vec<String> = (0..2000)
            .map(|i| format!("k{}.{}", i % 37, "x".repeat(i % 29)) + &i.to_string())
            .collect();
        for n in [1, 5, 40, 2000] {
            let m: Map<String, Value> = keys[..n].iter().map(|k| (k.clone(), json!(1))).collect();
            let a = Attrs::new(&m);
            assert!(keys[..n].iter().all(|k| a.get(k).is_some()));
            assert!(keys[n..].iter().all(|k| a.get(k).is_none()));
            assert_eq!(a.get(""), None);
        }
    }
}
