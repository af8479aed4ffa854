//! The query API over HTTP, on a store seeded by `vigil demo` and the shared fixtures.

use serde_json::Value;

use crate::support::*;

fn seeded() -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = std::process::Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(&dir)
        // A fixed seed: the assertions below need rare events (a 502 tool result) to be present.
        .args(["demo", "--no-serve", "--traces", "150", "--seed", "42"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let key = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("vk_"))
        .unwrap()
        .to_string();
    let server = TestServer::start_on(&dir, Some(key), &[]);
    for f in [
        "otel-genai-openai.pb",
        "openinference-openai.pb",
        "openinference-anthropic.pb",
    ] {
        assert_eq!(
            server
                .post_otlp("/v1/traces", "application/x-protobuf", fixture(f))
                .status(),
            200
        );
    }
    std::mem::forget(tmp); // removed with the test process's temp files; the server holds the dir
    server
}

fn traces(v: &Value) -> &Vec<Value> {
    v["traces"].as_array().unwrap()
}

#[test]
fn trace_list_filters_search_sort_and_pages() {
    let s = seeded();
    let (status, all) = s.get("/api/v1/traces?limit=500");
    assert_eq!(status, 200);
    let total = traces(&all).len();
    assert!(total >= 150, "{total}");

    let (_, claude) = s.get("/api/v1/traces?model=claude-sonnet-4-5&limit=500");
    assert!(!traces(&claude).is_empty());
    assert!(traces(&claude).iter().all(|t| t["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "claude-sonnet-4-5")));

    let (_, flagged) = s.get("/api/v1/traces?flags=silent_tool_failure&limit=500");
    assert!(!traces(&flagged).is_empty());
    assert!(traces(&flagged).iter().all(|t| t["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "silent_tool_failure")));

    let (_, search) = s.get("/api/v1/traces?q=Bad%20Gateway&limit=500");
    assert!(
        !traces(&search).is_empty(),
        "full-text search finds the 502 tool results"
    );
    let (_, none) = s.get("/api/v1/traces?q=zzzzunfindable");
    assert!(traces(&none).is_empty());

    let (_, errors) = s.get("/api/v1/traces?status=error&environment=production&limit=500");
    assert!(traces(&errors)
        .iter()
        .all(|t| t["status"] == "error" && t["environment"] == "production"));

    let (_, by_cost) = s.get("/api/v1/traces?sort=cost&limit=20");
    let costs: Vec<f64> = traces(&by_cost)
        .iter()
        .map(|t| t["cost_usd"].as_f64().unwrap_or(-1.0))
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");

    let (_, slow) = s.get("/api/v1/traces?min_duration_ms=5000&limit=500");
    assert!(traces(&slow)
        .iter()
        .all(|t| t["duration_ms"].as_f64().unwrap() >= 5000.0));

    // Cursor paging visits every trace exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/traces?limit=37&cursor={c}"),
            None => "/api/v1/traces?limit=37".to_string(),
        };
        let (_, page) = s.get(&path);
        for t in traces(&page) {
            assert!(
                seen.insert(t["trace_id"].as_str().unwrap().to_string()),
                "duplicate across pages"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), total);

    for bad in [
        "/api/v1/traces?limit=0",
        "/api/v1/traces?status=bogus",
        "/api/v1/traces?nope=1",
        "/api/v1/traces?cursor=zz",
        "/api/v1/traces?from=yesterday",
        "/api/v1/traces/not-an-id",
    ] {
        let (status, body) = s.get(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().is_some());
    }
}

#[test]
fn trace_detail_sessions_metrics_and_models() {
    let s = seeded();
    let (status, t) = s.get("/api/v1/traces/9114ec57671e78a04b995b80cbecd2ac");
    assert_eq!(status, 200);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans[0]["kind"], "agent", "tree order starts at the root");
    let tool = spans.iter().find(|s| s["kind"] == "tool").unwrap();
    assert_eq!(tool["tool_name"], "lookup_order");
    assert_eq!(tool["tool_result"]["status"], "pending");
    let llm = spans.iter().find(|s| s["kind"] == "llm").unwrap();
    for field in [
        "model",
        "response_model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "input_messages",
        "output_messages",
        "finish_reasons",
        "attributes",
    ] {
        assert!(!llm[field].is_null(), "{field}");
    }

    let (_, sessions) = s.get("/api/v1/sessions?limit=500");
    let list = sessions["sessions"].as_array().unwrap();
    assert!(
        list.iter().any(|x| x["turns"].as_i64().unwrap() >= 7),
        "long sessions exist"
    );
    let (status, sess) = s.get("/api/v1/sessions/sess-42");
    assert_eq!(status, 200);
    assert_eq!(sess["session"]["turns"], 3);
    assert_eq!(sess["traces"].as_array().unwrap().len(), 3);
    assert_eq!(s.get("/api/v1/sessions/no-such-session").0, 404);

    let (status, m) = s.get("/api/v1/metrics?from=25h&group_by=model&kind=llm&bucket=1h");
    assert_eq!(status, 200, "{m}");
    let totals = m["totals"].as_array().unwrap();
    assert!(totals.len() >= 5);
    for p in totals {
        assert!(p["count"].as_i64().unwrap() > 0);
        assert!(p["latency_p50_ms"].as_f64().unwrap() <= p["latency_p99_ms"].as_f64().unwrap());
    }
    let acme = totals
        .iter()
        .find(|p| p["group"] == "acme-support-ft-v2")
        .unwrap();
    assert!(
        acme["cost_usd"].is_null(),
        "unpriced model has no cost, not 0"
    );
    assert!(!m["series"].as_array().unwrap().is_empty());
    assert_eq!(s.get("/api/v1/metrics?group_by=color").0, 400);

    let (_, models) = s.get("/api/v1/models?unpriced=true");
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["acme-support-ft-v2"]);
}

#[test]
fn other_projects_data_is_invisible() {
    let s = seeded();
    let other = cli(&s.dir, &["projects", "create", "team-b"]);
    let key_b = other
        .lines()
        .find_map(|l| l.strip_prefix("API key (shown once): "))
        .unwrap()
        .to_string();
    let (status, page) = s.get_as("/api/v1/traces", &key_b);
    assert_eq!(status, 200);
    assert!(traces(&page).is_empty());
    assert_eq!(
        s.get_as("/api/v1/traces/9114ec57671e78a04b995b80cbecd2ac", &key_b)
            .0,
        404
    );
    assert_eq!(s.get_as("/api/v1/sessions/sess-42", &key_b).0, 404);
    let (_, m) = s.get_as("/api/v1/metrics", &key_b);
    assert!(m["totals"].as_array().unwrap().is_empty());
    assert_eq!(s.get_as("/api/v1/traces", "").0, 401);
    // A revoked key stops working within the 5 s auth cache.
    let keys = cli(&s.dir, &["keys", "list", "--project", "team-b"]);
    let key_id = keys.split_whitespace().next().unwrap().to_string();
    cli(&s.dir, &["keys", "revoke", &key_id, "--project", "team-b"]);
    std::thread::sleep(std::time::Duration::from_millis(5200));
    assert_eq!(s.get_as("/api/v1/traces", &key_b).0, 401);
}

#[test]
fn openapi_document_describes_every_route() {
    let s = TestServer::start();
    let (status, doc) = s.get_as("/api/v1/openapi.json", "");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in vigil_api::router::API_ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Every listed route is really routed (the fallback answers "no such route").
    for (method, path) in vigil_api::router::API_ROUTES {
        let url = format!(
            "{}{}",
            s.api,
            path.replace("{trace_id}", "00000000000000000000000000000001")
                .replace('{', "x")
                .replace('}', "")
        );
        let req = match *method {
            "post" => s.client().post(url),
            "put" => s.client().put(url),
            _ => s.client().get(url),
        };
        let body = req.send().unwrap().text().unwrap();
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed"
        );
    }
    // Nothing documented that is not served (a path may have several methods).
    let served: std::collections::BTreeSet<&str> = vigil_api::router::API_ROUTES
        .iter()
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(doc["paths"].as_object().unwrap().len(), served.len());
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, vigil_api::router::API_ROUTES.len());
}

#[test]
fn insecure_local_mode_needs_no_key() {
    let s = TestServer::start_with(&["--insecure-local"], &[]);
    assert_eq!(
        s.post_otlp(
            "/v1/traces",
            "application/x-protobuf",
            fixture("otel-genai-openai.pb")
        )
        .status(),
        200
    );
    let (status, page) = s.get_as("/api/v1/traces", "");
    assert_eq!(status, 200);
    assert_eq!(traces(&page).len(), 1);
}
