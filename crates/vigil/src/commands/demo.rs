//! `vigil demo`: a realistic agent workload, generated as OTLP and fed through the same normaliser
//! and store as live traffic, so a new user sees a populated system in one command.
//!
//! Three agents (support, research, billing) on several models and providers, sessions of 1 to 14
//! turns over the last 24 hours, retrieval, tool calls and the quiet failures Vigil exists for:
//! empty and error-shaped tool results, a hallucinated tool, rate-limit errors, slow steps.

use std::ops::Range;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vigil_ingest::Normalizer;
use vigil_store::TraceStore;

use crate::cli::DemoArgs;
use crate::config::Settings;

pub async fn run(settings: Settings, args: &DemoArgs) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let project = super::serve::bootstrap(&store).await?;
    let normalizer = Normalizer::new(super::price_table(&settings)?);
    // The demo's spans are redacted like live traffic (its customers paste cards and e-mails).
    let governance = super::governance(&settings, &store)?;
    let now = now_ns();
    let mut generator = Generator::new(args.seed.unwrap_or_else(rand::random));
    let mut written = 0;
    let mut traces = 0;
    while traces < args.traces {
        let request = generator.session(now - 24 * HOUR, now, args.traces - traces, TURN_GAP_S);
        traces += request.resource_spans.len();
        let mut out = normalizer.traces(&project, &request);
        governance.redact_spans(&project, &mut out.spans).await;
        written += store.write_spans(out.spans).await?.inserted;
    }
    governance.flush_counts().await;
    eprintln!("demo: wrote {traces} agent runs ({written} spans) into project `default`");
    if args.no_serve {
        return Ok(());
    }
    super::serve::serve_store(settings, store).await
}

const HOUR: i64 = 3_600_000_000_000;
/// Seconds between the turns of a demo session.
const TURN_GAP_S: Range<i64> = 20..180;
const MS: i64 = 1_000_000;

pub use vigil_model::now_unix_nanos as now_ns;

struct ModelChoice {
    model: &'static str,
    response_model: &'static str,
    provider: &'static str,
    /// Typical latency of a call, ms.
    latency: i64,
}

const MODELS: &[ModelChoice] = &[
    ModelChoice {
        model: "gpt-4o-mini",
        response_model: "gpt-4o-mini-2024-07-18",
        provider: "openai",
        latency: 900,
    },
    ModelChoice {
        model: "gpt-4.1",
        response_model: "gpt-4.1-2025-04-14",
        provider: "openai",
        latency: 2200,
    },
    ModelChoice {
        model: "claude-sonnet-4-5",
        response_model: "claude-sonnet-4-5-20250929",
        provider: "anthropic",
        latency: 2600,
    },
    ModelChoice {
        model: "claude-haiku-4-5",
        response_model: "claude-haiku-4-5-20251001",
        provider: "anthropic",
        latency: 800,
    },
    ModelChoice {
        model: "gemini-2.5-flash",
        response_model: "gemini-2.5-flash",
        provider: "gcp.gemini",
        latency: 1100,
    },
    ModelChoice {
        model: "llama-3.3-70b-versatile",
        response_model: "llama-3.3-70b-versatile",
        provider: "groq",
        latency: 450,
    },
    ModelChoice {
        model: "acme-support-ft-v2",
        response_model: "acme-support-ft-v2",
        provider: "vllm",
        latency: 700,
    },
];

const QUESTIONS: &[&str] = &[
    "Where is my order A-1001?",
    "I was charged twice for order A-2047, can you refund one?",
    "How do I reset my password?",
    "Can I change the delivery address of order A-3310?",
    "What is your return policy for opened electronics?",
    "My discount code SPRING25 does not work.",
    "Cancel my subscription please.",
    "Do you ship to Norway?",
    // Customers paste what they should not; redaction keeps it out of the store (the demo shows
    // `[REDACTED:…]` markers where these were).
    "Card 4111 1111 1111 1111 was charged twice, email me at maria.garcia@example.com",
    "Call me back on +1 415 555 2671 about order A-4410",
];

pub struct Generator {
    rng: StdRng,
    session_counter: u64,
}

fn otlp_span(
    trace_id: [u8; 16],
    id: [u8; 8],
    at: At,
    name: &str,
    kind: span::SpanKind,
    attrs: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: at.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: at.start as u64,
        end_time_unix_nano: (at.start + at.dur_ms * MS) as u64,
        attributes: attrs,
        status: Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Span::default()
    }
}

/// Where a span sits: its parent, start (Unix ns) and duration.
struct At {
    parent: Option<[u8; 8]>,
    start: i64,
    dur_ms: i64,
}

/// What an LLM call is asked and answers: a tool call, or final text.
struct Ask<'a> {
    question: &'a str,
    tools: &'a [&'a str],
    call_tool: Option<(&'a str, serde_json::Value)>,
    answer: &'a str,
}

struct Ctx {
    trace_id: [u8; 16],
    spans: Vec<Span>,
}

fn kv(key: &str, v: impl Into<any_value::Value>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(v.into()),
        }),
        ..KeyValue::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn text_messages(pairs: &[(&str, &str)]) -> String {
    let msgs: Vec<_> = pairs
        .iter()
        .map(|(role, text)| json!({"role": role, "parts": [{"type": "text", "content": text}]}))
        .collect();
    serde_json::Value::Array(msgs).to_string()
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            session_counter: 0,
        }
    }

    fn id8(&mut self) -> [u8; 8] {
        let mut id: [u8; 8] = self.rng.random();
        id[0] |= 1;
        id
    }

    fn span(
        &mut self,
        ctx: &mut Ctx,
        at: At,
        name: &str,
        kind: span::SpanKind,
        attrs: Vec<KeyValue>,
    ) -> [u8; 8] {
        let id = self.id8();
        ctx.spans
            .push(otlp_span(ctx.trace_id, id, at, name, kind, attrs));
        id
    }

    fn fail_last(ctx: &mut Ctx, message: &str) {
        if let Some(sp) = ctx.spans.last_mut() {
            sp.status = Some(Status {
                code: status::StatusCode::Error as i32,
                message: message.into(),
            });
        }
    }

    fn llm(&mut self, ctx: &mut Ctx, parent: [u8; 8], t: i64, m: &ModelChoice, ask: Ask) -> i64 {
        let Ask {
            question,
            tools,
            call_tool,
            answer,
        } = ask;
        let slow = self.rng.random_bool(0.04);
        let jitter = self.rng.random_range(0.6..1.6);
        let dur = ((m.latency as f64 * jitter) as i64) * if slow { 9 } else { 1 };
        let input_tokens = self.rng.random_range(300..2400);
        let output_tokens = if call_tool.is_some() {
            self.rng.random_range(15..60)
        } else {
            self.rng.random_range(60..420)
        };
        let cached = if self.rng.random_bool(0.3) {
            input_tokens / 2
        } else {
            0
        };
        let output = match &call_tool {
            Some((name, args)) => json!([{"role": "assistant", "parts": [{"type": "tool_call", "id": format!("call_{}", hex::encode(self.id8())), "name": name, "arguments": args}], "finish_reason": "tool_call"}]).to_string(),
            None => json!([{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]).to_string(),
        };
        let defs: Vec<_> = tools
            .iter()
            .map(|n| json!({"type": "function", "name": n}))
            .collect();
        let mut attrs = vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s(m.model)),
            kv("gen_ai.response.model", s(m.response_model)),
            kv("gen_ai.provider.name", s(m.provider)),
            kv("gen_ai.usage.input_tokens", i(input_tokens)),
            kv("gen_ai.usage.output_tokens", i(output_tokens)),
            kv(
                "gen_ai.input.messages",
                s(&text_messages(&[
                    ("system", "You are a helpful customer support agent."),
                    ("user", question),
                ])),
            ),
            kv("gen_ai.output.messages", s(&output)),
            kv(
                "gen_ai.response.finish_reasons",
                any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s(if call_tool.is_some() {
                            "tool_calls"
                        } else {
                            "stop"
                        })),
                    }],
                }),
            ),
            kv(
                "gen_ai.tool.definitions",
                s(&serde_json::Value::Array(defs).to_string()),
            ),
            kv(
                "gen_ai.response.time_to_first_chunk",
                any_value::Value::DoubleValue((dur as f64 * 0.35) / 1000.0),
            ),
        ];
        if cached > 0 {
            attrs.push(kv("gen_ai.usage.cache_read.input_tokens", i(cached)));
        }
        let name = format!("chat {}", m.model);
        self.span(
            ctx,
            At {
                parent: Some(parent),
                start: t,
                dur_ms: dur,
            },
            &name,
            span::SpanKind::Client,
            attrs,
        );
        // Rate limits surface as failed LLM calls that the agent retries.
        if self.rng.random_bool(0.03) {
            Self::fail_last(ctx, "429 rate_limit_error: Number of request tokens has exceeded your per-minute rate limit");
            if let Some(sp) = ctx.spans.last_mut() {
                sp.attributes.push(kv("error.type", s("rate_limit_error")));
            }
        }
        dur
    }

    fn tool(
        &mut self,
        ctx: &mut Ctx,
        parent: [u8; 8],
        t: i64,
        name: &str,
        args: serde_json::Value,
        result: &str,
    ) -> i64 {
        let dur = self.rng.random_range(20..400) * if self.rng.random_bool(0.03) { 40 } else { 1 };
        let call_id = format!("call_{}", hex::encode(self.id8()));
        self.span(
            ctx,
            At {
                parent: Some(parent),
                start: t,
                dur_ms: dur,
            },
            &format!("execute_tool {name}"),
            span::SpanKind::Internal,
            vec![
                kv("gen_ai.operation.name", s("execute_tool")),
                kv("gen_ai.tool.name", s(name)),
                kv("gen_ai.tool.call.id", s(&call_id)),
                kv("gen_ai.tool.call.arguments", s(&args.to_string())),
                kv("gen_ai.tool.call.result", s(result)),
            ],
        );
        dur
    }

    fn retrieval(&mut self, ctx: &mut Ctx, parent: [u8; 8], t: i64, query: &str) -> i64 {
        let dur = self.rng.random_range(30..250);
        let docs = [
            "Returns are accepted within 30 days.",
            "Refunds post within 5 business days.",
            "Orders ship from our Rotterdam warehouse.",
        ];
        let mut attrs = vec![
            kv("openinference.span.kind", s("RETRIEVER")),
            kv("input.value", s(query)),
        ];
        for (n, d) in docs.iter().enumerate() {
            attrs.push(kv(
                &format!("retrieval.documents.{n}.document.content"),
                s(d),
            ));
            attrs.push(kv(
                &format!("retrieval.documents.{n}.document.score"),
                any_value::Value::DoubleValue(0.9 - n as f64 * 0.1),
            ));
        }
        self.span(
            ctx,
            At {
                parent: Some(parent),
                start: t,
                dur_ms: dur,
            },
            "search_knowledge_base",
            span::SpanKind::Internal,
            attrs,
        );
        dur
    }

    /// One agent run: returns the trace's spans.
    fn run(&mut self, t0: i64, session: &str, user: &str, agent: &str, question: &str) -> Ctx {
        let mut ctx = Ctx {
            trace_id: self.rng.random(),
            spans: Vec::new(),
        };
        let weights = [30, 12, 18, 14, 10, 8, 8];
        let total: u32 = weights.iter().sum();
        let mut pick = self.rng.random_range(0..total);
        let mut idx = 0;
        for (n, w) in weights.iter().enumerate() {
            if pick < *w {
                idx = n;
                break;
            }
            pick -= w;
        }
        let m = &MODELS[idx];
        let root = self.id8();
        let mut t = t0 + 3 * MS;
        let tools: &[&str] = match agent {
            "billing-agent" => &["lookup_order", "issue_refund"],
            "research-agent" => &["web_search", "lookup_order"],
            _ => &["lookup_order", "search_knowledge_base"],
        };
        let order = format!("A-{}", self.rng.random_range(1000..4000));
        t += self.retrieval(&mut ctx, root, t, question) * MS;
        // A small share of billing runs call a tool the request never offered.
        let hallucinate = agent == "billing-agent" && self.rng.random_bool(0.08);
        let tool_name = if hallucinate {
            "cancel_subscription"
        } else {
            tools[0]
        };
        let ask = Ask {
            question,
            tools,
            call_tool: Some((tool_name, json!({"order_id": order}))),
            answer: "",
        };
        t += self.llm(&mut ctx, root, t, m, ask) * MS;
        let failure = self.rng.random_range(0..100);
        let result = match failure {
            0..=3 => String::new(),
            4..=6 => json!({"error": "order service timed out after 30s"}).to_string(),
            7..=8 => {
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".into()
            }
            9 => format!("{{\"order_id\": \"{order}\", \"status\": \"ship"),
            _ => {
                let status = ["pending", "shipped", "delivered"][self.rng.random_range(0..3)];
                json!({"order_id": order, "status": status, "eta_days": self.rng.random_range(1..6)}).to_string()
            }
        };
        t += self.tool(
            &mut ctx,
            root,
            t,
            tool_name,
            json!({"order_id": order}),
            &result,
        ) * MS;
        if agent == "billing-agent" && self.rng.random_bool(0.5) {
            let amount = self.rng.random_range(5..600);
            t += self.tool(
                &mut ctx,
                root,
                t,
                "issue_refund",
                json!({"order_id": order, "amount": amount}),
                &json!({"refund_id": format!("R-{amount}"), "ok": true}).to_string(),
            ) * MS;
        }
        let answer = if failure <= 9 {
            "I'm sorry, I couldn't find that order right now. It looks like everything is fine on our side though!"
        } else {
            "Your order is on its way and should arrive within a few days."
        };
        t += self.llm(
            &mut ctx,
            root,
            t,
            m,
            Ask {
                question,
                tools,
                call_tool: None,
                answer,
            },
        ) * MS;
        let dur = (t - t0) / MS + 5;
        let mut root_attrs = vec![
            kv("gen_ai.operation.name", s("invoke_agent")),
            kv("gen_ai.agent.name", s(agent)),
            kv("gen_ai.conversation.id", s(session)),
            kv("session.id", s(session)),
            kv("user.id", s(user)),
            kv("input.value", s(question)),
        ];
        if self.rng.random_bool(0.02) {
            root_attrs.push(kv("error.type", s("AgentTimeout")));
        }
        let at = At {
            parent: None,
            start: t0,
            dur_ms: dur,
        };
        let mut root_span = otlp_span(
            ctx.trace_id,
            root,
            at,
            &format!("invoke_agent {agent}"),
            span::SpanKind::Server,
            root_attrs,
        );
        // The agent span leaves its status unset; failures show through `error.type`.
        root_span.status = None;
        ctx.spans.insert(0, root_span);
        ctx
    }

    /// A whole session (1–14 turns), starting at a random time in `[from, to)`; at most `max` turns.
    /// One session of up to `max` turns starting in `from..to`, its turns `turn_gap_s` seconds
    /// apart.
    pub fn session(
        &mut self,
        from: i64,
        to: i64,
        max: usize,
        turn_gap_s: Range<i64>,
    ) -> ExportTraceServiceRequest {
        self.session_counter += 1;
        let turns = match self.rng.random_range(0..10) {
            0..=4 => self.rng.random_range(1..3),
            5..=7 => self.rng.random_range(3..7),
            _ => self.rng.random_range(7..15),
        }
        .min(max.max(1));
        let agent = [
            "support-agent",
            "support-agent",
            "research-agent",
            "billing-agent",
        ][self.rng.random_range(0..4)];
        let environment = if self.rng.random_bool(0.8) {
            "production"
        } else {
            "staging"
        };
        let version = if self.rng.random_bool(0.7) {
            "1.4.2"
        } else {
            "1.5.0"
        };
        let session = format!("sess-{:05}", self.session_counter);
        let user = format!("user-{}", self.rng.random_range(1..120));
        let mut t = self.rng.random_range(from..to.max(from + 1));
        let mut resource_spans = Vec::new();
        for _ in 0..turns {
            let q = QUESTIONS[self.rng.random_range(0..QUESTIONS.len())];
            let ctx = self.run(t, &session, &user, agent, q);
            resource_spans.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s(agent)),
                        kv("service.version", s(version)),
                        kv("deployment.environment.name", s(environment)),
                        kv("telemetry.sdk.name", s("vigil-demo")),
                    ],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "vigil.demo".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: ctx.spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
            t += self.rng.random_range(turn_gap_s.clone()) * 1_000 * MS;
        }
        ExportTraceServiceRequest { resource_spans }
    }

    /// Spans of agent runs as a live service exports them, about `n`: sessions that started in
    /// the last few seconds, turns seconds apart (an exporter sends a turn's spans as it ends).
    pub fn spans_for_live_load(&mut self, n: usize, now: i64) -> ExportTraceServiceRequest {
        self.spans_between(n, now - 5 * 1_000 * MS, now, 1..5)
    }

    /// Spans of realistic agent runs, about `n` of them, for load generation.
    pub fn spans_for_load(&mut self, n: usize, now: i64) -> ExportTraceServiceRequest {
        self.spans_between(n, now - HOUR, now, TURN_GAP_S)
    }

    fn spans_between(
        &mut self,
        n: usize,
        from: i64,
        to: i64,
        turn_gap_s: Range<i64>,
    ) -> ExportTraceServiceRequest {
        let mut req = ExportTraceServiceRequest {
            resource_spans: Vec::new(),
        };
        let mut count = 0;
        while count < n {
            let r = self.session(from, to, 3, turn_gap_s.clone());
            count += r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>();
            req.resource_spans.extend(r.resource_spans);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vigil_model::{FlagKind, PriceTable, ProjectId, SpanKind};

    use super::*;

    #[test]
    fn demo_workload_exercises_every_feature_a_new_user_should_see() {
        let normalizer = Normalizer::new(Arc::new(PriceTable::builtin().unwrap()));
        let mut g = Generator::new(7);
        let now = now_ns();
        let mut spans = Vec::new();
        for _ in 0..120 {
            let req = g.session(now - 24 * HOUR, now, 20, TURN_GAP_S);
            let out = normalizer.traces(&ProjectId::new("p"), &req);
            assert!(out.rejected.is_empty());
            spans.extend(out.spans);
        }
        let has = |f: &dyn Fn(&vigil_model::Span) -> bool| spans.iter().any(f);
        assert!(has(&|s| s.has_flag(FlagKind::SilentToolFailure)));
        assert!(has(&|s| s.has_flag(FlagKind::HallucinatedTool)));
        assert!(has(&|s| s.kind == SpanKind::Retrieval));
        assert!(has(&|s| s.status == vigil_model::SpanStatus::Error));
        assert!(
            has(&|s| s.kind == SpanKind::Llm && s.cost_usd.is_none()),
            "an unpriced model"
        );
        assert!(has(
            &|s| s.kind == SpanKind::Llm && s.cached_input_tokens.is_some()
        ));
        let providers: std::collections::HashSet<_> =
            spans.iter().filter_map(|s| s.provider.clone()).collect();
        assert!(providers.len() >= 5, "{providers:?}");
        let tools: Vec<_> = spans.iter().filter(|s| s.kind == SpanKind::Tool).collect();
        let flagged = tools.iter().filter(|s| !s.flags.is_empty()).count();
        assert!(
            flagged > 0 && flagged < tools.len() / 4,
            "{flagged} of {}",
            tools.len()
        );
    }
}
