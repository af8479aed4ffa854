//! Real clients: `shared/tools/capture_agent.py` (official OpenAI/Anthropic SDKs with real
//! OpenTelemetry instrumentations) against `shared/tools/mock_llm.py`, exporting to Vigil over
//! OTLP/HTTP and OTLP/gRPC.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn run_agent(server: &TestServer, mock: &MockLlm, flavor: &str, protocol: &str, session: &str) {
    let endpoint = if protocol == "grpc" {
        server.otlp_grpc.clone()
    } else {
        server.otlp_http.clone()
    };
    let out = Command::new(python())
        .arg(shared_dir().join("tools/capture_agent.py"))
        .args([flavor, &mock.base, &endpoint, protocol])
        .env("SESSION_ID", session)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("x-vigil-api-key={}", server.key),
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{flavor}/{protocol} failed: {stderr}");
    assert!(
        !stderr.contains("Failed to export"),
        "{flavor}/{protocol} export failed: {stderr}"
    );
}

fn session_spans(server: &TestServer, session: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, s) = server.get(&format!("/api/v1/sessions/{session}"));
        if status == 200 {
            let id = s["traces"][0]["trace_id"].as_str().unwrap().to_string();
            return server.wait_for_trace(&id)["spans"]
                .as_array()
                .unwrap()
                .clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session {session} never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn instrumented_agents_export_over_http_and_grpc_and_normalise() {
    let server = TestServer::start();
    let mock = MockLlm::start();
    for (flavor, protocol) in [
        ("otel-openai", "http"),
        ("openinference-openai", "http"),
        ("openinference-anthropic", "http"),
        ("otel-openai", "grpc"),
        ("openinference-anthropic", "grpc"),
    ] {
        let session = format!("{flavor}-{protocol}");
        run_agent(&server, &mock, flavor, protocol, &session);
        let spans = session_spans(&server, &session);
        let llm: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "llm").collect();
        assert!(llm.len() >= 2, "{session}: {} llm spans", llm.len());
        for s in &llm {
            assert!(s["input_tokens"].as_i64().unwrap() > 0, "{session}: tokens");
            assert!(!s["model"].is_null(), "{session}: model");
            assert!(
                !s["cost_usd"].is_null(),
                "{session}: {} is priced",
                s["model"]
            );
        }
        let first_call = llm
            .iter()
            .find_map(|s| s["output_messages"][0]["tool_calls"][0].as_object())
            .expect("a tool call");
        assert_eq!(first_call["name"], "lookup_order");
        assert!(first_call["arguments"]["query"]
            .as_str()
            .unwrap()
            .contains("A-1001"));
        let agent = spans.iter().find(|s| s["kind"] == "agent").unwrap();
        assert_eq!(agent["session_id"], session.as_str());
        assert_eq!(agent["service_name"], "support-agent");
        if flavor.ends_with("openai") {
            let tool = spans.iter().find(|s| s["kind"] == "tool").unwrap();
            assert_eq!(tool["tool_name"], "lookup_order");
            assert_eq!(tool["tool_result"]["status"], "pending");
            assert!(tool["flags"].as_array().unwrap().is_empty());
        }
    }
    let (_, sessions) = server.get("/api/v1/sessions");
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 5);
}
