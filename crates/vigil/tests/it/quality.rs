//! The quality loop on the real binary: evaluators from vigil.toml and the API run on `vigil demo`
//! data and the shared fixtures from the durable queue (surviving `kill -9` without double
//! counting), end-user feedback and human labels through `POST /api/v1/scores`, and an evaluator's
//! alignment with humans (MCC) checked against a hand computation.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const CONFIG: &str = r#"
[quality]
settle = "1s"
lease = "3s"

[[evaluators]]
name = "tools-answer"
rule = { type = "silent_tool_failure" }

[[evaluators]]
name = "fast-llm-calls"
scope = "span"
rule = { type = "max_latency_ms", max = 2500 }
filter = { kind = "llm" }

[[evaluators]]
name = "session-never-apologises"
scope = "session"
rule = { type = "not_contains", value = "sorry" }
"#;

fn send(s: &TestServer, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let c = s.client();
    let url = format!("{}{path}", s.api);
    let req = if method == "PUT" {
        c.put(url)
    } else {
        c.post(url)
    };
    let r = req.bearer_auth(key).json(&body).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Waits until the evaluation queue is empty and at least `done` jobs are finished.
fn drained(s: &TestServer, done: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = s.get("/api/v1/evaluators");
        assert_eq!(status, 200, "{v}");
        let q = &v["queue"];
        if q["queued"] == 0 && q["running"] == 0 && q["done"].as_u64().unwrap_or(0) >= done {
            return v;
        }
        assert!(Instant::now() < deadline, "the queue did not drain: {q}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scores(s: &TestServer, name: &str) -> Vec<Value> {
    let (status, v) = s.get(&format!("/api/v1/scores?name={name}&limit=1000"));
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

#[test]
fn evaluators_scores_feedback_and_alignment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = std::process::Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["demo", "--no-serve", "--traces", "120", "--seed", "7"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("vk_"))
        .unwrap()
        .to_string();
    let cfg = tmp.path().join("vigil.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let s = TestServer::start_on(&dir, Some(key), &["--config", &cfg]);
    for f in [
        "otel-genai-openai.pb",
        "openinference-openai.pb",
        "openinference-anthropic.pb",
    ] {
        assert_eq!(
            s.post_otlp("/v1/traces", "application/x-protobuf", fixture(f))
                .status(),
            200
        );
    }
    // A crash while the queue is being worked: everything is evaluated once after the restart.
    std::thread::sleep(Duration::from_millis(1500));
    let s = s.crash_and_restart();
    let listed = drained(&s, 240);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["fast-llm-calls", "session-never-apologises", "tools-answer"]
    );
    // Session verdicts cover every turn so far: all carry their session, and a session whose
    // earlier turn apologised keeps failing in its later turns.
    let sessions = scores(&s, "session-never-apologises");
    assert!(sessions.len() >= 100, "{}", sessions.len());
    assert!(
        sessions
            .iter()
            .filter(|x| !x["session_id"].is_null())
            .count()
            >= 100
    );
    let mut by_session: HashMap<&str, Vec<&Value>> = HashMap::new();
    for x in sessions.iter().filter(|x| x["session_id"].is_string()) {
        by_session
            .entry(x["session_id"].as_str().unwrap())
            .or_default()
            .push(x);
    }
    assert!(
        by_session.values().any(|v| v.len() > 1),
        "some session has several turns"
    );

    let tools = scores(&s, "tools-answer");
    let traces: HashSet<&str> = tools
        .iter()
        .map(|x| x["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), tools.len(), "a trace scored twice");
    assert!(tools.len() >= 100, "{}", tools.len());
    let failing: Vec<&Value> = tools.iter().filter(|x| x["passed"] == false).collect();
    assert!(
        !failing.is_empty() && failing.len() < tools.len() / 2,
        "{} failing",
        failing.len()
    );
    assert!(
        failing[0]["reason"].as_str().unwrap().contains(':'),
        "{}",
        failing[0]
    );
    assert_eq!(failing[0]["source"], "evaluator");
    let spans = scores(&s, "fast-llm-calls");
    assert!(spans.iter().all(|x| x["span_id"].is_string()));
    let per_span: HashSet<(&str, &str)> = spans
        .iter()
        .map(|x| {
            (
                x["trace_id"].as_str().unwrap(),
                x["span_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_span.len(), spans.len(), "a span scored twice");

    // End-user feedback from the app.
    let t0 = tools[0]["trace_id"].as_str().unwrap();
    let (status, v) = send(
        &s,
        "POST",
        "/api/v1/scores",
        &s.key,
        json!({"trace_id": t0, "name": "thumbs", "passed": false, "reason": "wrong order, mail me at ann@example.com", "by": "end-user-9"}),
    );
    assert_eq!(status, 200, "{v}");
    let thumbs = scores(&s, "thumbs");
    assert_eq!(thumbs[0]["source"], "feedback");
    assert_eq!(
        thumbs[0]["reason"],
        "wrong order, mail me at [REDACTED:email]"
    );
    for bad in [
        json!({"name": "x", "passed": true}),
        json!({"trace_id": t0, "name": "x"}),
        json!({"trace_id": "zz", "name": "x", "passed": true}),
        json!({"trace_id": t0, "name": "x", "passed": true, "source": "evaluator"}),
    ] {
        assert_eq!(
            send(&s, "POST", "/api/v1/scores", &s.key, bad.clone()).0,
            400,
            "{bad}"
        );
    }

    // Human labels on 20 traces (a reviewer's key; the app's cannot label): agree with the
    // evaluator on 16, disagree on 4 (2 each way).
    let labeller = cli(&s.dir, &["keys", "create", "--scopes", "approve,read"])
        .trim()
        .to_string();
    let human = json!({"trace_id": t0, "name": "annotation", "passed": true, "source": "human"});
    assert_eq!(send(&s, "POST", "/api/v1/scores", &s.key, human).0, 403);
    let mut labelled: Vec<(bool, bool)> = Vec::new(); // (evaluator failed, human says failed)
    let mut pick: Vec<&Value> = failing.iter().take(6).copied().collect();
    pick.extend(tools.iter().filter(|x| x["passed"] == true).take(14));
    for (i, x) in pick.iter().enumerate() {
        let evaluator_failed = x["passed"] == false;
        let human_failed = if i == 0 || i == 1 || i == 6 || i == 7 {
            !evaluator_failed
        } else {
            evaluator_failed
        };
        let (status, _) = send(
            &s,
            "POST",
            "/api/v1/scores",
            &labeller,
            json!({"trace_id": x["trace_id"], "name": "tools-answer", "passed": !human_failed, "source": "human", "by": "annotator-1"}),
        );
        assert_eq!(status, 200);
        labelled.push((evaluator_failed, human_failed));
    }
    // Hand computation: TP 4, FN 2, FP 2, TN 12.
    let count = |e: bool, h: bool| labelled.iter().filter(|p| **p == (e, h)).count() as f64;
    let (tp, fp, tn, fn_) = (
        count(true, true),
        count(true, false),
        count(false, false),
        count(false, true),
    );
    assert_eq!((tp, fp, tn, fn_), (4.0, 2.0, 12.0, 2.0));
    let mcc = (tp * tn - fp * fn_) / ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    let (status, a) = s.get("/api/v1/evaluators/tools-answer/alignment");
    assert_eq!(status, 200, "{a}");
    let a = &a["alignment"];
    assert_eq!(a["n"], 20);
    assert!(
        (a["mcc"].as_f64().unwrap() - mcc).abs() < 1e-9,
        "{a} vs {mcc}"
    );
    assert!((a["precision"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    assert!((a["recall"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    assert!((a["agreement"].as_f64().unwrap() - 16.0 / 20.0).abs() < 1e-9);

    // The annotation queue is ranked by risk, with reasons: negative feedback, failing evaluators,
    // errors, outliers; a labelled trace leaves that annotator's queue.
    let reviewer = cli(&s.dir, &["keys", "create", "--scopes", "approve,read"])
        .trim()
        .to_string();
    let (status, q) = s.get("/api/v1/annotations/queue?annotator=ann&since=30d&limit=50");
    assert_eq!(status, 200, "{q}");
    let items = q["items"].as_array().unwrap();
    let flagged = items
        .iter()
        .find(|i| i["trace_id"] == t0)
        .expect("the trace with negative feedback is queued");
    assert_eq!(
        flagged["reasons"][0], "negative feedback from the user",
        "{flagged}"
    );
    assert!(flagged["risk"].as_f64().unwrap() >= 4.0);
    assert!(items.iter().any(|i| i["reasons"]
        .to_string()
        .contains("evaluator `tools-answer` failed it")));
    let risks: Vec<f64> = items.iter().map(|i| i["risk"].as_f64().unwrap()).collect();
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    assert_eq!(
        send(
            &s,
            "POST",
            "/api/v1/annotations",
            &s.key,
            json!({"trace_id": t0, "label": "bad"})
        )
        .0,
        403
    );
    let shared: Vec<&str> = items
        .iter()
        .take(3)
        .map(|i| i["trace_id"].as_str().unwrap())
        .collect();
    for (who, labels) in [
        ("ann", ["bad", "bad", "good"]),
        ("bob", ["bad", "good", "good"]),
    ] {
        for (t, l) in shared.iter().zip(labels) {
            let (status, v) = send(
                &s,
                "POST",
                "/api/v1/annotations",
                &reviewer,
                json!({"trace_id": t, "label": l, "annotator": who, "failure_mode": if l == "bad" { Some("wrong-order") } else { None }, "comment": "see order A-1"}),
            );
            assert_eq!(status, 200, "{v}");
        }
    }
    let (_, q) = s.get("/api/v1/annotations/queue?annotator=ann&since=30d&limit=50");
    assert!(q["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| !shared.contains(&i["trace_id"].as_str().unwrap())));
    let (_, agreement) = s.get("/api/v1/annotations/agreement");
    assert_eq!(agreement["shared_traces"], 3, "{agreement}");
    assert_eq!(agreement["annotators"], json!(["ann", "bob"]));
    // Pairs (bad,bad) (bad,good) (good,good): p_o = 2/3; ann says good 1/3, bob 2/3, so
    // p_e = 1/3 * 2/3 + 2/3 * 1/3 = 4/9; κ = (2/3 - 4/9) / (1 - 4/9) = 0.4.
    assert!(
        (agreement["kappa"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{agreement}"
    );
    let (_, modes) = s.get("/api/v1/failure-modes");
    let wrong = modes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "wrong-order")
        .unwrap()
        .clone();
    assert_eq!(wrong["human_examples"], 2, "{wrong}");

    // Evaluators through the API: admin only, validated, then they run on what is stored.
    let admin = cli(&s.dir, &["keys", "create", "--scopes", "admin,read"])
        .trim()
        .to_string();
    let def = json!({"rule": {"type": "regex", "pattern": "("}});
    assert_eq!(
        send(
            &s,
            "PUT",
            "/api/v1/evaluators/answers-mention-orders",
            &s.key,
            def.clone()
        )
        .0,
        403
    );
    let (status, e) = send(
        &s,
        "PUT",
        "/api/v1/evaluators/answers-mention-orders",
        &admin,
        def,
    );
    assert_eq!(status, 400);
    assert!(e.to_string().contains("pattern"), "{e}");
    let (status, e) = send(
        &s,
        "PUT",
        "/api/v1/evaluators/no-refusals",
        &admin,
        json!({"rule": {"type": "refusal"}}),
    );
    assert_eq!(status, 200, "{e}");
    let before = drained(&s, 0)["queue"]["done"].as_u64().unwrap();
    drained(&s, before + 100);
    let refusals = scores(&s, "no-refusals");
    assert!(refusals.len() >= 100, "{}", refusals.len());
    let by_trace: HashMap<&str, usize> = refusals.iter().fold(HashMap::new(), |mut m, x| {
        *m.entry(x["trace_id"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert!(by_trace.values().all(|n| *n == 1));
    let (status, v) = send(
        &s,
        "POST",
        "/api/v1/evaluators/no-refusals/backfill",
        &admin,
        json!({"from": "30d"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["queued"], 0,
        "already evaluated traces are not queued again"
    );
}

/// `n` one-span traces of `version`, now; the first `failing` answer "ERROR-X".
fn traces_of(version: &str, n: usize, failing: usize, seed: u8) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..n)
        .map(|i| {
            let mut trace = [seed; 16];
            trace[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Span {
                trace_id: trace.to_vec(),
                span_id: ((i as u64 + 1) | (1 << 62)).to_be_bytes().to_vec(),
                name: "answer".into(),
                kind: 1,
                start_time_unix_nano: now + i as u64,
                end_time_unix_nano: now + i as u64 + 1_000_000,
                attributes: vec![kv(
                    "output.value",
                    sv(if i < failing {
                        "ERROR-X: lost the order"
                    } else {
                        "Your order ships Monday."
                    }),
                )],
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", sv("order-bot")),
                    kv("service.version", sv(version)),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn wait_status(s: &TestServer, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = s.get(&format!("/api/v1/failure-modes/{id}"));
        assert_eq!(code, 200, "{v}");
        if v["failure_mode"]["status"] == status {
            return v;
        }
        assert!(Instant::now() < deadline, "never reached `{status}`: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_failure_mode_walks_its_lifecycle_and_reopens_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        "[quality]\nsettle = \"1s\"\n[[evaluators]]\nname = \"no-error-x\"\nrule = { type = \"not_contains\", value = \"ERROR-X\" }\n",
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let admin = cli(&s.dir, &["keys", "create", "--scopes", "admin,read"])
        .trim()
        .to_string();
    let annotator = cli(&s.dir, &["keys", "create", "--scopes", "approve,read"])
        .trim()
        .to_string();
    let (status, fm) = send(
        &s,
        "POST",
        "/api/v1/failure-modes",
        &admin,
        json!({
        "name": "error-x", "definition": "The agent loses the order and says ERROR-X", "severity": "high", "evaluator": "no-error-x"}),
    );
    assert_eq!(status, 200, "{fm}");
    assert_eq!(fm["status"], "open");
    let id = fm["id"].as_str().unwrap().to_string();
    assert_eq!(
        send(
            &s,
            "POST",
            "/api/v1/failure-modes",
            &admin,
            json!({"name": "x", "definition": "y", "severity": "dire"})
        )
        .0,
        400
    );

    // Version 1: half the sessions fail.
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            traces_of("v1", 40, 20, 0x11)
        )
        .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while scores(&s, "no-error-x").len() < 40 {
        assert!(Instant::now() < deadline, "v1 never scored");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A human confirms an example: annotated, then tested (its evaluator exists).
    let failing = scores(&s, "no-error-x")
        .into_iter()
        .find(|x| x["passed"] == false)
        .unwrap();
    let (status, v) = send(
        &s,
        "POST",
        &format!("/api/v1/failure-modes/{id}/examples"),
        &annotator,
        json!({"trace_id": failing["trace_id"]}),
    );
    assert_eq!(status, 200, "{v}");
    wait_status(&s, &id, "tested");

    // The fix ships in v2; the rate before it is the baseline.
    let (status, fixed) = send(
        &s,
        "POST",
        &format!("/api/v1/failure-modes/{id}/fix"),
        &admin,
        json!({"version": "v2"}),
    );
    assert_eq!(status, 200, "{fixed}");
    assert_eq!(fixed["status"], "fixed");
    assert_eq!(fixed["baseline_rate"], 500.0);

    // v2 works: 1 failing session in 40 → verified.
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            traces_of("v2", 40, 1, 0x22)
        )
        .status(),
        200
    );
    let v = wait_status(&s, &id, "verified");
    assert_eq!(v["failure_mode"]["verified_rate"], 25.0);

    // It comes back: reopened without anyone asking.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            traces_of("v2", 40, 30, 0x33)
        )
        .status(),
        200
    );
    let v = wait_status(&s, &id, "regressed");
    let path: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}→{}",
                e["from_status"].as_str().unwrap(),
                e["to_status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        path,
        [
            "open→annotated",
            "annotated→tested",
            "tested→fixed",
            "fixed→verified",
            "verified→regressed"
        ]
    );
    assert!(
        v["events"][4]["reason"]
            .as_str()
            .unwrap()
            .contains("per 1,000"),
        "{v}"
    );
    let days = v["frequency_by_day"].as_array().unwrap();
    assert!(
        !days.is_empty()
            && days
                .iter()
                .map(|d| d["sessions"].as_u64().unwrap())
                .sum::<u64>()
                == 120,
        "{v}"
    );
    let (_, list) = s.get("/api/v1/failure-modes");
    assert_eq!(list["items"][0]["sessions_24h"], 120);

    // The quality summary and the candidates a Head of AI reads.
    let (status, q) = s.get("/api/v1/quality/summary?days=7");
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["active_failure_modes"], 1);
    assert_eq!(q["by_status"]["regressed"], 1);
    assert_eq!(q["worst"]["failure_mode"], "error-x");
    assert_eq!(q["worst"]["severity"], "high");
    assert_eq!(q["active_by_day"].as_array().unwrap().len(), 7);
    // v1 → v2 is one deployment; over all of v2 its rate (31/80) did not rise above v1's (20/40).
    assert_eq!(
        (
            q["deployments"].as_u64(),
            q["regression_free_rate"].as_f64()
        ),
        (Some(1), Some(1.0)),
        "{q}"
    );
    let (status, c) = s.get("/api/v1/failure-modes/candidates?since=1d");
    assert_eq!(status, 200, "{c}");
    let top = &c["items"][0];
    assert_eq!(top["evaluator"], "no-error-x");
    assert_eq!(top["traces"], 51, "{top}");
}

#[test]
fn experiments_and_the_ci_gate_catch_a_regression_and_pass_an_unchanged_run() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[gateway.providers]]\nname = \"mockoai\"\nkind = \"openai_compatible\"\nbase_url = \"{}/v1\"\n\n\
             [[evaluators]]\nname = \"mentions-order\"\nrule = {{ type = \"regex\", pattern = \"A-[0-9]{{4}}\" }}\n\n\
             [[evaluators]]\nname = \"no-refusal\"\nrule = {{ type = \"refusal\" }}\n",
            mock.base
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    // A dataset from JSONL, more items from CSV and from a production trace.
    let jsonl: String = (0..30)
        .map(|i| format!("{}\n", json!({"input": format!("Where is my order A-{}?", 1000 + i), "expected": "shipped"})))
        .collect();
    let post = |path: &str, kind: &str, body: String| {
        let r = s
            .client()
            .post(format!("{}{path}", s.api))
            .bearer_auth(&s.key)
            .header("content-type", kind)
            .body(body)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, v) = post(
        "/api/v1/datasets/orders/items",
        "application/x-ndjson",
        jsonl,
    );
    assert_eq!((status, v["items"].as_u64()), (200, Some(30)), "{v}");
    let (status, v) = post(
        "/api/v1/datasets/mixed/items",
        "text/csv",
        "input,expected\n\"Refund A-2000, please\",\"ok\"\nhello,\n".into(),
    );
    assert_eq!((status, v["items"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(
        post(
            "/api/v1/datasets/mixed/items",
            "text/csv",
            "question\nx\n".into()
        )
        .0,
        400
    );
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            fixture("openinference-openai.pb")
        )
        .status(),
        200
    );
    let (_, list) = s.get("/api/v1/traces?from=3650d");
    let trace = list["traces"][0]["trace_id"].as_str().unwrap().to_string();
    let (status, v) = post(
        "/api/v1/datasets/mixed/items",
        "application/json",
        json!({"trace_ids": [trace]}).to_string(),
    );
    assert_eq!((status, v["items"].as_u64()), (200, Some(3)), "{v}");

    let eval = |extra: &[&str]| {
        let out = std::process::Command::new(vigil_bin())
            .args([
                "eval",
                "run",
                "--api",
                &s.api,
                "--api-key",
                &s.key,
                "--dataset",
                "orders",
                "--model",
                "mockoai/gpt-4o-mini",
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = eval(&["--name", "base"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("mentions-order") && out.contains("100.0%"),
        "{out}"
    );

    // Unchanged: passes the gate.
    let same = tmp.path().join("same.xml");
    let (code, out, err) = eval(&[
        "--name",
        "same",
        "--baseline",
        "base",
        "--fail-on-regression",
        "--junit",
        same.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let xml = std::fs::read_to_string(&same).unwrap();
    assert!(xml.contains("tests=\"2\" failures=\"0\""), "{xml}");

    // A prompt change that pushes the order number out of the answer: caught.
    let filler = "Please answer politely and in full sentences, considering our policies, tone of voice, escalation rules, refund windows and the customer's history before you reply. ".repeat(2);
    let prompt = format!("{}{{input}}", &filler[..190]);
    let worse = tmp.path().join("worse.xml");
    let (code, out, err) = eval(&[
        "--name",
        "long-prompt",
        "--prompt",
        &prompt,
        "--baseline",
        "base",
        "--fail-on-regression",
        "--junit",
        worse.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("REGRESSED"), "{out}");
    let xml = std::fs::read_to_string(&worse).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("name=\"mentions-order\""),
        "{xml}"
    );
    // Side by side: every item changed verdict on that evaluator, the other held.
    let (status, cmp) = s.get("/api/v1/experiments/compare?base=base&run=long-prompt");
    assert_eq!(status, 200, "{cmp}");
    let deltas = cmp["comparison"]["deltas"].as_array().unwrap();
    let mentions = deltas
        .iter()
        .find(|d| d["evaluator"] == "mentions-order")
        .unwrap();
    assert_eq!(
        (mentions["lost"].as_u64(), mentions["regressed"].as_bool()),
        (Some(30), Some(true)),
        "{mentions}"
    );
    let refusal = deltas
        .iter()
        .find(|d| d["evaluator"] == "no-refusal")
        .unwrap();
    assert_eq!(refusal["regressed"], false);
    assert_eq!(cmp["comparison"]["changed"].as_array().unwrap().len(), 30);
    // A run named like its baseline (a main branch) is compared with the previous one, not itself.
    let (code, out, err) = eval(&[
        "--name",
        "base",
        "--baseline",
        "base",
        "--fail-on-regression",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("against base"), "{out}");
    // Every call went through the gateway and is traced.
    let (_, runs) = s.get("/api/v1/datasets/orders");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 4);
}

#[test]
fn llm_judges_score_through_the_gateway_with_their_cost() {
    let mock = MockLlm::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vigil.toml");
    // The mock echoes the start of the prompt, so each prompt carries the verdict the "judge" gives.
    std::fs::write(
        &cfg,
        format!(
            r#"[quality]
settle = "1s"

[[gateway.providers]]
name = "mockoai"
kind = "openai_compatible"
base_url = "{}/v1"

[[evaluators]]
name = "judge-helpful"
rule = {{ type = "llm_judge", model = "mockoai/gpt-4o-mini", prompt = '{{"score": 0.9, "reasoning": "polite and on topic"}} Judge: {{{{output}}}}' }}

[[evaluators]]
name = "judge-strict"
rule = {{ type = "llm_judge", model = "mockoai/gpt-4o-mini", prompt = '{{"score": 0.5, "reasoning": "hard to say"}} Judge: {{{{output}}}}', pass_threshold = 0.7 }}
"#,
            mock.base
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            fixture("openinference-openai.pb")
        )
        .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (helpful, strict) = loop {
        let (h, st) = (scores(&s, "judge-helpful"), scores(&s, "judge-strict"));
        if !h.is_empty() && !st.is_empty() {
            break (h, st);
        }
        assert!(Instant::now() < deadline, "the judges never scored");
        std::thread::sleep(Duration::from_millis(200));
    };
    let h = &helpful[0];
    assert_eq!(
        (h["value"].as_f64(), h["passed"].as_bool()),
        (Some(0.9), Some(true)),
        "{h}"
    );
    assert_eq!(h["reason"], "polite and on topic");
    assert!(
        h["cost_usd"].as_f64().unwrap() > 0.0,
        "the judge's cost is kept: {h}"
    );
    assert_eq!(strict[0]["passed"], false, "0.5 is below the 0.7 threshold");
    // The judge's calls went through the gateway (traced, tagged) and reached the model.
    let hits: Value = reqwest::blocking::get(format!("{}/hits", mock.base))
        .unwrap()
        .json()
        .unwrap();
    assert!(hits.to_string().contains("gpt-4o-mini"), "{hits}");
    // Gateway spans are written in the background: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, traces) = s.get("/api/v1/traces?service=vigil-gateway&from=1h");
        let n = traces["traces"].as_array().map_or(0, |t| t.len());
        if n >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{traces}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Judges do not judge their own calls (which are traces too): one verdict each, and it stays so.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(scores(&s, "judge-helpful").len(), 1);
    assert_eq!(scores(&s, "judge-strict").len(), 1);
    // An unsure judge sends the trace up the annotation queue.
    let (_, q) = s.get("/api/v1/annotations/queue?since=3650d");
    assert!(
        q["items"][0]["reasons"]
            .to_string()
            .contains("low judge confidence"),
        "{q}"
    );
}

#[test]
fn rules_judge_spans_and_whole_traces_as_they_are_ingested_and_the_queue_skips_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockLlm::start();
    let cfg = tmp.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[quality]\nsettle = \"3s\"\nlease = \"3s\"\n\n\
             [[evaluators]]\nname = \"llm-in-time\"\nscope = \"span\"\nrule = {{ type = \"max_latency_ms\", max = 600000 }}\nfilter = {{ kind = \"llm\" }}\n\n\
             [[evaluators]]\nname = \"trace-tools\"\nrule = {{ type = \"silent_tool_failure\" }}\n\n\
             [[gateway.providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = \"{}/v1\"\n",
            mock.base
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let body = fixture("openinference-openai.pb");
    assert_eq!(
        s.post_otlp("/v1/traces", "application/x-protobuf", body.clone())
            .status(),
        200
    );
    // No waiting: the span verdicts were committed with the spans the export acknowledged.
    let at_once = scores(&s, "llm-in-time");
    let (_, page) = s.get("/api/v1/traces?limit=100");
    let traces: Vec<String> = page["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    let llm_spans: usize = traces
        .iter()
        .map(|t| {
            let (_, d) = s.get(&format!("/api/v1/traces/{t}"));
            d["spans"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|sp| sp["kind"] == "llm")
                .count()
        })
        .sum();
    assert!(llm_spans > 0);
    assert_eq!(at_once.len(), llm_spans, "{at_once:?}");
    assert!(at_once
        .iter()
        .all(|x| x["span_id"].is_string() && x["passed"] == true && x["source"] == "evaluator"));
    // Each of the fixture's traces came whole in the export (its root and every parent): the
    // trace-scoped rule judged it at ingest too.
    let whole_at_once = scores(&s, "trace-tools");
    assert_eq!(whole_at_once.len(), traces.len(), "{whole_at_once:?}");
    assert!(whole_at_once
        .iter()
        .all(|x| x["span_id"].is_null() && x["source"] == "evaluator"));
    // The trace page shows them: on the trace, and on the span they judge.
    let page = s
        .client()
        .get(format!("{}/ui/traces/{}", s.api, traces[0]))
        .header("cookie", format!("vigil_keys={}", s.key))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("Verdicts") && page.contains("llm-in-time: pass"),
        "{page}"
    );
    // A late LLM span of the first trace, written by another process (`vigil import`), which
    // judges nothing: within the settling delay, so the queue reads that trace back, judges the new
    // span too and judges the trace again, whole; the spans judged at ingest keep their one verdict.
    let first = hex::decode(&traces[0]).unwrap();
    let late = request(vec![span(
        first.as_slice().try_into().unwrap(),
        4242,
        "chat gpt-4o-mini",
        vec![
            kv("gen_ai.operation.name", sv("chat")),
            kv("gen_ai.system", sv("openai")),
            kv("gen_ai.request.model", sv("gpt-4o-mini")),
        ],
    )]);
    let file = tmp.path().join("late.pb");
    std::fs::write(&file, prost::Message::encode_to_vec(&late)).unwrap();
    cli(&s.dir, &["import", file.to_str().unwrap()]);
    // The trace rows carry their chunks' list while it is one list, so the queue skips them without
    // reading their chunks; the trace with the late, unjudged chunk has none, and its chunks are read.
    {
        let conn = rusqlite::Connection::open(s.dir.join("vigil.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT lower(hex(trace_id)), judged_by FROM traces")
            .unwrap();
        let rows: Vec<(String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), traces.len());
        for (trace, judged_by) in rows {
            if trace == traces[0] {
                assert_eq!(judged_by, None);
            } else {
                assert!(judged_by.is_some_and(|j| j.contains('@')), "{trace}");
            }
        }
    }
    // A trace in two exports: a tool call that came back with an error body, then the root with a
    // tool call that went well. The second export looks whole on its own (a root and its child),
    // but the trace was stored already: ingest's pass on that part is dropped, and once the trace
    // has settled the queue judges it with all its spans.
    let split = [0x5a; 16];
    // An OpenInference tool call, child of the root (span 1).
    let tool = |id: u64, name: &str, result: &str| {
        let mut s = span(
            split,
            id,
            name,
            vec![
                kv("openinference.span.kind", sv("TOOL")),
                kv("tool.name", sv(name)),
                kv("output.value", sv(result)),
            ],
        );
        s.parent_span_id = span(split, 1, "", vec![]).span_id;
        s
    };
    let failed_tool = tool(2, "lookup_order", r#"{"error": "upstream timeout"}"#);
    let good_tool = tool(3, "get_weather", r#"{"temp_c": 21}"#);
    let root = span(
        split,
        1,
        "agent",
        vec![kv("openinference.span.kind", sv("AGENT"))],
    );
    for part in [vec![failed_tool], vec![root, good_tool]] {
        let body = prost::Message::encode_to_vec(&request(part));
        assert_eq!(
            s.post_otlp("/v1/traces", "application/x-protobuf", body)
                .status(),
            200
        );
    }
    let split_hex = hex::encode(split);
    let verdicts_of_split = |s: &TestServer| -> Vec<Value> {
        scores(s, "trace-tools")
            .into_iter()
            .filter(|x| x["trace_id"] == split_hex.as_str())
            .collect()
    };
    let at_ingest = verdicts_of_split(&s);
    assert!(at_ingest.is_empty(), "{at_ingest:?}");
    // The queue judged again only what ingest could not judge whole: the first trace for both
    // evaluators (its late chunk was judged by neither) and the split trace for the trace-scoped one.
    let q = drained(&s, 3);
    assert_eq!(q["queue"]["done"], 3, "{q}");
    assert_eq!(scores(&s, "trace-tools").len(), traces.len() + 1);
    assert_eq!(scores(&s, "llm-in-time").len(), llm_spans + 1);
    let settled = verdicts_of_split(&s);
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0]["passed"], false, "{settled:?}");
    assert!(
        settled[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("lookup_order")),
        "{settled:?}"
    );
    let first_verdicts: Vec<Value> = scores(&s, "trace-tools")
        .into_iter()
        .filter(|x| x["trace_id"] == traces[0].as_str())
        .collect();
    assert_eq!(first_verdicts.len(), 1, "{first_verdicts:?}");
    assert_ne!(
        first_verdicts[0]["id"], 0,
        "the queue's row is the verdict listed"
    );
    // An exporter's retry of the same batch, then a crash: still one verdict per span.
    assert_eq!(
        s.post_otlp("/v1/traces", "application/x-protobuf", body)
            .status(),
        200
    );
    let s = s.crash_and_restart();
    std::thread::sleep(Duration::from_millis(4000));
    let q = drained(&s, 3);
    assert_eq!(q["queue"]["done"], 3, "{q}");
    assert_eq!(scores(&s, "llm-in-time").len(), llm_spans + 1);
    assert_eq!(scores(&s, "trace-tools").len(), traces.len() + 1);
    // A gateway call's span is judged on its way into the store too.
    let r = s
        .client()
        .post(format!("{}/v1/chat/completions", s.api))
        .bearer_auth(&s.key)
        .json(
            &json!({"model": "mock/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while scores(&s, "llm-in-time").len() < llm_spans + 2 {
        assert!(Instant::now() < deadline, "the gateway span was not judged");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, gw) = s.get("/api/v1/traces?service=vigil-gateway");
    let gw_trace = gw["traces"][0]["trace_id"].as_str().unwrap().to_string();
    assert!(scores(&s, "llm-in-time")
        .iter()
        .any(|x| x["trace_id"] == gw_trace.as_str()));
}
