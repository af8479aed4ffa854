//! Test harness: starts `vigil` as a child process on port 0 and reads its bound addresses and
//! first API key from what it prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::Value;

pub fn vigil_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vigil")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn shared_dir() -> PathBuf {
    repo_root().join("../shared")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(shared_dir().join("fixtures/otlp").join(name)).unwrap()
}

/// Runs a `vigil` CLI command against a data directory and returns stdout (panics on failure).
pub fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub struct TestServer {
    child: Child,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub api: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
    pub key: String,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    pub fn start_with(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Self::spawn(
            dir,
            extra.iter().map(|s| s.to_string()).collect(),
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            None,
        );
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data directory (prepared with the CLI, or after a crash).
    pub fn start_on(dir: &Path, key: Option<String>, extra: &[&str]) -> Self {
        Self::spawn(
            dir.to_path_buf(),
            extra.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
            key,
        )
    }

    fn spawn(
        dir: PathBuf,
        extra: Vec<String>,
        envs: Vec<(String, String)>,
        key: Option<String>,
    ) -> Self {
        let mut cmd = Command::new(vigil_bin());
        cmd.arg("--data-dir")
            .arg(&dir)
            .arg("serve")
            .args([
                "--api-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
            ])
            .args(&extra)
            .env_remove("VIGIL_CONFIG")
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log_writer.lock() {
                    if l.len() < 200_000 {
                        l.push(line.clone());
                    }
                }
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let (mut api, mut http, mut grpc, mut found_key) = (None, None, None, key);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while grpc.is_none() {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            assert!(line.is_ok(), "vigil did not start:\n{}", seen.join("\n"));
            let line = line.unwrap();
            let t = line.trim();
            let url = || t.split_whitespace().last().unwrap().to_string();
            if t.starts_with("API + UI") {
                api = Some(url());
            } else if t.starts_with("OTLP/HTTP") {
                http = Some(url());
            } else if t.starts_with("OTLP/gRPC") {
                grpc = Some(url());
            } else if t.starts_with("vk_") && found_key.is_none() {
                found_key = Some(t.to_string());
            }
            seen.push(line);
        }
        TestServer {
            child,
            dir,
            _tmp: None,
            api: api.unwrap(),
            otlp_http: http.unwrap(),
            otlp_grpc: grpc.unwrap(),
            key: found_key.unwrap_or_default(),
            extra,
            envs,
            log,
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then wait for the process to exit; returns how long that took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = self.child.wait().unwrap();
        assert!(code.success(), "vigil exited with {code} after SIGTERM");
        started.elapsed()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9`, then start again on the same data directory with the same key.
    pub fn crash_and_restart(mut self) -> Self {
        self.kill9();
        let tmp = self._tmp.take();
        let mut next = Self::spawn(
            self.dir.clone(),
            self.extra.clone(),
            self.envs.clone(),
            Some(self.key.clone()),
        );
        next._tmp = tmp;
        next
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, &self.key)
    }

    pub fn get_as(&self, path: &str, key: &str) -> (u16, Value) {
        let r = self
            .client()
            .get(format!("{}{path}", self.api))
            .header("x-vigil-api-key", key)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn post_otlp(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        self.client()
            .post(format!("{}{path}", self.otlp_http))
            .header("content-type", content_type)
            .header("x-vigil-api-key", &self.key)
            .body(body)
            .send()
            .unwrap()
    }

    /// `post_otlp` with a `Content-Encoding` (`gzip`, or an unsupported one).
    pub fn post_otlp_encoded(
        &self,
        content_type: &str,
        encoding: &str,
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        self.client()
            .post(format!("{}/v1/traces", self.otlp_http))
            .header("content-type", content_type)
            .header("content-encoding", encoding)
            .header("x-vigil-api-key", &self.key)
            .body(body)
            .send()
            .unwrap()
    }

    pub fn wait_for_trace(&self, trace_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&format!("/api/v1/traces/{trace_id}"));
            if status == 200 {
                return body;
            }
            assert!(Instant::now() < deadline, "trace {trace_id} never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

pub fn sv(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

pub fn span(trace: [u8; 16], id: u64, name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: (id | 1 << 63).to_be_bytes().to_vec(),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: 1_795_000_000_000_000_000 + id * 1000,
        end_time_unix_nano: 1_795_000_000_000_000_000 + id * 1000 + 500_000,
        attributes,
        ..Span::default()
    }
}

pub fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", sv("it-tests"))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The project's Python virtualenv (made by `scripts/python-env.sh`, which the test command runs).
pub fn python() -> PathBuf {
    let venv = std::env::var("VIGIL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "no Python venv at {}: run `scripts/python-env.sh` (the test command does)",
        venv.display()
    );
    py
}

/// `shared/tools/mock_llm.py` on a free port; killed on drop.
pub struct MockLlm {
    child: Child,
    pub base: String,
}

impl MockLlm {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(python())
            .arg(shared_dir().join("tools/mock_llm.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while reqwest::blocking::get(format!("{base}/hits")).is_err() {
            assert!(Instant::now() < deadline, "mock LLM did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        MockLlm { child, base }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
