//! A full write pipeline answers 503 with `Retry-After` (never 500), and what it acknowledged is stored.

use std::time::Duration;

use prost::Message;

use crate::support::*;

#[test]
fn overload_is_refused_with_retry_after_and_acked_data_is_kept() {
    let server = TestServer::start_with(&[], &[("VIGIL_STORAGE__MAX_PENDING_SPANS", "100")]);
    let (url, key) = (
        format!("{}/v1/traces", server.otlp_http),
        server.key.clone(),
    );
    let results: Vec<(u16, Option<String>, [u8; 16])> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u8)
            .map(|w| {
                let (url, key) = (&url, &key);
                scope.spawn(move || {
                    let trace = [w + 1; 16];
                    let spans = (1..=3000)
                        .map(|i| span(trace, i, "step", vec![kv("payload", sv(&"x".repeat(200)))]))
                        .collect();
                    let r = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .unwrap()
                        .post(url)
                        .header("content-type", "application/x-protobuf")
                        .header("x-vigil-api-key", key)
                        .body(request(spans).encode_to_vec())
                        .send()
                        .unwrap();
                    (
                        r.status().as_u16(),
                        r.headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap().to_string()),
                        trace,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().all(|(s, _, _)| *s == 200 || *s == 503),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert!(
        !refused.is_empty(),
        "16 concurrent 3000-span batches against a 100-span queue should be refused at least once"
    );
    assert!(
        refused.iter().all(|r| r.1.is_some()),
        "503 carries Retry-After"
    );
    for (status, _, trace) in &results {
        let hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
        let (got, body) = server.get(&format!("/api/v1/traces/{hex}"));
        if *status == 200 {
            assert_eq!(body["spans"].as_array().unwrap().len(), 3000);
        } else {
            assert_eq!(got, 404, "a refused batch left nothing half-written");
        }
    }
}
