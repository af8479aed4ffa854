//! Governance end to end, on the real binary: redaction before storage (and not in the logs),
//! guardrail decisions, a Python agent that waits for a human's approval (approve, deny and expiry
//! paths) with everything visible in its trace, the audit chain verified and exported, a
//! compliance report, and GDPR erasure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{json, Value};

use crate::support::{cli, kv, python, repo_root, request, span, sv, vigil_bin, TestServer};

const POLICY: &str = r#"
default = "allow"
approval_timeout = "30s"

[limits]
max_calls_per_tool_per_trace = 3

[[rules]]
name = "no-deletes-without-a-human"
tools = ["delete_*"]
action = "require_approval"
reason = "Deleting customer data needs a human"

[[rules]]
name = "refunds"
tools = ["refund_payment"]
action = "allow"
when = ["amount <= 500"]
reason = "Refunds above $500 are not allowed"

[[rules]]
name = "never-shell"
tools = ["run_shell"]
action = "deny"
reason = "Agents never get a shell"
"#;

const CARD: &str = "4111 1111 1111 1111";
const OPENAI_KEY: &str = "sk-proj-Q9xT2vLm8RkW4nB7cY1zD5fH3jK6pA0sE2gU8iO4tR7wX9vN1mC3bL5kJ7hG9fD";

fn new_key(s: &TestServer, scopes: &str, name: &str) -> String {
    cli(
        &s.dir,
        &["keys", "create", "--scopes", scopes, "--name", name],
    )
    .trim()
    .to_string()
}

fn send(s: &TestServer, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let c = s.client();
    let url = format!("{}{path}", s.api);
    let mut req = match method {
        "POST" => c.post(url),
        "PUT" => c.put(url),
        _ => c.get(url),
    }
    .header("authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn put_policy(s: &TestServer, key: &str, policy: &str) -> (u16, Value) {
    let r = s
        .client()
        .put(format!("{}/api/v1/guard/policy", s.api))
        .header("authorization", format!("Bearer {key}"))
        .body(policy.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn guard(s: &TestServer, tool: &str, args: Value, trace: Option<&str>) -> Value {
    let mut body = json!({"tool": tool, "arguments": args, "agent": "support-agent", "environment": "production"});
    if let Some(t) = trace {
        body["trace_id"] = json!(t);
    }
    let (status, v) = send(s, "POST", "/api/v1/guard/tool-call", &s.key, Some(body));
    assert_eq!(status, 200, "{v}");
    v
}

/// Runs the Python agent in the background; returns its handle.
fn spawn_agent(s: &TestServer, tool: &str, args: &str) -> std::process::Child {
    Command::new(python())
        .arg(repo_root().join("crates/vigil/tests/governance/approval_agent.py"))
        .args([&s.api, &s.otlp_http, &s.key, tool, args])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn agent_result(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "agent failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = serde_json::from_str(text.lines().last().unwrap_or(""));
    assert!(
        parsed.is_ok(),
        "agent output is not one JSON line: {text:?}"
    );
    parsed.unwrap()
}

fn wait_pending(s: &TestServer, tool: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = s.get("/api/v1/approvals?status=pending");
        assert_eq!(status, 200, "{v}");
        if let Some(a) = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["tool"] == tool)
        {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no pending approval for {tool}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the trace holds spans with all of `names`.
fn wait_for_spans(s: &TestServer, trace_id: &str, names: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = s.get(&format!("/api/v1/traces/{trace_id}"));
        if status == 200 {
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            if names
                .iter()
                .all(|n| spans.iter().any(|sp| sp["name"] == *n))
            {
                return spans;
            }
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} never had all of {names:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn by_name<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans.iter().find(|s| s["name"] == name).unwrap()
}

#[test]
fn redaction_guardrails_approvals_audit_and_erasure() {
    let s = TestServer::start_with(&[], &[("VIGIL_LOG", "debug,h2=info,hyper=info,tonic=info")]);
    let admin = new_key(&s, "admin,read", "security");
    let reviewer = new_key(&s, "read,approve", "reviewer");

    // --- Redaction before storage -------------------------------------------------------------
    let trace = [0x42; 16];
    let body = request(vec![span(
        trace,
        1,
        "llm call",
        vec![
            kv("openinference.span.kind", sv("LLM")),
            kv("llm.model_name", sv("gpt-4o-mini")),
            kv("llm.input_messages.0.message.role", sv("user")),
            kv(
                "llm.input_messages.0.message.content",
                sv(&format!(
                    "My card {CARD} was charged twice, mail me at jane.doe@example.com"
                )),
            ),
            kv(
                "input.value",
                sv(&format!("{{\"api_key_used\": \"{OPENAI_KEY}\"}}")),
            ),
            kv("user.id", sv("user-erase-me")),
        ],
    )])
    .encode_to_vec();
    let r = s.post_otlp("/v1/traces", "application/x-protobuf", body);
    assert_eq!(r.status(), 200);
    // A user id that is itself personal data is stored as a keyed hash: users stay distinct,
    // and erasure by the id as the customer knows it still finds the trace.
    let bob_trace = [0x43; 16];
    let body = request(vec![span(
        bob_trace,
        2,
        "chat",
        vec![kv("user.id", sv("bob@example.com"))],
    )])
    .encode_to_vec();
    assert_eq!(
        s.post_otlp("/v1/traces", "application/x-protobuf", body)
            .status(),
        200
    );
    let bob = s.wait_for_trace(&hex::encode(bob_trace));
    let stored_user = bob["spans"][0]["user_id"].as_str().unwrap().to_string();
    assert!(stored_user.starts_with("[email:"), "{stored_user}");
    let stored = s.wait_for_trace(&hex::encode(trace)).to_string();
    assert!(
        !stored.contains(CARD) && !stored.contains("4111111111111111"),
        "card stored: {stored}"
    );
    assert!(!stored.contains(OPENAI_KEY), "key stored");
    assert!(!stored.contains("jane.doe@example.com"), "email stored");
    assert!(
        stored.contains("[REDACTED:payment_card]") && stored.contains("[REDACTED:openai_key]"),
        "{stored}"
    );
    // Full-text search cannot find what was never stored.
    let (_, found) = s.get("/api/v1/traces?q=charged&from=3650d");
    assert_eq!(found["traces"].as_array().unwrap().len(), 1, "{found}");
    let (_, found) = s.get("/api/v1/traces?q=jane&from=3650d");
    assert_eq!(found["traces"].as_array().unwrap().len(), 0, "{found}");
    let (status, stats) = s.get("/api/v1/redaction/stats?from=3650d");
    assert_eq!(status, 200, "{stats}");
    assert!(
        stats["totals"]["payment_card"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["totals"]["openai_key"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // --- Policy: only admin keys set it; mistakes are named ------------------------------------
    assert_eq!(put_policy(&s, &s.key, POLICY).0, 403);
    let (status, err) = put_policy(
        &s,
        &admin,
        "[[rules]]\nname = \"x\"\ntools = [\"a\"]\naction = \"allow\"\nwhen = [\"amount <== 5\"]\n",
    );
    assert_eq!(status, 400);
    assert!(err.to_string().contains("unknown operator `<==`"), "{err}");
    let (status, v) = put_policy(&s, &admin, POLICY);
    assert_eq!(status, 200, "{v}");

    // --- Immediate decisions, loop cap --------------------------------------------------------
    let t = "7a".repeat(16);
    let d = guard(&s, "run_shell", json!({"cmd": "rm -rf /"}), Some(&t));
    assert_eq!(
        (d["decision"].as_str(), d["rule"].as_str()),
        (Some("deny"), Some("never-shell")),
        "{d}"
    );
    let d = guard(&s, "refund_payment", json!({"amount": 900}), Some(&t));
    assert_eq!(d["decision"], "deny", "{d}");
    assert!(
        d["reason"].as_str().unwrap().contains("`amount` is 900"),
        "{d}"
    );
    for _ in 0..3 {
        assert_eq!(
            guard(&s, "refund_payment", json!({"amount": 20}), Some(&t))["decision"],
            "allow"
        );
    }
    let looped = guard(&s, "refund_payment", json!({"amount": 20}), Some(&t));
    assert_eq!(looped["decision"], "deny");
    assert!(
        looped["reason"].as_str().unwrap().contains("loop cap"),
        "{looped}"
    );
    // Every decision is a guardrail span in the caller's trace.
    let mut spans = wait_for_spans(&s, &t, &["guard run_shell", "guard refund_payment"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans.len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        spans = wait_for_spans(&s, &t, &["guard run_shell"]);
    }
    let shell = by_name(&spans, "guard run_shell");
    assert_eq!(shell["kind"], "guardrail");
    assert_eq!(shell["status"], "error");
    assert_eq!(shell["attributes"]["vigil.guard.rule"], "never-shell");
    assert_eq!(spans.iter().filter(|s| s["kind"] == "guardrail").count(), 6);

    // --- A Python agent waits for a human: approved ------------------------------------------
    let agent = spawn_agent(&s, "delete_customer_account", r#"{"customer_id": "c_123"}"#);
    let pending = wait_pending(&s, "delete_customer_account");
    let id = pending["id"].as_str().unwrap().to_string();
    assert_eq!(pending["rule"], "no-deletes-without-a-human");
    // The agent's own key cannot approve its request.
    assert_eq!(
        send(
            &s,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            &s.key,
            None
        )
        .0,
        403
    );
    let (status, v) = send(
        &s,
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        &reviewer,
        Some(json!({"comment": "verified the ticket", "reviewer": "alice"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "approved");
    // An approval is decided once.
    assert_eq!(
        send(
            &s,
            "POST",
            &format!("/api/v1/approvals/{id}/deny"),
            &reviewer,
            None
        )
        .0,
        409
    );
    let out = agent_result(agent);
    assert_eq!(
        (
            out["decision"].as_str(),
            out["status"].as_str(),
            out["executed"].as_bool()
        ),
        (Some("allow"), Some("approved"), Some(true)),
        "{out}"
    );
    let trace_id = out["trace_id"].as_str().unwrap();
    let spans = wait_for_spans(
        &s,
        trace_id,
        &[
            "refund-agent run",
            "guard delete_customer_account",
            "approval delete_customer_account",
            "delete_customer_account",
        ],
    );
    let guard_span = by_name(&spans, "guard delete_customer_account");
    let approval_span = by_name(&spans, "approval delete_customer_account");
    let tool_span = by_name(&spans, "delete_customer_account");
    assert_eq!(guard_span["attributes"]["vigil.guard.decision"], "pending");
    assert_eq!(
        guard_span["parent_span_id"],
        by_name(&spans, "refund-agent run")["span_id"],
        "the guard span is a child of the agent's span"
    );
    assert_eq!(approval_span["parent_span_id"], guard_span["span_id"]);
    assert_eq!(
        approval_span["attributes"]["vigil.approval.status"],
        "approved"
    );
    assert_eq!(
        approval_span["attributes"]["vigil.approval.comment"],
        "verified the ticket"
    );
    assert_eq!(tool_span["kind"], "tool");
    assert!(
        tool_span["start_time"].as_str().unwrap() >= approval_span["end_time"].as_str().unwrap(),
        "the tool ran only after the approval"
    );

    // The agent redeemed its approval before acting; a replay is refused.
    let used = send(
        &s,
        "POST",
        &format!("/api/v1/approvals/{id}/redeem"),
        &s.key,
        Some(json!({"tool": "delete_customer_account", "arguments": {"customer_id": "c_123"}})),
    );
    assert_eq!(used.0, 409, "{}", used.1);

    // An approval covers one exact call: other arguments are refused, the approved ones pass once.
    let d = guard(
        &s,
        "delete_customer",
        json!({"customer_id": "c_1", "hard": true}),
        None,
    );
    let id2 = d["approval_id"].as_str().unwrap().to_string();
    assert_eq!(send(&s, "POST", &format!("/api/v1/approvals/{id2}/redeem"), &s.key, Some(json!({"tool": "delete_customer", "arguments": {"customer_id": "c_1", "hard": true}}))).0, 403, "not approved yet");
    assert_eq!(
        send(
            &s,
            "POST",
            &format!("/api/v1/approvals/{id2}/approve"),
            &reviewer,
            None
        )
        .0,
        200
    );
    let other = send(
        &s,
        "POST",
        &format!("/api/v1/approvals/{id2}/redeem"),
        &s.key,
        Some(json!({"tool": "delete_customer", "arguments": {"customer_id": "c_2", "hard": true}})),
    );
    assert_eq!(other.0, 403, "{}", other.1);
    // Same call with its keys in another order: the same call.
    let ok = send(
        &s,
        "POST",
        &format!("/api/v1/approvals/{id2}/redeem"),
        &s.key,
        Some(json!({"tool": "delete_customer", "arguments": {"hard": true, "customer_id": "c_1"}})),
    );
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(send(&s, "POST", &format!("/api/v1/approvals/{id2}/redeem"), &s.key, Some(json!({"tool": "delete_customer", "arguments": {"customer_id": "c_1", "hard": true}}))).0, 409);

    // --- Denied -------------------------------------------------------------------------------
    let agent = spawn_agent(&s, "delete_order", r#"{"order_id": "o_9"}"#);
    let id = wait_pending(&s, "delete_order")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = send(
        &s,
        "POST",
        &format!("/api/v1/approvals/{id}/deny"),
        &reviewer,
        Some(json!({"comment": "not this one"})),
    );
    assert_eq!(status, 200);
    let out = agent_result(agent);
    assert_eq!(
        (
            out["decision"].as_str(),
            out["status"].as_str(),
            out["executed"].as_bool()
        ),
        (Some("deny"), Some("denied"), Some(false)),
        "{out}"
    );
    let spans = wait_for_spans(
        &s,
        out["trace_id"].as_str().unwrap(),
        &["refund-agent run", "approval delete_order"],
    );
    assert!(
        !spans.iter().any(|s| s["name"] == "delete_order"),
        "a denied tool never ran"
    );

    // --- Nobody answers: expiry denies --------------------------------------------------------
    assert_eq!(
        put_policy(
            &s,
            &admin,
            &POLICY.replace("approval_timeout = \"30s\"", "approval_timeout = \"2s\"")
        )
        .0,
        200
    );
    let started = Instant::now();
    let out = agent_result(spawn_agent(
        &s,
        "delete_invoice",
        r#"{"invoice_id": "i_1"}"#,
    ));
    assert_eq!(
        (
            out["decision"].as_str(),
            out["status"].as_str(),
            out["executed"].as_bool()
        ),
        (Some("deny"), Some("expired"), Some(false)),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // --- Erasure (GDPR) -----------------------------------------------------------------------
    assert_eq!(
        send(
            &s,
            "POST",
            "/api/v1/erasure",
            &s.key,
            Some(json!({"user_id": "user-erase-me"}))
        )
        .0,
        403
    );
    let (status, v) = send(
        &s,
        "POST",
        "/api/v1/erasure",
        &admin,
        Some(json!({"user_id": "user-erase-me"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["traces_deleted"], 1);
    assert_eq!(
        s.get(&format!("/api/v1/traces/{}", hex::encode(trace))).0,
        404
    );
    let (status, v) = send(
        &s,
        "POST",
        "/api/v1/erasure",
        &admin,
        Some(json!({"user_id": "bob@example.com"})),
    );
    assert_eq!(
        (status, v["traces_deleted"].as_u64()),
        (200, Some(1)),
        "{v}"
    );
    assert_eq!(
        s.get(&format!("/api/v1/traces/{}", hex::encode(bob_trace)))
            .0,
        404
    );

    // --- The audit chain: verified, exported, checked offline ---------------------------------
    std::thread::sleep(Duration::from_millis(300)); // queued audit entries are batched
    let (status, report) = s.get("/api/v1/audit/verify");
    assert_eq!(status, 200);
    assert!(report["first_break"].is_null(), "{report}");
    assert!(report["entries"].as_u64().unwrap() >= 12, "{report}");
    let (_, entries) = send(&s, "GET", "/api/v1/audit?limit=1000", &admin, None);
    let actions: Vec<&str> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "key.created",
        "policy.updated",
        "guard.decision",
        "approval.approved",
        "approval.denied",
        "approval.expired",
        "data.erased",
    ] {
        assert!(actions.contains(&a), "no `{a}` in {actions:?}");
    }
    assert!(cli(&s.dir, &["audit", "verify"]).contains("ok "));
    // A signed head kept outside Vigil, checked later.
    let head = s.dir.join("head.json");
    cli(&s.dir, &["audit", "head", "--out", head.to_str().unwrap()]);
    assert!(cli(
        &s.dir,
        &["audit", "verify", "--checkpoint", head.to_str().unwrap()]
    )
    .contains("ok "));
    let bundle = s.dir.join("audit-bundle.jsonl");
    cli(
        &s.dir,
        &["audit", "export", "--out", bundle.to_str().unwrap()],
    );
    let public_key = cli(&s.dir, &["audit", "public-key"]).trim().to_string();
    let offline = |file: &std::path::Path| {
        Command::new(vigil_bin())
            .args([
                "audit",
                "verify",
                "--bundle",
                file.to_str().unwrap(),
                "--public-key",
                &public_key,
            ])
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let ok = offline(&bundle);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let mut bytes = std::fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let tampered = s.dir.join("tampered.jsonl");
    std::fs::write(&tampered, bytes).unwrap();
    let bad = offline(&tampered);
    assert!(!bad.status.success(), "a changed byte went unnoticed");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("BROKEN"));

    // --- Compliance evidence ------------------------------------------------------------------
    let out_dir = s.dir.join("evidence");
    cli(
        &s.dir,
        &[
            "compliance",
            "report",
            "--framework",
            "soc2",
            "--from",
            "1d",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("soc2-report.json")).unwrap()).unwrap();
    assert_eq!(report["audit_chain"]["first_break"], Value::Null);
    for (k, at_least) in [("approved", 1), ("denied", 1), ("expired", 1)] {
        assert!(
            report["approvals"][k].as_u64().unwrap_or(0) >= at_least,
            "{k}: {}",
            report["approvals"]
        );
    }
    assert!(report["guardrail_decisions"]["deny"].as_u64().unwrap() >= 3);
    assert!(report["redaction"]["payment_card"].as_u64().unwrap() >= 1);
    let cc63 = report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "CC6.3")
        .unwrap();
    assert_eq!(cc63["status"], "evidence");
    let html = std::fs::read_to_string(out_dir.join("soc2-report.html")).unwrap();
    assert!(html.contains("CC6.3") && html.contains("Verified"));

    // --- Nothing sensitive in Vigil's own logs (debug level) -----------------------------------
    let log = s.log_text();
    assert!(log.contains("DEBUG"), "debug logging was on");
    // (The first key is printed once at first start, by design; the keys made later never are.)
    for secret in [CARD, OPENAI_KEY, "jane.doe@example.com", &admin, &reviewer] {
        assert!(
            !log.contains(secret),
            "`{secret}` appears in the server log"
        );
    }
}
