//! Quiet failures: a tool result that is empty, truncated, unparseable or error-shaped, and an LLM
//! calling a tool its request never declared. Both are flagged even when the span status is OK,
//! because the agent carries on with corrupted context and nothing else turns red.

use serde_json::Value;
use vigil_model::{Flag, FlagKind, Span, SpanKind};

const SNIPPET: usize = 120;

/// Recomputes the flags of a span from its current content.
pub fn apply(span: &mut Span, raw_tool_result: Option<&Value>) {
    span.flags.clear();
    if span.kind == SpanKind::Tool {
        if let Some(reason) = raw_tool_result.and_then(silent_tool_failure) {
            span.flags.push(Flag {
                name: FlagKind::SilentToolFailure,
                reason,
            });
        }
    }
    if let Some(reason) = hallucinated_tool(span) {
        span.flags.push(Flag {
            name: FlagKind::HallucinatedTool,
            reason,
        });
    }
}

/// Why a tool result looks like a failure, or `None` when it looks like a real answer.
pub fn silent_tool_failure(result: &Value) -> Option<String> {
    match result {
        Value::Null => Some("tool returned null".into()),
        Value::String(s) => text_failure(s),
        Value::Array(a) if a.is_empty() => Some("tool returned an empty list".into()),
        Value::Object(o) if o.is_empty() => Some("tool returned an empty object".into()),
        Value::Object(o) => object_failure(o),
        _ => None,
    }
}

fn text_failure(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        return Some("tool returned an empty result".into());
    }
    if t == "null" || t == "None" || t == "undefined" {
        return Some(format!("tool returned `{t}`"));
    }
    if t.starts_with('{') || t.starts_with('[') {
        return match serde_json::from_str::<Value>(t) {
            Ok(v) => silent_tool_failure(&v),
            Err(e) if e.is_eof() => Some(format!(
                "tool result is truncated JSON ({} bytes, ends `{}`)",
                t.len(),
                tail(t)
            )),
            Err(e) => Some(format!("tool result is invalid JSON: {e}")),
        };
    }
    if t.ends_with("...") || t.ends_with('…') || t.to_ascii_lowercase().ends_with("[truncated]") {
        return Some(format!("tool result looks truncated (ends `{}`)", tail(t)));
    }
    let head: String = t.chars().take(400).collect::<String>().to_ascii_lowercase();
    let error_starts = [
        "error",
        "exception",
        "traceback (most recent call last)",
        "fatal",
        "failed",
        "failure",
        "permission denied",
        "access denied",
        "unauthorized",
        "forbidden",
        "not found",
    ];
    if error_starts.iter().any(|p| head.starts_with(p)) {
        return Some(format!("tool result is an error message: `{}`", snippet(t)));
    }
    if head.contains("timed out") || head.contains("timeout") || head.contains("deadline exceeded")
    {
        return Some(format!("tool result reports a timeout: `{}`", snippet(t)));
    }
    if let Some(code) = http_error_status(&head) {
        return Some(format!(
            "tool result is an HTTP {code} error body: `{}`",
            snippet(t)
        ));
    }
    None
}

/// HTTP error pages and status lines: `<html>…502 Bad Gateway…`, `HTTP/1.1 503 …`, `404 Not Found`.
fn http_error_status(head: &str) -> Option<u16> {
    let phrases = [
        (400, "400 bad request"),
        (401, "401 unauthorized"),
        (403, "403 forbidden"),
        (404, "404 not found"),
        (408, "408 request timeout"),
        (429, "429 too many requests"),
        (500, "500 internal server error"),
        (500, "internal server error"),
        (502, "502 bad gateway"),
        (503, "503 service unavailable"),
        (503, "service unavailable"),
        (504, "504 gateway timeout"),
    ];
    let looks_like_page = head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.starts_with("http/1.")
        || head.starts_with("http/2");
    for (code, phrase) in phrases {
        if head.starts_with(phrase) || (looks_like_page && head.contains(phrase)) {
            return Some(code);
        }
    }
    if let Some(rest) = head
        .strip_prefix("http/1.1 ")
        .or_else(|| head.strip_prefix("http/1.0 "))
        .or_else(|| head.strip_prefix("http/2 "))
    {
        let code: u16 = rest.get(..3)?.parse().ok()?;
        return (code >= 400).then_some(code);
    }
    None
}

fn object_failure(o: &serde_json::Map<String, Value>) -> Option<String> {
    for key in [
        "error",
        "errors",
        "error_message",
        "errorMessage",
        "exception",
        "fault",
    ] {
        if let Some(v) = o.get(key) {
            let present = match v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.trim().is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(m) => !m.is_empty(),
                _ => true,
            };
            if present {
                return Some(format!(
                    "tool result is an error object: `{}`",
                    snippet(&Value::Object(o.clone()).to_string())
                ));
            }
        }
    }
    for key in ["status", "status_code", "statusCode", "code", "http_status"] {
        if let Some(code) = o.get(key).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }) {
            if (400..600).contains(&code) {
                return Some(format!("tool result carries HTTP status {code}"));
            }
        }
    }
    for key in ["success", "ok"] {
        if o.get(key) == Some(&Value::Bool(false)) {
            return Some(format!("tool result says `{key}: false`"));
        }
    }
    if o.get("status").and_then(Value::as_str).is_some_and(|s| {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "error" | "failed" | "failure" | "timeout"
        )
    }) {
        return Some(format!(
            "tool result has status `{}`",
            o["status"].as_str().unwrap_or_default()
        ));
    }
    None
}

fn hallucinated_tool(span: &Span) -> Option<String> {
    if span.declared_tools.is_empty() {
        return None;
    }
    let undeclared: Vec<&str> = span
        .output_messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .map(|tc| tc.name.as_str())
        .filter(|name| !span.declared_tools.iter().any(|d| d == name))
        .collect();
    let first = undeclared.first()?;
    Some(format!(
        "model called `{first}`, which the request did not declare (declared: {})",
        span.declared_tools.join(", ")
    ))
}

fn snippet(s: &str) -> String {
    let mut out: String = s.chars().take(SNIPPET).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.replace(['\n', '\r'], " ")
}

fn tail(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(16)..]
        .iter()
        .collect::<String>()
        .replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flagged(v: Value) -> bool {
        silent_tool_failure(&v).is_some()
    }

    #[test]
    fn error_shaped_results_are_flagged() {
        for bad in [
            json!(""),
            json!("   "),
            json!(null),
            json!("null"),
            json!([]),
            json!({}),
            json!("{\"order_id\": \"A-1"),
            json!("{not json}"),
            json!({"error": "order service unavailable"}),
            json!("{\"error\": {\"code\": 500}}"),
            json!({"errors": ["bad"]}),
            json!({"status": 503, "body": "x"}),
            json!({"success": false}),
            json!({"status": "error"}),
            json!("Error: connection refused"),
            json!("Traceback (most recent call last):\n  File …"),
            json!("request timed out after 30s"),
            json!("<html><head><title>502 Bad Gateway</title></head></html>"),
            json!("HTTP/1.1 503 Service Unavailable"),
            json!("404 Not Found"),
            json!("The order list is: A-1001, A-1002, ..."),
        ] {
            assert!(flagged(bad.clone()), "not flagged: {bad}");
        }
    }

    #[test]
    fn real_answers_are_not_flagged() {
        for good in [
            json!({"order_id": "A-1001", "status": "pending"}),
            json!("{\"order_id\": \"A-1001\", \"status\": \"shipped\"}"),
            json!("The order shipped yesterday."),
            json!([1, 2, 3]),
            json!({"error": null, "result": 3}),
            json!({"status": 200, "items": []}),
            json!(42),
        ] {
            assert!(!flagged(good.clone()), "flagged: {good}");
        }
    }
}
