//! The gateway with the official `openai` and `anthropic` SDKs (tests/gateway/sdk_clients.py) in
//! front of `shared/tools/mock_llm.py`: failover, retries, circuit breaking, streaming, cross-format
//! routing and errors; then the spans every call left behind, through the query API.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn config(mock: &str) -> String {
    format!(
        r#"
[gateway]
retries = 2
backoff_base = "10ms"
backoff_max = "100ms"
circuit = {{ failures = 3, window = "30s", open_for = "1s" }}

[[gateway.providers]]
name = "mockoai"
kind = "openai_compatible"
base_url = "{mock}/v1"

[[gateway.providers]]
name = "mockant"
kind = "anthropic"
base_url = "{mock}/v1"
api_key_env = "VIGIL_TEST_ANTHROPIC_KEY"

[[gateway.models]]
name = "fast"
targets = [{{ provider = "mockoai", model = "m1-fail500" }}, {{ provider = "mockoai", model = "gpt-4o-mini" }}]

[[gateway.models]]
name = "claude-via-openai"
targets = [{{ provider = "mockant", model = "claude-haiku-4-5" }}]

[[gateway.models]]
name = "gpt-via-anthropic"
targets = [{{ provider = "mockoai", model = "gpt-4o-mini" }}]

[[gateway.providers]]
name = "mockslow"
kind = "openai_compatible"
base_url = "{mock}/v1"
timeouts = {{ connect = "1s", first_token = "300ms", total = "5s" }}

[[gateway.models]]
name = "slowpoke"
targets = [{{ provider = "mockslow", model = "m-slow" }}, {{ provider = "mockoai", model = "gpt-4o-mini" }}]

[[gateway.models]]
name = "cheap-cached"
targets = [{{ provider = "mockoai", model = "gpt-4o-mini" }}]

[[gateway.models]]
name = "limited"
targets = [{{ provider = "mockoai", model = "gpt-4o-mini" }}]

[[gateway.limits]]
scope = "model"
subject = "limited"
rpm = 2

[gateway.cache]
enabled = true
ttl = "10m"
semantic = {{ embedding_model = "mockoai/text-embedding-3-small", threshold = 0.999 }}
"#
    )
}

fn gateway_spans(server: &TestServer, expect: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, page) = server.get("/api/v1/traces?service=vigil-gateway&limit=200");
        let traces = page["traces"].as_array().cloned().unwrap_or_default();
        if traces.len() >= expect || std::time::Instant::now() > deadline {
            return traces
                .iter()
                .flat_map(|t| {
                    let (_, d) = server.get(&format!(
                        "/api/v1/traces/{}",
                        t["trace_id"].as_str().unwrap()
                    ));
                    d["spans"].as_array().cloned().unwrap_or_default()
                })
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn official_sdks_through_the_gateway_and_every_call_traced() {
    let mock = MockLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, config(&mock.base)).unwrap();
    let server = TestServer::start_with(
        &[],
        &[
            ("VIGIL_CONFIG", cfg.to_str().unwrap()),
            ("VIGIL_TEST_ANTHROPIC_KEY", "sk-ant-not-a-real-key"),
        ],
    );
    // A virtual key for one team: two models allowed, and a budget that one call uses up.
    let virtual_key = cli(
        &server.dir,
        &[
            "gateway-keys",
            "create",
            "--name",
            "support-bot",
            "--team",
            "support",
            "--models",
            "fast,cheap-cached",
            "--budget",
            "0.000001",
            "--period",
            "total",
        ],
    )
    .trim()
    .to_string();
    assert!(virtual_key.starts_with("gk_"), "{virtual_key}");
    // The project's guardrail policy: model answers that call `delete_*` are refused.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "gateway_tool_calls = \"block\"\n[[rules]]\nname = \"no-destruction\"\ntools = [\"delete_*\"]\naction = \"deny\"\n",
    )
    .unwrap();
    cli(
        &server.dir,
        &["guard", "set-policy", policy.to_str().unwrap()],
    );
    let out = Command::new(python())
        .arg(repo_root().join("crates/vigil/tests/gateway/sdk_clients.py"))
        .args([&server.api, &server.key, &mock.base, &virtual_key])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all gateway checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 24 calls were answered, failed upstream or were abandoned or failed upstream (refusals by key, limit or budget leave no span).
    let spans = gateway_spans(&server, 24);
    assert!(spans.len() >= 24, "{} gateway spans", spans.len());
    let attr = |s: &Value, k: &str| s["attributes"][k].clone();

    // A hanging upstream timed out after `first_token` and the next target answered.
    let slow = spans
        .iter()
        .find(|s| attr(s, "vigil.gateway.requested_model") == "slowpoke")
        .expect("the slowpoke span");
    let attempts = attr(slow, "vigil.gateway.attempts");
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("no response within"),
        "{attempts}"
    );
    assert_eq!(slow["status"], "ok");

    // Failover: three failed attempts on the first target, then the second answered.
    let failover = spans
        .iter()
        .find(|s| attr(s, "vigil.gateway.failovers") == 1 && s["session_id"] == "sess-gw")
        .expect("the failover call");
    let attempts = attr(failover, "vigil.gateway.attempts");
    assert_eq!(attempts.as_array().unwrap().len(), 4, "{attempts}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(failover["user_id"], "user-gw");
    assert_eq!(failover["status"], "ok");
    assert!(
        failover["cost_usd"].as_f64().unwrap() > 0.0,
        "gpt-4o-mini is priced"
    );
    assert_eq!(
        attr(failover, "vigil.tags"),
        serde_json::json!(["team=support", "app=web"])
    );

    // The open circuit was recorded on the call that skipped the target.
    assert!(spans.iter().any(|s| attr(s, "vigil.gateway.attempts")
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["skipped"] == "circuit open"))));

    // The streamed call joined the caller's trace, with time to first token and the tool call.
    let (status, joined) = server.get("/api/v1/traces/0af7651916cd43dd8448eb211c80319c");
    assert_eq!(status, 200, "the traceparent's trace");
    let s = &joined["spans"][0];
    assert_eq!(s["parent_span_id"], "b7ad6b7169203331");
    assert!(s["time_to_first_token_ms"].as_f64().is_some());
    assert_eq!(
        s["output_messages"][0]["tool_calls"][0]["name"],
        "lookup_order"
    );
    assert_eq!(
        s["output_messages"][0]["tool_calls"][0]["arguments"]["query"],
        "where is A-1001"
    );
    assert!(
        s["input_tokens"].as_i64().unwrap() > 0,
        "usage was asked for upstream"
    );

    // Cross-format: an OpenAI client served by an Anthropic model.
    let cross = spans
        .iter()
        .find(|s| {
            attr(s, "vigil.gateway.requested_model") == "claude-via-openai"
                && s["provider"] == "anthropic"
        })
        .expect("a cross-format span");
    assert_eq!(attr(cross, "vigil.gateway.client_format"), "openai");
    assert!(cross["cost_usd"].as_f64().unwrap() > 0.0);

    // Failures are spans too: the 429 after retries and the malformed upstream JSON.
    assert!(spans.iter().any(|s| s["status"] == "error"
        && s["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("429"))));
    assert!(spans.iter().any(|s| s["status"] == "error"
        && s["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid JSON"))));
    assert!(spans.iter().any(|s| s["kind"] == "embedding"));
    // The client that went away: its call is a cancelled span.
    let gone = spans
        .iter()
        .find(|s| s["session_id"] == "sess-gone")
        .expect("the cancelled call's span");
    assert_eq!(attr(gone, "vigil.gateway.cancelled"), true);
    assert_eq!(gone["status"], "error");
    assert!(gone["error_message"]
        .as_str()
        .unwrap()
        .contains("cancelled"));

    // Cache hits are spans with what they saved; virtual-key calls carry the key and team.
    let hit = spans
        .iter()
        .find(|s| attr(s, "vigil.gateway.cache_hit") == true)
        .expect("a cache-hit span");
    assert!(attr(hit, "vigil.gateway.cost_saved_usd").as_f64().unwrap() > 0.0);
    assert_eq!(hit["cost_usd"], 0.0);
    assert!(spans
        .iter()
        .any(|s| attr(s, "vigil.gateway.team") == "support"
            && attr(s, "vigil.gateway.key_id")
                .as_str()
                .is_some_and(|k| k.starts_with("gkid_"))));
    // The budget's thresholds became events.
    let (status, events) = server.get("/api/v1/gateway/events");
    assert_eq!(status, 200);
    let percents: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "budget_threshold" && e["payload"]["scope"] == "key")
        .map(|e| e["payload"]["percent"].as_i64().unwrap())
        .collect();
    assert_eq!(percents, vec![50, 80, 100], "{events}");
    // Tool policy on answers: the blocked call is an error span naming the rule; the streamed one
    // carries the verdict.
    assert!(spans.iter().any(|s| s["status"] == "error"
        && s["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("no-destruction")));
    let flagged = spans
        .iter()
        .find(|s| s["session_id"] == "sess-policy")
        .expect("the streamed call's span");
    assert_eq!(
        attr(flagged, "vigil.guard.tool_calls")[0]["decision"],
        "deny",
        "{flagged}"
    );
    // Provider keys never reach a span.
    assert!(!serde_json::to_string(&spans)
        .unwrap()
        .contains("sk-ant-not-a-real-key"));
}

/// An upstream that starts an OpenAI stream and then fails: with an error event (`mid-error`) or
/// by dropping the connection before the stream's end (`mid-cut`).
fn start_failing_stream_upstream() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                // The request: headers, then a body of Content-Length bytes.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = conn.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break text[end + 4..].to_string();
                        }
                    }
                };
                let piece = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                out += &piece(
                    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
                );
                let _ = conn.write_all(out.as_bytes());
                let _ = conn.flush();
                std::thread::sleep(std::time::Duration::from_millis(50));
                if body.contains("mid-error") {
                    let _ = conn.write_all(
                        piece("data: {\"error\":{\"message\":\"the model overloaded mid-stream\",\"type\":\"server_error\"}}\n\n")
                            .as_bytes(),
                    );
                    let _ = conn.write_all(b"0\r\n\r\n");
                }
                // `mid-cut`: the connection closes here, before the stream's last chunk.
            });
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn an_upstream_failing_mid_stream_reaches_the_client_as_an_error_event_and_fails_the_span() {
    let upstream = start_failing_stream_upstream();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nretries = 0\n\n[[gateway.providers]]\nname = \"flaky\"\nkind = \"openai_compatible\"\nbase_url = \"{upstream}\"\n"
        ),
    )
    .unwrap();
    let server = TestServer::start_with(&[], &[("VIGIL_CONFIG", cfg.to_str().unwrap())]);
    for (model, says) in [
        ("flaky/mid-error", "the model overloaded mid-stream"),
        ("flaky/mid-cut", "stream broke"),
    ] {
        let resp = server
            .client()
            .post(format!("{}/v1/chat/completions", server.api))
            .bearer_auth(&server.key)
            .json(&serde_json::json!({
                "model": model,
                "stream": true,
                "messages": [{"role": "user", "content": "hi"}]
            }))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{model}: the stream had begun");
        let text = resp.text().unwrap();
        // What was relayed before the failure, then one well-formed OpenAI error event.
        assert!(text.contains("\"Hel\""), "{model}: {text}");
        let error_event = text
            .split("\n\n")
            .filter_map(|ev| ev.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .find(|v| v.get("error").is_some())
            .unwrap_or_else(|| panic!("{model}: no error event in {text}"));
        let message = error_event["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{model}: {message}");
        assert_eq!(
            error_event["error"]["type"], "api_error",
            "{model}: {error_event}"
        );
    }
    // Both calls are error spans that say what happened.
    let spans = gateway_spans(&server, 2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    for (model, says) in [
        ("mid-error", "the model overloaded mid-stream"),
        ("mid-cut", "stream broke"),
    ] {
        let span = spans
            .iter()
            .find(|s| s["model"].as_str().is_some_and(|m| m.ends_with(model)))
            .unwrap_or_else(|| panic!("no span for {model}: {spans:?}"));
        assert_eq!(span["status"], "error", "{span}");
        assert!(
            span["error_message"].as_str().unwrap_or("").contains(says),
            "{span}"
        );
    }
}
