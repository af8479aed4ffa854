//! Normalisation of every shared fixture, as protobuf and as JSON.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use vigil_model::{FlagKind, PriceTable, ProjectId, Span, SpanKind, SpanStatus};

use super::*;
use crate::otlp::{decode_traces, Encoding};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/otlp")
}

fn normalizer() -> Normalizer {
    Normalizer::new(Arc::new(PriceTable::builtin().unwrap()))
}

fn load(name: &str, encoding: Encoding) -> Vec<Span> {
    let body = std::fs::read(fixtures_dir().join(name)).unwrap();
    let req = decode_traces(&body, encoding).unwrap();
    let out = normalizer().traces(&ProjectId::new("p1"), &req);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    out.spans
}

fn by_name<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[test]
fn every_fixture_decodes_identically_from_protobuf_and_json() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("pb") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let pb = load(&format!("{stem}.pb"), Encoding::Protobuf);
        let js = load(&format!("{stem}.json"), Encoding::Json);
        assert!(!pb.is_empty());
        assert_eq!(pb, js, "{stem}: protobuf and JSON normalise differently");
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn otel_genai_openai_fixture() {
    let spans = load("otel-genai-openai.pb", Encoding::Protobuf);
    assert_eq!(spans.len(), 4);
    let agent = &by_name(&spans, "invoke_agent support-agent")[0];
    assert_eq!(agent.kind, SpanKind::Agent);
    assert_eq!(agent.agent_name.as_deref(), Some("support-agent"));
    assert_eq!(agent.session_id.as_deref(), Some("sess-42"));
    assert_eq!(agent.user_id.as_deref(), Some("user-7"));
    assert_eq!(agent.service_name.as_deref(), Some("support-agent"));
    assert_eq!(agent.service_version.as_deref(), Some("1.4.2"));
    assert_eq!(agent.environment.as_deref(), Some("production"));
    assert!(agent.parent_span_id.is_none());

    let chats = by_name(&spans, "chat gpt-4o-mini");
    assert_eq!(chats.len(), 2);
    let first = chats.iter().find(|s| s.input_tokens == Some(37)).unwrap();
    assert_eq!(first.kind, SpanKind::Llm);
    assert_eq!(first.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        first.response_model.as_deref(),
        Some("gpt-4o-mini-2026-01-01")
    );
    assert_eq!(first.provider.as_deref(), Some("openai"));
    assert_eq!(first.output_tokens, Some(10));
    assert_eq!(first.finish_reasons, vec!["tool_calls"]);
    // gpt-4o-mini: $0.15 in / $0.60 out per million.
    let cost = first.cost_usd.unwrap();
    assert!(
        (cost - (37.0 * 0.15 + 10.0 * 0.60) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(first.input_messages[0].role, "system");
    assert!(first.input_messages[1]
        .content
        .as_deref()
        .unwrap()
        .contains("A-1001"));
    let call = &first.output_messages[0].tool_calls[0];
    assert_eq!(call.name, "lookup_order");
    assert!(call.arguments["query"]
        .as_str()
        .unwrap()
        .contains("Where is my order"));
    assert!(first.flags.is_empty());

    assert_eq!(
        first.agent_name.as_deref(),
        Some("support-agent"),
        "inherited from the agent span"
    );
    assert_eq!(first.session_id.as_deref(), Some("sess-42"));
    let tool = &by_name(&spans, "execute_tool lookup_order")[0];
    assert_eq!(tool.kind, SpanKind::Tool);
    assert_eq!(tool.tool_name.as_deref(), Some("lookup_order"));
    assert!(tool.tool_call_id.is_some());
    assert_eq!(tool.tool_result.as_ref().unwrap()["status"], "pending");
    assert!(tool.tool_arguments.as_ref().unwrap()["query"].is_string());
    assert!(tool.flags.is_empty());
    assert!(
        tool.attributes.contains_key("gen_ai.tool.call.result"),
        "original attributes are kept"
    );
}

#[test]
fn openinference_openai_fixture() {
    let spans = load("openinference-openai.pb", Encoding::Protobuf);
    let chats = by_name(&spans, "ChatCompletion");
    assert_eq!(chats.len(), 2);
    for c in &chats {
        assert_eq!(c.kind, SpanKind::Llm);
        assert_eq!(
            c.model.as_deref(),
            Some("gpt-4o-mini"),
            "requested model comes from the invocation parameters"
        );
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-mini-2026-01-01"));
        assert_eq!(c.provider.as_deref(), Some("openai"));
        assert_eq!(c.status, SpanStatus::Ok);
        assert_eq!(c.declared_tools, vec!["lookup_order"]);
        assert!(c.cost_usd.is_some());
    }
    let first = chats.iter().find(|s| s.input_tokens == Some(37)).unwrap();
    assert_eq!(first.output_messages[0].tool_calls[0].name, "lookup_order");
    let second = chats.iter().find(|s| s.input_tokens == Some(127)).unwrap();
    assert_eq!(second.input_messages.len(), 4);
    assert_eq!(second.input_messages[3].role, "tool");
    assert!(second.input_messages[3].tool_call_id.is_some());
    assert!(second.output_messages[0]
        .content
        .as_deref()
        .unwrap()
        .contains("Based on the tool result"));
    let ttft = second
        .time_to_first_token_ms
        .expect("streaming call has a first-token event");
    assert!(ttft > 0.0 && ttft < second.duration_ms, "{ttft}");
}

#[test]
fn openinference_anthropic_fixture_with_nested_sdk_spans() {
    let spans = load("openinference-anthropic.pb", Encoding::Protobuf);
    assert_eq!(spans.len(), 5);
    let oi = by_name(&spans, "messages.create");
    let sdk = by_name(&spans, "anthropic.messages.create");
    assert_eq!((oi.len(), sdk.len()), (2, 2));
    for s in oi.iter().chain(&sdk) {
        assert_eq!(s.kind, SpanKind::Llm);
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(s.provider.as_deref(), Some("anthropic"));
        assert!(s.cost_usd.unwrap() > 0.0);
    }
    let first = oi.iter().find(|s| s.input_tokens == Some(22)).unwrap();
    assert_eq!(first.output_tokens, Some(36));
    assert_eq!(first.finish_reasons, vec!["tool_use"]);
    assert_eq!(
        first.output_messages[0].tool_calls.len(),
        1,
        "tool calls are not duplicated from `contents`"
    );
    assert_eq!(
        first.output_messages[0].tool_calls[0].id.as_deref(),
        Some("toolu_24")
    );
    let second = oi.iter().find(|s| s.input_tokens == Some(125)).unwrap();
    assert!(second.output_messages[0]
        .content
        .as_deref()
        .unwrap()
        .starts_with("Mock answer"));
    assert_eq!(second.input_messages[2].role, "tool");
    let sdk_first = sdk.iter().find(|s| s.input_tokens == Some(22)).unwrap();
    assert_eq!(
        sdk_first.finish_reasons.len(),
        0,
        "stop reason stays an attribute on the SDK span"
    );
    assert_eq!(sdk_first.parent_span_id, Some(first.span_id));
    let agent = by_name(&spans, "invoke_agent support-agent")[0];
    assert_eq!(agent.session_id.as_deref(), Some("sess-42"));
}

fn one_span(attrs: serde_json::Value) -> Span {
    let attributes: Vec<serde_json::Value> = attrs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => json!({"stringValue": s}),
                serde_json::Value::Number(n) if n.is_i64() => json!({"intValue": n.to_string()}),
                serde_json::Value::Number(n) => json!({"doubleValue": n}),
                serde_json::Value::Bool(b) => json!({"boolValue": b}),
                other => json!({"stringValue": other.to_string()}),
            };
            json!({"key": k, "value": value})
        })
        .collect();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
        "name": "s", "kind": 1, "startTimeUnixNano": "1000000000", "endTimeUnixNano": "3000000000", "attributes": attributes}]}]}]});
    let req = decode_traces(body.to_string().as_bytes(), Encoding::Json).unwrap();
    let mut out = normalizer().traces(&ProjectId::new("p"), &req);
    assert!(out.rejected.is_empty());
    out.spans.remove(0)
}

#[test]
fn openllmetry_legacy_attributes_are_normalised() {
    let s = one_span(json!({
        "llm.request.type": "chat",
        "gen_ai.system": "OpenAI",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.prompt_tokens": 100,
        "gen_ai.usage.completion_tokens": 20,
        "gen_ai.usage.cache_read_input_tokens": 40,
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "book a flight",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_1",
        "gen_ai.completion.0.tool_calls.0.name": "delete_account",
        "gen_ai.completion.0.tool_calls.0.arguments": "{\"id\": 7}",
        "llm.request.functions.0.name": "search_flights",
        "traceloop.association.properties.session_id": "s-9",
        "traceloop.association.properties.user_id": "u-1"
    }));
    assert_eq!(s.kind, SpanKind::Llm);
    assert_eq!(s.provider.as_deref(), Some("openai"));
    assert_eq!(
        (s.input_tokens, s.output_tokens, s.cached_input_tokens),
        (Some(100), Some(20), Some(40))
    );
    assert_eq!(s.session_id.as_deref(), Some("s-9"));
    assert_eq!(s.user_id.as_deref(), Some("u-1"));
    assert_eq!(
        s.input_messages[0].content.as_deref(),
        Some("book a flight")
    );
    assert_eq!(s.finish_reasons, vec!["tool_calls"]);
    assert_eq!(
        s.output_messages[0].tool_calls[0].arguments,
        json!({"id": 7})
    );
    // gpt-4o: 60 uncached at $2.50, 40 cached at $1.25, 20 out at $10.
    let expected = (60.0 * 2.5 + 40.0 * 1.25 + 20.0 * 10.0) / 1e6;
    assert!(
        (s.cost_usd.unwrap() - expected).abs() < 1e-12,
        "{:?}",
        s.cost_usd
    );
    assert!(s.has_flag(FlagKind::HallucinatedTool));
    assert!(s.flags[0].reason.contains("delete_account"));
}

#[test]
fn openllmetry_tool_span_with_error_result_is_flagged_although_ok() {
    let s = one_span(json!({
        "traceloop.span.kind": "tool",
        "traceloop.entity.name": "get_weather",
        "traceloop.entity.input": "{\"city\": \"Paris\"}",
        "traceloop.entity.output": "{\"error\": \"upstream timeout\"}"
    }));
    assert_eq!(s.kind, SpanKind::Tool);
    assert_eq!(s.tool_name.as_deref(), Some("get_weather"));
    assert_eq!(s.tool_arguments, Some(json!({"city": "Paris"})));
    assert!(s.has_flag(FlagKind::SilentToolFailure));
}

#[test]
fn unknown_conventions_are_other_with_every_attribute_kept() {
    let s = one_span(json!({"http.method": "GET", "custom.thing": 3, "ratio": 0.5}));
    assert_eq!(s.kind, SpanKind::Other);
    assert_eq!(s.attributes.len(), 3);
    assert_eq!(s.attributes["custom.thing"], json!(3));
    assert_eq!(s.duration_ms, 2000.0);
    assert_eq!(s.cost_usd, None);
}

#[test]
fn unpriced_models_have_no_cost_rather_than_zero() {
    let s = one_span(
        json!({"gen_ai.operation.name": "chat", "gen_ai.request.model": "acme-internal-7b",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}),
    );
    assert_eq!(s.kind, SpanKind::Llm);
    assert_eq!(s.cost_usd, None);
    assert_eq!(s.input_tokens, Some(10));
}

#[test]
fn invalid_spans_are_rejected_individually() {
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "ok", "startTimeUnixNano": "5"},
        {"traceId": "0102", "spanId": "0102030405060708", "name": "short trace", "startTimeUnixNano": "5"},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0000000000000000", "name": "zero span", "startTimeUnixNano": "5"},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060709", "name": "no start"}
    ]}]}]});
    let req = decode_traces(body.to_string().as_bytes(), Encoding::Json).unwrap();
    let out = normalizer().traces(&ProjectId::new("p"), &req);
    assert_eq!(out.spans.len(), 1);
    assert_eq!(out.rejected.len(), 3);
    let msg = out.rejection_message().unwrap();
    assert!(msg.starts_with("3 span(s) rejected"), "{msg}");
}

#[test]
fn genai_log_events_fill_messages_of_their_span() {
    let mut span = one_span(
        json!({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.tool.definitions": "[{\"type\":\"function\",\"name\":\"lookup\"}]"}),
    );
    assert!(span.input_messages.is_empty());
    let ev = |name: &str, body: serde_json::Value, t: i64| LogEvent {
        trace_id: Some(span.trace_id),
        span_id: Some(span.span_id),
        name: name.into(),
        time: t,
        severity: None,
        body,
        attributes: Default::default(),
        resource_attributes: Default::default(),
    };
    let events = vec![
        ev(
            "gen_ai.choice",
            json!({"index": 0, "finish_reason": "tool_calls", "message": {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "refund", "arguments": "{}"}}]}}),
            3,
        ),
        ev("gen_ai.user.message", json!({"content": "hello"}), 1),
        ev("gen_ai.system.message", json!({"content": "be nice"}), 0),
    ];
    assert!(events::merge_log_events(&mut span, &events));
    assert_eq!(
        span.input_messages
            .iter()
            .map(|m| m.role.as_str())
            .collect::<Vec<_>>(),
        vec!["system", "user"]
    );
    assert_eq!(span.output_messages[0].tool_calls[0].name, "refund");
    assert_eq!(span.finish_reasons, vec!["tool_calls"]);
    assert!(span.has_flag(FlagKind::HallucinatedTool));
}
