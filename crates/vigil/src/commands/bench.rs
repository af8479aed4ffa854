//! `vigil bench ingest`: a bounded load generator for OTLP/HTTP protobuf ingest.
//!
//! It replays realistic agent spans (the demo generator's), with fresh trace ids per request so
//! nothing is deduplicated, from `--concurrency` exporters. It reports spans/s accepted, the
//! ingest-to-queryable lag (from sending a batch until one of its traces answers on the query
//! API), retries after back-pressure, and the server's peak RSS when given its pid.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use prost::Message;

use super::demo::{now_ns, Generator};
use crate::cli::BenchIngestArgs;

const TEMPLATES: usize = 16;

pub async fn ingest(args: BenchIngestArgs) -> anyhow::Result<()> {
    for url in [&args.target, &args.api] {
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            bail!("refusing to load `{url}`: benchmarks only target this machine (127.0.0.1/localhost)");
        }
    }
    anyhow::ensure!(
        args.batch > 0 && args.concurrency > 0,
        "`--batch` and `--concurrency` must be positive"
    );
    let mut generator = Generator::new(1);
    let now = now_ns();
    let templates: Vec<_> = (0..TEMPLATES)
        .map(|_| generator.spans_for_load(args.batch, now))
        .collect();
    let spans_per_request: Vec<usize> = templates
        .iter()
        .map(|t| {
            t.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum()
        })
        .collect();
    let requests = args.spans.div_ceil(args.batch);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(60))
        .build()?;
    let key = args.api_key.clone().unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let lags: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let templates = Arc::new(templates);
    let spans_per_request = Arc::new(spans_per_request);
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let peak = Arc::new(Mutex::new(0u64));
    let rss_task = args.server_pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kb) = rss_kib(pid) {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = (*p).max(kb);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    // A per-run salt in the trace ids, so a second run against the same store is not deduplicated.
    let salt: u32 = rand::random();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, key, next, accepted, retries, lags, templates, spr) = (
            client.clone(),
            key.clone(),
            next.clone(),
            accepted.clone(),
            retries.clone(),
            lags.clone(),
            templates.clone(),
            spans_per_request.clone(),
        );
        let (target, api) = (
            format!("{}/v1/traces", args.target.trim_end_matches('/')),
            args.api.trim_end_matches('/').to_string(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests || Instant::now() > deadline {
                    return Ok::<(), anyhow::Error>(());
                }
                let t = n % TEMPLATES;
                let mut req = templates[t].clone();
                // Fresh trace ids: the request number in the low bytes keeps every span unique.
                let mut first_trace = None;
                for rs in &mut req.resource_spans {
                    for ss in &mut rs.scope_spans {
                        for sp in &mut ss.spans {
                            sp.trace_id[4..8].copy_from_slice(&salt.to_be_bytes());
                            // Sessions are per request too, as real traffic has many short sessions.
                            for kv in &mut sp.attributes {
                                if kv.key == "session.id" || kv.key == "gen_ai.conversation.id" {
                                    kv.value = Some(AnyValue {
                                        value: Some(any_value::Value::StringValue(format!(
                                            "bench-{salt:08x}-{n}"
                                        ))),
                                    });
                                }
                            }
                            sp.trace_id[8..16].copy_from_slice(&(n as u64).to_be_bytes());
                            first_trace.get_or_insert_with(|| hex::encode(&sp.trace_id));
                        }
                    }
                }
                let body = req.encode_to_vec();
                let sent = Instant::now();
                loop {
                    let resp = client
                        .post(&target)
                        .header("content-type", "application/x-protobuf")
                        .header("x-vigil-api-key", &key)
                        .body(body.clone())
                        .send()
                        .await
                        .context("export request failed")?;
                    let status = resp.status();
                    if status.is_success() {
                        break;
                    }
                    if status.as_u16() == 429 || status.as_u16() == 503 {
                        retries.fetch_add(1, Ordering::Relaxed);
                        let wait = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(1);
                        tokio::time::sleep(Duration::from_millis((wait * 1000).min(200))).await;
                        continue;
                    }
                    bail!("server answered {status} to an export");
                }
                accepted.fetch_add(spr[t], Ordering::Relaxed);
                // Every 10th batch: how long until one of its traces is queryable.
                if n % 10 == 0 {
                    if let Some(trace) = first_trace {
                        loop {
                            let r = client
                                .get(format!("{api}/api/v1/traces/{trace}"))
                                .header("x-vigil-api-key", &key)
                                .send()
                                .await?;
                            if r.status().is_success() {
                                break;
                            }
                            if sent.elapsed() > Duration::from_secs(30) {
                                bail!("trace {trace} not queryable 30 s after it was sent");
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        lags.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(t) = rss_task {
        t.abort();
    }
    let total = accepted.load(Ordering::Relaxed);
    let mut lags = lags.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("spans accepted        {total}");
    println!("elapsed               {elapsed:.2} s");
    println!(
        "throughput            {:.0} spans/s (queryable on acknowledgement)",
        total as f64 / elapsed
    );
    println!(
        "ingest→queryable lag  p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        pct(0.5),
        pct(0.99),
        lags.len()
    );
    println!("back-pressure retries {}", retries.load(Ordering::Relaxed));
    if let Some(pid) = args.server_pid {
        let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "server peak RSS       {:.0} MiB (pid {pid}, sampled every 100 ms)",
            peak as f64 / 1024.0
        );
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
