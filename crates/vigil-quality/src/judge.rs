//! LLM-as-judge: a prompt template filled from the trace (or span), sent to a judge model through
//! Vigil's own gateway (so the call is routed, limited, cached and traced like any other), and the
//! reply parsed into a score in [0, 1] with its reasoning. Unreadable replies and failed calls are
//! retried; what each judgement cost is kept on its score.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vigil_model::{PriceTable, ProjectId, Span, Usage};

use std::borrow::Borrow;

use crate::rules::{span_text, trace_text, Field};

/// How the judge is reached: the gateway's base URL and the in-process token.
#[derive(Clone)]
pub struct JudgeClient {
    http: reqwest::Client,
    base: String,
    token: String,
    prices: Arc<PriceTable>,
}

impl std::fmt::Debug for JudgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never printed.
        f.debug_struct("JudgeClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub score: f64,
    pub reasoning: String,
    pub cost_usd: Option<f64>,
}

const ATTEMPTS: u32 = 3;

impl JudgeClient {
    pub fn new(base: String, token: String, prices: Arc<PriceTable>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            token,
            prices,
        }
    }

    /// Asks the judge; retries failed calls and unreadable replies.
    pub async fn judge(
        &self,
        project: &ProjectId,
        model: &str,
        prompt: &str,
    ) -> Result<Judgement, String> {
        let mut last = String::new();
        let mut cost = 0.0;
        let mut priced = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let r = self
                .http
                .post(format!("{}/v1/chat/completions", self.base))
                .bearer_auth(&self.token)
                .header("x-vigil-internal-project", project.as_str())
                .header("x-vigil-tags", "llm-judge")
                .json(&json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await;
            let v: Value = match r {
                Ok(r) if r.status().is_success() => match r.json().await {
                    Ok(v) => v,
                    Err(e) => {
                        last = format!("unreadable judge response: {e}");
                        continue;
                    }
                },
                Ok(r) => {
                    last = format!("judge call failed: {}", r.status());
                    continue;
                }
                Err(e) => {
                    last = format!("judge call failed: {e}");
                    continue;
                }
            };
            let usage = Usage {
                input_tokens: v["usage"]["prompt_tokens"].as_i64(),
                output_tokens: v["usage"]["completion_tokens"].as_i64(),
                ..Usage::default()
            };
            let used = v["model"].as_str().unwrap_or(model);
            if let Some(c) = self
                .prices
                .cost(used, usage)
                .or_else(|| self.prices.cost(model, usage))
            {
                cost += c;
                priced = true;
            }
            let text = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
            match parse(text) {
                Some((score, reasoning)) => {
                    return Ok(Judgement {
                        score,
                        reasoning,
                        cost_usd: priced.then_some(cost),
                    })
                }
                None => last = format!("the judge's reply has no score: {}", short(text)),
            }
        }
        Err(last)
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The first JSON object with a `score` (a number in [0, 1], or a boolean) and its `reasoning`;
/// else a `score: 0.8` in the text.
pub fn parse(text: &str) -> Option<(f64, String)> {
    let mut from = 0;
    while let Some(start) = text[from..].find('{').map(|i| i + from) {
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next() {
            let score = match &v["score"] {
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                Value::Number(n) => n.as_f64(),
                _ => None,
            };
            if let Some(s) = score.filter(|s| (0.0..=1.0).contains(s)) {
                let why = v["reasoning"]
                    .as_str()
                    .or(v["reason"].as_str())
                    .unwrap_or("");
                return Some((s, why.to_string()));
            }
        }
        from = start + 1;
    }
    let lower = text.to_ascii_lowercase();
    let at = lower.find("score")?;
    let rest = &text[at + 5..];
    let num: String = rest
        .trim_start_matches(|c: char| c == ':' || c == '=' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let s: f64 = num.parse().ok()?;
    (0.0..=1.0)
        .contains(&s)
        .then(|| (s, text.trim().to_string()))
}

/// Fills `{{input}}`, `{{output}}`, `{{name}}`, `{{agent}}`, `{{error}}`, `{{tool_calls}}` and
/// `{{session_id}}` from the trace (`span = None`) or one span.
pub fn render<S: Borrow<Span>>(template: &str, spans: &[S], span: Option<&Span>) -> String {
    let spans: Vec<&Span> = spans.iter().map(Borrow::borrow).collect();
    let first = span
        .or_else(|| spans.iter().copied().find(|s| s.parent_span_id.is_none()))
        .or(spans.first().copied());
    let (input, output) = match span {
        Some(s) => (span_text(s, Field::Input), span_text(s, Field::Output)),
        None => (
            trace_text(&spans, Field::Input),
            trace_text(&spans, Field::Output),
        ),
    };
    let scope: Vec<&Span> = match span {
        Some(s) => vec![s],
        None => spans.clone(),
    };
    let tools: Vec<String> = scope
        .iter()
        .flat_map(|s| s.output_messages.iter().flat_map(|m| &m.tool_calls))
        .map(|t| format!("{}({})", t.name, t.arguments))
        .collect();
    let errors: Vec<&str> = scope
        .iter()
        .filter_map(|s| s.error_message.as_deref())
        .collect();
    template
        .replace("{{input}}", input.as_deref().unwrap_or(""))
        .replace("{{output}}", output.as_deref().unwrap_or(""))
        .replace("{{name}}", first.map_or("", |s| s.name.as_str()))
        .replace(
            "{{agent}}",
            first.and_then(|s| s.agent_name.as_deref()).unwrap_or(""),
        )
        .replace("{{error}}", &errors.join("\n"))
        .replace("{{tool_calls}}", &tools.join("\n"))
        .replace(
            "{{session_id}}",
            spans
                .iter()
                .find_map(|s| s.session_id.as_deref())
                .unwrap_or(""),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_loose_replies() {
        assert_eq!(
            parse(r#"Here you go: {"score": 0.8, "reasoning": "mostly right"}"#),
            Some((0.8, "mostly right".into()))
        );
        assert_eq!(
            parse(r#"{"score": true, "reason": "ok"}"#),
            Some((1.0, "ok".into()))
        );
        assert_eq!(
            parse("noise {not json} then {\"score\": 0}").map(|p| p.0),
            Some(0.0)
        );
        assert_eq!(
            parse("Score: 0.25 because it missed the order").map(|p| p.0),
            Some(0.25)
        );
        assert_eq!(parse(r#"{"score": 7}"#), None);
        assert_eq!(parse("no verdict here"), None);
    }

    #[test]
    fn renders_trace_variables() {
        let span = Span {
            name: "invoke_agent".into(),
            agent_name: Some("support".into()),
            attributes: [
                ("input.value".to_string(), json!("Where is A-1?")),
                ("output.value".to_string(), json!("Shipped.")),
            ]
            .into_iter()
            .collect(),
            ..Span::default()
        };
        let out = render(
            "Q: {{input}} A: {{output}} by {{agent}} ({{name}})",
            &[span],
            None,
        );
        assert_eq!(
            out,
            "Q: Where is A-1? A: Shipped. by support (invoke_agent)"
        );
    }
}
