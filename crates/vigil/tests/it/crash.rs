//! Durability: every span acknowledged before a `kill -9` is there after restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

use crate::support::*;

#[test]
fn acknowledged_spans_survive_kill_9() {
    let server = TestServer::start();
    let acked: Arc<Mutex<Vec<[u8; 16]>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4u8 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (url, key) = (
            format!("{}/v1/traces", server.otlp_http),
            server.key.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut trace = [w + 1; 16];
                trace[12..].copy_from_slice(&n.to_be_bytes());
                let spans = (1..=50)
                    .map(|i| span(trace, i, "step", vec![kv("i", sv("x"))]))
                    .collect();
                let body = request(spans).encode_to_vec();
                match client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("x-vigil-api-key", &key)
                    .body(body)
                    .send()
                {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(trace),
                    _ => {}
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let before_kill = acked.lock().unwrap().len();
    let server = server.crash_and_restart();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        before_kill > 10,
        "only {before_kill} batches were acknowledged before the kill"
    );
    for trace in &acked {
        let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
        let (status, t) = server.get(&format!("/api/v1/traces/{hex}"));
        assert_eq!(status, 200, "acknowledged trace {hex} lost");
        assert_eq!(
            t["spans"].as_array().unwrap().len(),
            50,
            "acknowledged trace {hex} incomplete"
        );
    }
    let conn = rusqlite::Connection::open(server.dir.join("vigil.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn sigterm_drains_and_exits_promptly() {
    let mut server = TestServer::start();
    assert_eq!(
        server
            .post_otlp(
                "/v1/traces",
                "application/x-protobuf",
                fixture("openinference-openai.pb")
            )
            .status(),
        200
    );
    let took = server.terminate();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let wal = server.dir.join("vigil.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "the WAL is checkpointed on a clean stop"
    );
    let server = TestServer::start_on(&server.dir.clone(), Some(server.key.clone()), &[]);
    let (_, page) = server.get("/api/v1/traces");
    assert_eq!(page["traces"].as_array().unwrap().len(), 1);
}
