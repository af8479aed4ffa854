//! Rule evaluators: deterministic checks of a trace or of each span in it. Each gives a verdict
//! (pass or fail, with a reason a human reads). A rule that does not apply to a target (no output
//! to check, no tool span) gives no verdict rather than a fake pass.

use std::borrow::Borrow;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_governance::redact::{Detector, Detectors, Finding};
use vigil_model::{FlagKind, Span, SpanKind, SpanStatus};

/// Which text of a target a content rule reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The answer: output messages (or a tool's result).
    #[default]
    Output,
    /// What went in: input messages (or a tool's arguments).
    Input,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Passes when the text matches (`must_match = false`: when it does not).
    Regex {
        pattern: String,
        #[serde(default = "yes")]
        must_match: bool,
        #[serde(default)]
        field: Field,
    },
    Contains {
        value: String,
        #[serde(default)]
        field: Field,
    },
    NotContains {
        value: String,
        #[serde(default)]
        field: Field,
    },
    ValidJson {
        #[serde(default)]
        field: Field,
    },
    /// JSON Schema subset: `type`, `properties`, `required`, `items`, `enum`, `minimum`,
    /// `maximum`, `minLength`, `maxLength`, `additionalProperties: false`.
    JsonSchema {
        schema: Value,
        #[serde(default)]
        field: Field,
    },
    /// Fails when a tool returned something empty, truncated or error-shaped (Vigil's flag).
    SilentToolFailure,
    /// Fails when a model called a tool the request did not declare (Vigil's flag).
    HallucinatedTool,
    MaxLatencyMs {
        max: f64,
    },
    MaxCostUsd {
        max: f64,
    },
    /// Fails when an output holds personal data or a secret — including values redaction already
    /// replaced (the marker proves the model said it).
    NoPiiInOutput,
    /// Fails when the answer is a refusal ("I can't help with that").
    Refusal,
    /// An LLM judge: `prompt` (with `{{input}}`, `{{output}}`, `{{name}}`, `{{agent}}`,
    /// `{{error}}`, `{{tool_calls}}`, `{{session_id}}`) goes to `model` through the gateway; the
    /// reply's `score` in [0, 1] passes at `pass_threshold` or above.
    LlmJudge {
        model: String,
        prompt: String,
        #[serde(default = "half")]
        pass_threshold: f64,
    },
}

fn half() -> f64 {
    0.5
}

fn yes() -> bool {
    true
}

/// Which spans a span-scoped evaluator looks at, and which traces any evaluator considers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    pub kind: Option<SpanKind>,
    pub agent: Option<String>,
    pub environment: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
}

impl Filter {
    pub fn matches(&self, s: &Span) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        self.kind.is_none_or(|k| s.kind == k)
            && eq(&self.agent, &s.agent_name)
            && eq(&self.environment, &s.environment)
            && eq(&self.service, &s.service_name)
            && self.model.as_ref().is_none_or(|m| {
                s.model.as_deref() == Some(m) || s.response_model.as_deref() == Some(m)
            })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub reason: String,
}

impl Verdict {
    fn pass(reason: impl Into<String>) -> Option<Self> {
        Some(Self {
            passed: true,
            reason: reason.into(),
        })
    }
    fn fail(reason: impl Into<String>) -> Option<Self> {
        Some(Self {
            passed: false,
            reason: reason.into(),
        })
    }
}

/// A rule with its regular expressions compiled.
pub struct CompiledRule {
    rule: Rule,
    regex: Option<Regex>,
    detectors: Option<Detectors>,
}

const REFUSAL: &str = r"(?i)\b(i('m| am) sorry,? but i (can('|no)t|won't)|i (can('|no)t|won't|am unable to|'m unable to) (help|assist|provide|do that|comply)|as an ai(,| language model)|i must decline)";
/// What redaction leaves behind: `[REDACTED:email]`, or `[email:3f9c…]` when hashed.
const REDACTION_MARKER: &str = r"\[(REDACTED:[a-z_]+|[a-z_]+:[0-9a-f]{16})\]";

impl CompiledRule {
    pub fn new(rule: Rule) -> Result<Self, String> {
        let regex = match &rule {
            Rule::Regex { pattern, .. } => {
                Some(Regex::new(pattern).map_err(|e| format!("invalid `pattern`: {e}"))?)
            }
            Rule::Refusal => Regex::new(REFUSAL).ok(),
            Rule::NoPiiInOutput => Regex::new(REDACTION_MARKER).ok(),
            _ => None,
        };
        if let Rule::MaxLatencyMs { max } | Rule::MaxCostUsd { max } = &rule {
            if !max.is_finite() || *max < 0.0 {
                return Err("`max` must be a positive number".into());
            }
        }
        if let Rule::LlmJudge {
            model,
            prompt,
            pass_threshold,
        } = &rule
        {
            if model.trim().is_empty() {
                return Err("`model` is empty".into());
            }
            if !prompt.contains("{{") {
                return Err("`prompt` uses no variable (`{{input}}`, `{{output}}`, …)".into());
            }
            if !(0.0..=1.0).contains(pass_threshold) {
                return Err("`pass_threshold` must be between 0 and 1".into());
            }
        }
        if let Rule::JsonSchema { schema, .. } = &rule {
            if !schema.is_object() {
                return Err("`schema` must be a JSON Schema object".into());
            }
        }
        let detectors = matches!(rule, Rule::NoPiiInOutput).then(|| Detectors::new(&Detector::ALL));
        Ok(Self {
            rule,
            regex,
            detectors,
        })
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The verdict on one span.
    pub fn on_span(&self, s: &Span) -> Option<Verdict> {
        match &self.rule {
            Rule::SilentToolFailure => (s.kind == SpanKind::Tool)
                .then(|| flag_verdict(std::slice::from_ref(s), FlagKind::SilentToolFailure))?,
            Rule::HallucinatedTool => (s.kind == SpanKind::Llm)
                .then(|| flag_verdict(std::slice::from_ref(s), FlagKind::HallucinatedTool))?,
            Rule::MaxLatencyMs { max } => threshold("latency", s.duration_ms, *max, "ms"),
            Rule::MaxCostUsd { max } => threshold("cost", s.cost_usd?, *max, "USD"),
            _ => self.on_text(&span_text(s, self.field())?),
        }
    }

    /// The verdict on a whole trace (spans in any order, owned or borrowed).
    pub fn on_trace<S: Borrow<Span>>(&self, spans: &[S]) -> Option<Verdict> {
        fn span<S: Borrow<Span>>(s: &S) -> &Span {
            s.borrow()
        }
        match &self.rule {
            Rule::SilentToolFailure => flag_verdict(spans, FlagKind::SilentToolFailure),
            Rule::HallucinatedTool => flag_verdict(spans, FlagKind::HallucinatedTool),
            Rule::MaxLatencyMs { max } => {
                let start = spans.iter().map(|s| span(s).start_time).min()?;
                let end = spans.iter().map(|s| span(s).end_time).max()?;
                threshold("trace duration", (end - start) as f64 / 1e6, *max, "ms")
            }
            Rule::MaxCostUsd { max } => {
                let costs: Vec<f64> = spans.iter().filter_map(|s| span(s).cost_usd).collect();
                if costs.is_empty() {
                    return None;
                }
                threshold("trace cost", costs.iter().sum(), *max, "USD")
            }
            _ => self.on_text(&trace_text(spans, self.field())?),
        }
    }

    fn field(&self) -> Field {
        match &self.rule {
            Rule::Regex { field, .. }
            | Rule::Contains { field, .. }
            | Rule::NotContains { field, .. }
            | Rule::ValidJson { field }
            | Rule::JsonSchema { field, .. } => *field,
            _ => Field::Output,
        }
    }

    fn on_text(&self, text: &str) -> Option<Verdict> {
        match &self.rule {
            Rule::Regex { must_match, .. } => {
                let hit = self.regex.as_ref()?.is_match(text);
                match (hit, *must_match) {
                    (true, true) => Verdict::pass("matches the pattern"),
                    (false, true) => Verdict::fail("does not match the pattern"),
                    (true, false) => Verdict::fail("matches a forbidden pattern"),
                    (false, false) => Verdict::pass("does not match the forbidden pattern"),
                }
            }
            Rule::Contains { value, .. } => {
                if text.contains(value.as_str()) {
                    Verdict::pass(format!("contains `{value}`"))
                } else {
                    Verdict::fail(format!("does not contain `{value}`"))
                }
            }
            Rule::NotContains { value, .. } => {
                if text.contains(value.as_str()) {
                    Verdict::fail(format!("contains `{value}`"))
                } else {
                    Verdict::pass(format!("does not contain `{value}`"))
                }
            }
            Rule::ValidJson { .. } => match serde_json::from_str::<Value>(text.trim()) {
                Ok(_) => Verdict::pass("valid JSON"),
                Err(e) => Verdict::fail(format!("not valid JSON: {e}")),
            },
            Rule::JsonSchema { schema, .. } => match serde_json::from_str::<Value>(text.trim()) {
                Err(e) => Verdict::fail(format!("not valid JSON: {e}")),
                Ok(v) => match schema_errors(schema, &v, "$") {
                    None => Verdict::pass("matches the schema"),
                    Some(e) => Verdict::fail(e),
                },
            },
            Rule::NoPiiInOutput => {
                if let Some(m) = self.regex.as_ref().and_then(|r| r.find(text)) {
                    return Verdict::fail(format!(
                        "the output held a value redaction removed ({})",
                        m.as_str()
                    ));
                }
                let mut found: Vec<Finding> = Vec::new();
                self.detectors.as_ref()?.scan(text, &mut found);
                match found.first() {
                    Some(f) => Verdict::fail(format!("the output holds a {}", f.detector.as_str())),
                    None => Verdict::pass("no personal data or secret in the output"),
                }
            }
            Rule::Refusal => match self.regex.as_ref()?.find(text) {
                Some(m) => Verdict::fail(format!("refusal: “{}”", m.as_str())),
                None => Verdict::pass("not a refusal"),
            },
            _ => None,
        }
    }
}

fn threshold(what: &str, value: f64, max: f64, unit: &str) -> Option<Verdict> {
    if value <= max {
        Verdict::pass(format!("{what} {value:.4} {unit} within {max} {unit}"))
    } else {
        Verdict::fail(format!("{what} {value:.4} {unit} above {max} {unit}"))
    }
}

fn flag_verdict<S: Borrow<Span>>(spans: &[S], flag: FlagKind) -> Option<Verdict> {
    let relevant = match flag {
        FlagKind::SilentToolFailure => SpanKind::Tool,
        FlagKind::HallucinatedTool => SpanKind::Llm,
    };
    if !spans.iter().any(|s| s.borrow().kind == relevant) {
        return None;
    }
    let flagged: Vec<String> = spans
        .iter()
        .map(Borrow::borrow)
        .filter_map(|s: &Span| {
            s.flags
                .iter()
                .find(|f| f.name == flag)
                .map(|f| format!("{}: {}", s.name, f.reason))
        })
        .collect();
    if flagged.is_empty() {
        Verdict::pass(format!("no {}", flag.as_str().replace('_', " ")))
    } else {
        Verdict::fail(flagged.join("; "))
    }
}

fn messages_text(messages: &[vigil_model::Message]) -> Option<String> {
    let parts: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .filter(|c| !c.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A span's text for a field: messages for model calls, arguments and results for tools, and the
/// OpenInference `input.value` / `output.value` otherwise.
pub fn span_text(s: &Span, field: Field) -> Option<String> {
    let (messages, tool, attr) = match field {
        Field::Output => (&s.output_messages, &s.tool_result, "output.value"),
        Field::Input => (&s.input_messages, &s.tool_arguments, "input.value"),
    };
    messages_text(messages)
        .or_else(|| tool.as_ref().map(value_text))
        .or_else(|| s.attributes.get(attr).map(value_text))
}

/// A trace's text: its root span's (what the agent answered), else the last model call's. With
/// several roots (a session's turns), the input is the first turn's and the output the last's.
pub fn trace_text<S: Borrow<Span>>(spans: &[S], field: Field) -> Option<String> {
    let spans = || spans.iter().map(Borrow::borrow);
    let roots = spans().filter(|s: &&Span| s.parent_span_id.is_none());
    let root = match field {
        Field::Input => roots.min_by_key(|s| s.start_time),
        Field::Output => roots.max_by_key(|s| s.end_time),
    };
    root.and_then(|r| span_text(r, field)).or_else(|| {
        let mut llm: Vec<&Span> = spans().filter(|s| s.kind == SpanKind::Llm).collect();
        llm.sort_by_key(|s| s.end_time);
        let pick = match field {
            Field::Output => llm.last(),
            Field::Input => llm.first(),
        };
        pick.and_then(|s| span_text(s, field))
    })
}

/// The first way `v` breaks `schema` (a practical subset of JSON Schema), or `None`.
fn schema_errors(schema: &Value, v: &Value, at: &str) -> Option<String> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        if !ok {
            return Some(format!("{at}: expected {t}, got {}", short(v)));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            return Some(format!(
                "{at}: {} is not one of {}",
                short(v),
                Value::Array(options.clone())
            ));
        }
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            return Some(format!("{at}: {x} is below the minimum {min}"));
        }
    }
    if let (Some(max), Some(x)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64()) {
        if x > max {
            return Some(format!("{at}: {x} is above the maximum {max}"));
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return Some(format!("{at}: shorter than minLength"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return Some(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = r.as_str() {
                if !obj.contains_key(name) {
                    return Some(format!("{at}: missing required property `{name}`"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, child) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => {
                    if let Some(e) = schema_errors(sub, child, &format!("{at}.{k}")) {
                        return Some(e);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Some(format!("{at}: unexpected property `{k}`"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            if let Some(e) = schema_errors(items, x, &format!("{at}[{i}]")) {
                return Some(e);
            }
        }
    }
    None
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let cut = (0..=60).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Whether a span counts as an error (for rules on errors elsewhere).
pub fn is_error(s: &Span) -> bool {
    s.status == SpanStatus::Error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_model::{Flag, Message, SpanId};

    fn rule(v: Value) -> CompiledRule {
        CompiledRule::new(serde_json::from_value(v).unwrap()).unwrap()
    }

    fn llm(output: &str) -> Span {
        Span {
            kind: SpanKind::Llm,
            name: "chat".into(),
            output_messages: vec![Message {
                role: "assistant".into(),
                content: Some(output.into()),
                ..Message::default()
            }],
            duration_ms: 1200.0,
            cost_usd: Some(0.002),
            ..Span::default()
        }
    }

    fn passed(r: &CompiledRule, s: &Span) -> Option<bool> {
        r.on_span(s).map(|v| v.passed)
    }

    #[test]
    fn content_rules() {
        let s = llm("Your order A-1001 ships tomorrow.");
        assert_eq!(
            passed(&rule(json!({"type": "regex", "pattern": "A-\\d{4}"})), &s),
            Some(true)
        );
        assert_eq!(
            passed(
                &rule(json!({"type": "regex", "pattern": "A-\\d{4}", "must_match": false})),
                &s
            ),
            Some(false)
        );
        assert_eq!(
            passed(&rule(json!({"type": "contains", "value": "ships"})), &s),
            Some(true)
        );
        assert_eq!(
            passed(&rule(json!({"type": "not_contains", "value": "ships"})), &s),
            Some(false)
        );
        assert_eq!(
            passed(&rule(json!({"type": "valid_json"})), &s),
            Some(false)
        );
        assert_eq!(
            passed(&rule(json!({"type": "valid_json"})), &llm("{\"a\": 1}")),
            Some(true)
        );
        assert!(CompiledRule::new(
            serde_json::from_value(json!({"type": "regex", "pattern": "("})).unwrap()
        )
        .is_err());
    }

    #[test]
    fn json_schema_rule() {
        let r = rule(json!({"type": "json_schema", "schema": {
            "type": "object", "required": ["status"], "additionalProperties": false,
            "properties": {"status": {"enum": ["shipped", "pending"]}, "eta_days": {"type": "integer", "minimum": 0}}
        }}));
        assert_eq!(
            passed(&r, &llm(r#"{"status": "shipped", "eta_days": 2}"#)),
            Some(true)
        );
        let v = r.on_span(&llm(r#"{"status": "lost"}"#)).unwrap();
        assert!(!v.passed && v.reason.contains("$.status"), "{v:?}");
        assert_eq!(passed(&r, &llm(r#"{"eta_days": 2}"#)), Some(false));
        assert_eq!(
            passed(&r, &llm(r#"{"status": "shipped", "x": 1}"#)),
            Some(false)
        );
        assert_eq!(
            passed(&r, &llm(r#"{"status": "shipped", "eta_days": -1}"#)),
            Some(false)
        );
    }

    #[test]
    fn flag_rules_and_thresholds() {
        let mut tool = Span {
            kind: SpanKind::Tool,
            name: "lookup".into(),
            ..Span::default()
        };
        let r = rule(json!({"type": "silent_tool_failure"}));
        assert_eq!(
            r.on_trace(&[llm("x"), tool.clone()]).map(|v| v.passed),
            Some(true)
        );
        tool.flags.push(Flag {
            name: FlagKind::SilentToolFailure,
            reason: "empty result".into(),
        });
        let v = r.on_trace(&[llm("x"), tool.clone()]).unwrap();
        assert!(!v.passed && v.reason.contains("empty result"));
        // No tool span: the rule does not apply.
        assert_eq!(r.on_trace(&[llm("x")]), None);
        let mut h = llm("x");
        h.flags.push(Flag {
            name: FlagKind::HallucinatedTool,
            reason: "called `refund`".into(),
        });
        assert_eq!(
            rule(json!({"type": "hallucinated_tool"}))
                .on_trace(&[h])
                .map(|v| v.passed),
            Some(false)
        );
        assert_eq!(
            passed(
                &rule(json!({"type": "max_latency_ms", "max": 1000})),
                &llm("x")
            ),
            Some(false)
        );
        assert_eq!(
            passed(
                &rule(json!({"type": "max_cost_usd", "max": 0.01})),
                &llm("x")
            ),
            Some(true)
        );
        let unpriced = Span {
            cost_usd: None,
            ..llm("x")
        };
        assert_eq!(
            passed(
                &rule(json!({"type": "max_cost_usd", "max": 0.01})),
                &unpriced
            ),
            None
        );
    }

    #[test]
    fn pii_and_refusal() {
        let r = rule(json!({"type": "no_pii_in_output"}));
        assert_eq!(
            passed(&r, &llm("Sure, the order ships Monday.")),
            Some(true)
        );
        assert_eq!(passed(&r, &llm("Mail bob@example.com")), Some(false));
        assert_eq!(
            passed(&r, &llm("Your card [REDACTED:payment_card] is on file")),
            Some(false)
        );
        assert_eq!(
            passed(&r, &llm("Reached [email:0123456789abcdef]")),
            Some(false)
        );
        let refusal = rule(json!({"type": "refusal"}));
        assert_eq!(
            passed(&refusal, &llm("I'm sorry, but I can't help with that.")),
            Some(false)
        );
        assert_eq!(
            passed(&refusal, &llm("As an AI language model I cannot browse.")),
            Some(false)
        );
        assert_eq!(
            passed(&refusal, &llm("Here is your refund status.")),
            Some(true)
        );
    }

    #[test]
    fn trace_text_prefers_the_root_span() {
        let root = Span {
            span_id: SpanId([1; 8]),
            attributes: [("output.value".to_string(), json!("final answer"))]
                .into_iter()
                .collect(),
            ..Span::default()
        };
        let mut child = llm("intermediate");
        child.parent_span_id = Some(SpanId([1; 8]));
        assert_eq!(
            trace_text(&[child.clone(), root], Field::Output).as_deref(),
            Some("final answer")
        );
        assert_eq!(
            trace_text(&[child], Field::Output).as_deref(),
            Some("intermediate")
        );
    }

    #[test]
    fn filters() {
        let f = Filter {
            kind: Some(SpanKind::Llm),
            model: Some("gpt-4o".into()),
            ..Filter::default()
        };
        let mut s = llm("x");
        assert!(!f.matches(&s));
        s.model = Some("gpt-4o".into());
        assert!(f.matches(&s));
        assert!(!f.matches(&Span {
            kind: SpanKind::Tool,
            ..s
        }));
    }
}
