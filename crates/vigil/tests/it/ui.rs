//! The web UI in a real browser: headless Chromium driven by `tests/browser/ui_e2e.py` (selenium)
//! against a server seeded by `vigil demo` and the shared fixtures, plus HTTP-level checks of
//! authentication, escaping and headers. Screenshots land in `target/ui-screenshots/`.

use std::process::Command;

use crate::support::*;

fn xss_trace(server: &TestServer) -> String {
    let trace = [0xab; 16];
    let script = "<script>window.__vigil_xss=1</script>";
    let messages = r#"[{"role":"user","parts":[{"type":"text","content":"<img src=x onerror=window.__vigil_xss=2>"}]}]"#;
    let body = prost::Message::encode_to_vec(&request(vec![span(
        trace,
        1,
        script,
        vec![
            kv("gen_ai.operation.name", sv("chat")),
            kv("gen_ai.request.model", sv("gpt-4o-mini")),
            kv("gen_ai.input.messages", sv(messages)),
        ],
    )]));
    let res = server.post_otlp("/v1/traces", "application/x-protobuf", body);
    assert_eq!(res.status(), 200);
    let id = hex::encode(trace);
    server.wait_for_trace(&id);
    id
}

#[test]
fn pages_refuse_strangers_escape_content_and_send_safe_headers() {
    let server = TestServer::start();
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A fresh install teaches how to send the first trace instead of showing an empty table.
    let empty = client
        .get(format!("{}/ui/traces", server.api))
        .header("cookie", format!("vigil_keys={}", server.key))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for snippet in [
        "No traces yet",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318",
        "OpenAIInstrumentor",
        "openinference",
        "vigil demo",
    ] {
        assert!(empty.contains(snippet), "onboarding lacks {snippet}");
    }
    let id = xss_trace(&server);
    for path in [
        "/ui/traces",
        "/ui/dashboard",
        "/ui/sessions",
        "/ui/models",
        &format!("/ui/traces/{id}"),
    ] {
        let res = client.get(format!("{}{path}", server.api)).send().unwrap();
        assert_eq!(res.status(), 303, "{path} without a login");
        let to = res.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with("/login?next="), "{path} → {to}");
        assert!(!res.text().unwrap().contains("gpt-4o-mini"));
    }
    // A forged or unknown key in the cookie is no login either.
    let res = client
        .get(format!("{}/ui/traces", server.api))
        .header("cookie", format!("vigil_keys=vk_{}", "A".repeat(40)))
        .send()
        .unwrap();
    assert_eq!(res.status(), 303);

    let cookie = format!("vigil_keys={}", server.key);
    let res = client
        .get(format!("{}/ui/traces/{id}", server.api))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe-inline'")
    );
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let html = res.text().unwrap();
    assert!(
        !html.contains("<script>window.__vigil_xss"),
        "span name must be escaped"
    );
    assert!(html.contains("&lt;script&gt;window.__vigil_xss=1&lt;/script&gt;"));
    assert!(!html.contains("<img src=x"));

    // Login: a bad key is refused with 401, a good one sets an HttpOnly, SameSite=Strict cookie and
    // only redirects within the site.
    let res = client
        .post(format!("{}/login", server.api))
        .form(&[("key", "vk_nope"), ("next", "/ui/traces")])
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .post(format!("{}/login", server.api))
        .form(&[
            ("key", server.key.as_str()),
            ("next", "https://evil.example/"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/traces");
    let set: Vec<_> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(set.iter().any(|c| c.starts_with("vigil_keys=vk_")
        && c.contains("HttpOnly")
        && c.contains("SameSite=Strict")));

    // A local user logs in with name and password, sees the granted project, and logging out ends
    // the session on the server (the old cookie no longer works).
    let out = Command::new(vigil_bin())
        .args([
            "--data-dir",
            server.dir.to_str().unwrap(),
            "users",
            "create",
            "alice",
            "--project",
            "default",
        ])
        .env("VIGIL_USER_PASSWORD", "a long password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = client
        .post(format!("{}/login", server.api))
        .form(&[
            ("user", "alice"),
            ("password", "not the password"),
            ("next", "/ui/traces"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .post(format!("{}/login", server.api))
        .form(&[
            ("user", "alice"),
            ("password", "a long password"),
            ("next", "/ui/traces"),
        ])
        .send()
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("vigil_session=vs_"))
        .expect("a session cookie");
    let session = session.split(';').next().unwrap().to_string();
    let res = client
        .get(format!("{}/ui/traces/{id}", server.api))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().unwrap().contains("alice"));
    let res = client
        .post(format!("{}/logout", server.api))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = client
        .get(format!("{}/ui/traces", server.api))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "a logged-out session must not open pages"
    );

    // Another project's key never shows this project's traces.
    let other = cli(&server.dir, &["projects", "create", "other"]);
    let other_key = other
        .split_whitespace()
        .find(|w| w.starts_with("vk_"))
        .expect("projects create prints the new key")
        .to_string();
    let res = client
        .get(format!("{}/ui/traces/{id}", server.api))
        .header("cookie", format!("vigil_keys={other_key}"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[test]
fn the_ui_works_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run scripts/browser-env.sh (the test command does)"
    );
    let server = TestServer::start();
    // Seed: the demo workload (written straight into the store), then every shared fixture over OTLP.
    cli(
        &server.dir,
        &["demo", "--no-serve", "--traces", "150", "--seed", "7"],
    );
    for entry in std::fs::read_dir(shared_dir().join("fixtures/otlp")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pb") {
            let res = server.post_otlp(
                "/v1/traces",
                "application/x-protobuf",
                std::fs::read(&path).unwrap(),
            );
            assert_eq!(res.status(), 200, "{}", path.display());
        }
    }
    let xss = xss_trace(&server);
    let shots = repo_root().join("target/ui-screenshots");
    let out = Command::new(python())
        .arg(repo_root().join("crates/vigil/tests/browser/ui_e2e.py"))
        .args([&server.api, &server.key, shots.to_str().unwrap(), &xss])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all browser checks passed"),
        "browser checks failed (screenshots in {}):\n{stdout}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
