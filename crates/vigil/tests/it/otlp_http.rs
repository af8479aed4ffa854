//! OTLP/HTTP server semantics (OTLP spec and RELIABILITY.md I1–I8) against the real binary.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValueList};
use prost::Message;
use serde_json::{json, Value};

use crate::support::*;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn spans_without_project(v: &Value) -> Vec<Value> {
    let mut spans = v["spans"].as_array().unwrap().clone();
    for s in &mut spans {
        s.as_object_mut().unwrap().remove("project_id");
    }
    spans
}

#[test]
fn protobuf_and_json_fixtures_store_identical_spans() {
    let server = TestServer::start();
    let other = cli(&server.dir, &["projects", "create", "json-side"]);
    let other_key = other
        .lines()
        .find_map(|l| l.strip_prefix("API key (shown once): "))
        .unwrap()
        .to_string();
    for name in [
        "otel-genai-openai",
        "openinference-openai",
        "openinference-anthropic",
    ] {
        let r = server.post_otlp("/v1/traces", PB, fixture(&format!("{name}.pb")));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], PB);
        let resp = ExportTraceServiceResponse::decode(r.bytes().unwrap()).unwrap();
        assert!(
            resp.partial_success.is_none(),
            "partial_success stays unset on full success"
        );
        let r = server
            .client()
            .post(format!("{}/v1/traces", server.otlp_http))
            .header("content-type", JSON)
            .header("authorization", format!("Bearer {other_key}"))
            .body(fixture(&format!("{name}.json")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], JSON);
    }
    let (_, page) = server.get("/api/v1/traces");
    let traces = page["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 3);
    for t in traces {
        let id = t["trace_id"].as_str().unwrap();
        let (s1, a) = server.get(&format!("/api/v1/traces/{id}"));
        let (s2, b) = server.get_as(&format!("/api/v1/traces/{id}"), &other_key);
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(spans_without_project(&a), spans_without_project(&b));
    }
}

#[test]
fn empty_exports_succeed_in_both_encodings() {
    let server = TestServer::start();
    let r = server.post_otlp("/v1/traces", PB, Vec::new());
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], PB);
    let r = server.post_otlp("/v1/traces", JSON, b"{}".to_vec());
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert!(
        body.get("partialSuccess").is_none() || body["partialSuccess"].is_null(),
        "{body}"
    );
    assert_eq!(server.post_otlp("/v1/logs", PB, Vec::new()).status(), 200);
}

#[test]
fn json_with_uppercase_ids_and_unknown_fields_is_accepted() {
    let server = TestServer::start();
    let mut body: Value = serde_json::from_slice(&fixture("otel-genai-openai.json")).unwrap();
    for s in body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array_mut()
        .unwrap()
    {
        for k in ["traceId", "spanId", "parentSpanId"] {
            if let Some(v) = s.get(k).and_then(Value::as_str).map(str::to_uppercase) {
                s[k] = json!(v);
            }
        }
        s["fooBar"] = json!({"ignored": true});
    }
    let r = server.post_otlp("/v1/traces", JSON, serde_json::to_vec(&body).unwrap());
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    server.wait_for_trace("9114ec57671e78a04b995b80cbecd2ac");
}

#[test]
fn invalid_spans_get_partial_success_and_the_rest_is_stored() {
    let server = TestServer::start();
    let trace = [7u8; 16];
    let mut spans: Vec<_> = (1..=100)
        .map(|i| span(trace, i, &format!("step {i}"), vec![]))
        .collect();
    spans[10].trace_id = vec![1, 2, 3];
    spans[20].span_id = vec![0; 8];
    spans[30].trace_id = vec![0; 16];
    let r = server.post_otlp("/v1/traces", PB, request(spans).encode_to_vec());
    assert_eq!(r.status(), 200);
    let resp = ExportTraceServiceResponse::decode(r.bytes().unwrap()).unwrap();
    let partial = resp.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(
        partial.error_message.contains("3 span(s) rejected"),
        "{}",
        partial.error_message
    );
    let t = server.wait_for_trace(&hex(trace));
    assert_eq!(t["spans"].as_array().unwrap().len(), 97);
}

fn hex(b: [u8; 16]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let server = TestServer::start_with(&["--max-body-size", "1MiB"], &[]);
    assert_eq!(
        server
            .post_otlp("/v1/traces", PB, fixture("otel-genai-openai.pb"))
            .status(),
        200
    );

    // Truncated protobuf → 400 with a google.rpc.Status body in protobuf.
    let pb = fixture("openinference-openai.pb");
    let r = server.post_otlp("/v1/traces", PB, pb[..pb.len() / 2].to_vec());
    assert_eq!(r.status(), 400);
    let status = RpcStatus::decode(r.bytes().unwrap()).unwrap();
    assert!(
        status.message.contains("invalid protobuf"),
        "{}",
        status.message
    );

    // Malformed JSON and string enums → 400 with a JSON Status.
    let r = server.post_otlp("/v1/traces", JSON, b"{\"resourceSpans\": [".to_vec());
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("OTLP/JSON"));
    let enum_str = String::from_utf8(fixture("otel-genai-openai.json"))
        .unwrap()
        .replacen("\"kind\": 3", "\"kind\": \"SPAN_KIND_CLIENT\"", 1);
    assert_eq!(
        server
            .post_otlp("/v1/traces", JSON, enum_str.into_bytes())
            .status(),
        400
    );

    // Unknown content type and encoding → 415.
    assert_eq!(
        server
            .post_otlp("/v1/traces", "text/plain", b"hello".to_vec())
            .status(),
        415
    );
    let r = server.post_otlp_encoded(PB, "br", vec![1, 2, 3]);
    assert_eq!(r.status(), 415);

    // Declared oversize → 413 before reading; chunked oversize → 413 while reading.
    assert_eq!(
        server
            .post_otlp("/v1/traces", PB, vec![0u8; 2 * 1024 * 1024])
            .status(),
        413
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![0u8; 64 * 1024])).collect();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.otlp_http))
        .header("content-type", PB)
        .header("x-vigil-api-key", &server.key)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            chunks
                .into_iter()
                .flat_map(|c| c.unwrap())
                .collect::<Vec<u8>>(),
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);

    // A gzip bomb: 10 KB that inflates to 64 MiB → 413 after at most 1 MiB was inflated.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 64 * 1024 * 1024]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 100 * 1024);
    let r = server.post_otlp_encoded(PB, "gzip", bomb);
    assert_eq!(r.status(), 413);

    // Invalid UTF-8 in a protobuf string field → 400.
    let mut req = request(vec![span([3; 16], 1, "PLACEHOLDER", vec![])]).encode_to_vec();
    let pos = req.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
    req[pos] = 0xff;
    assert_eq!(server.post_otlp("/v1/traces", PB, req).status(), 400);

    // Nesting beyond the protobuf recursion limit → 400; deep but decodable nesting is stored, capped.
    let nest = |depth: usize| {
        let mut v = AnyValue {
            value: Some(sv("leaf")),
        };
        for _ in 0..depth {
            v = AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: "k".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                })),
            };
        }
        v
    };
    let deep = |depth: usize, id: u64| {
        request(vec![span(
            [4; 16],
            id,
            "deep",
            vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "deep".into(),
                value: Some(nest(depth)),
                ..Default::default()
            }],
        )])
        .encode_to_vec()
    };
    assert_eq!(
        server.post_otlp("/v1/traces", PB, deep(300, 1)).status(),
        400
    );
    assert_eq!(
        server.post_otlp("/v1/traces", PB, deep(25, 2)).status(),
        200
    );
    let deep_json = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(
        server
            .post_otlp(
                "/v1/traces",
                JSON,
                format!("{{\"resourceSpans\": {deep_json}}}").into_bytes()
            )
            .status(),
        400
    );

    // 10,000 attributes on one span: accepted and every one kept.
    let attrs = (0..10_000)
        .map(|i| kv(&format!("attr.{i}"), sv("v")))
        .collect();
    assert_eq!(
        server
            .post_otlp(
                "/v1/traces",
                PB,
                request(vec![span([5; 16], 1, "wide", attrs)]).encode_to_vec()
            )
            .status(),
        200
    );
    let t = server.wait_for_trace(&hex([5; 16]));
    assert_eq!(
        t["spans"][0]["attributes"].as_object().unwrap().len(),
        10_000
    );

    // Nothing else was lost, and the server still ingests.
    server.wait_for_trace("9114ec57671e78a04b995b80cbecd2ac");
    assert_eq!(
        server
            .post_otlp("/v1/traces", PB, fixture("openinference-openai.pb"))
            .status(),
        200
    );
    let (_, page) = server.get("/api/v1/traces");
    assert_eq!(page["traces"].as_array().unwrap().len(), 4);
}

#[test]
fn gzip_bodies_are_accepted_and_redelivery_is_idempotent() {
    let server = TestServer::start();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&fixture("openinference-anthropic.pb"))
        .unwrap();
    let gz = enc.finish().unwrap();
    for _ in 0..2 {
        let r = server.post_otlp_encoded(PB, "gzip", gz.clone());
        assert_eq!(r.status(), 200);
    }
    let (_, page) = server.get("/api/v1/traces");
    assert_eq!(page["traces"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["traces"][0]["span_count"], 5,
        "a redelivered batch is stored once"
    );
}

#[test]
fn ingest_requires_a_valid_key() {
    let server = TestServer::start();
    let post = |key: Option<&str>| {
        let mut r = server
            .client()
            .post(format!("{}/v1/traces", server.otlp_http))
            .header("content-type", PB);
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.body(fixture("otel-genai-openai.pb"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("vk_notarealkeynotarealkeynotarealkey1234")), 401);
    assert_eq!(post(Some("' OR 1=1 --")), 401);
    assert_eq!(post(Some("vk_\"quoted\";DROP TABLE api_keys")), 401);
    assert_eq!(post(Some(&server.key)), 200);
    // OTLP/HTTP is also served on the API port, for single-port setups.
    let r = server
        .client()
        .post(format!("{}/v1/traces", server.api))
        .header("content-type", PB)
        .header("x-vigil-api-key", &server.key)
        .body(fixture("openinference-openai.pb"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn genai_events_sent_as_logs_fill_their_span() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let server = TestServer::start();
    let trace = [9u8; 16];
    let llm = span(
        trace,
        1,
        "chat gpt-4o-mini",
        vec![
            kv("gen_ai.operation.name", sv("chat")),
            kv("gen_ai.request.model", sv("gpt-4o-mini")),
        ],
    );
    let span_id = llm.span_id.clone();
    assert_eq!(
        server
            .post_otlp("/v1/traces", PB, request(vec![llm]).encode_to_vec())
            .status(),
        200
    );
    let body = |content: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("content", sv(content))],
            })),
        })
    };
    let record = |name: &str, content: &str, t: u64| LogRecord {
        time_unix_nano: t,
        event_name: name.into(),
        trace_id: trace.to_vec(),
        span_id: span_id.clone(),
        body: body(content),
        ..LogRecord::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("gen_ai.user.message", "where is my parcel?", 1),
                    record("gen_ai.system.message", "be brief", 0),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(
        server
            .post_otlp("/v1/logs", PB, logs.encode_to_vec())
            .status(),
        200
    );
    let t = server.wait_for_trace(&hex(trace));
    let msgs = &t["spans"][0]["input_messages"];
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[1]["content"], "where is my parcel?");
    let (_, found) = server.get("/api/v1/traces?q=gpt-4o-mini");
    assert_eq!(found["traces"].as_array().unwrap().len(), 1);
}
