//! `vigil bench ingest`: a bounded load generator for OTLP/HTTP protobuf ingest.
//!
//! It replays realistic agent spans (the demo generator's), with fresh trace ids and current times
//! per request (as a live service exports them), so
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

/// What every trace id of a template request ends with before a request makes it its own: the
/// run's salt and the request number take its place.
const TRACE_MARK: [u8; 12] = *b"\xf3vigil\xf3mark\xf3";
/// A session id as long as `bench-{salt:08x}-{request:010}`, replaced the same way.
const SESSION_MARK: &str = "bench-SSSSSSSS-NNNNNNNNNN";

/// A request body encoded once, with where the per-request bytes go: fresh trace ids (so nothing is
/// deduplicated) and a fresh session per request (real traffic has many short sessions). Patching
/// bytes instead of cloning and re-encoding the message keeps the generator's CPU small beside the
/// server's it shares the machine with.
struct Template {
    bytes: Vec<u8>,
    traces_at: Vec<usize>,
    sessions_at: Vec<usize>,
    /// Where each span and event time is, with its value in the template; a request moves them
    /// by the time elapsed since the templates were made, so spans arrive with current times.
    times_at: Vec<(usize, u64)>,
    spans: usize,
}

impl Template {
    fn new(
        mut req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) -> anyhow::Result<Self> {
        let mut spans = 0;
        // Span start and end (fields 7 and 8, fixed64) and event times (field 1 of an event).
        let mut times: std::collections::HashSet<(u8, u64)> = Default::default();
        for sp in req
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
        {
            spans += 1;
            times.insert((0x39, sp.start_time_unix_nano));
            times.insert((0x41, sp.end_time_unix_nano));
            for e in &sp.events {
                times.insert((0x09, e.time_unix_nano));
            }
            anyhow::ensure!(sp.trace_id.len() == 16, "a template span has no trace id");
            sp.trace_id[4..].copy_from_slice(&TRACE_MARK);
            for kv in &mut sp.attributes {
                if kv.key == "session.id" || kv.key == "gen_ai.conversation.id" {
                    kv.value = Some(AnyValue {
                        value: Some(any_value::Value::StringValue(SESSION_MARK.into())),
                    });
                }
            }
        }
        let bytes = req.encode_to_vec();
        // Once per template at start: a plain scan is fast enough.
        let find = |mark: &[u8]| -> Vec<usize> {
            bytes
                .windows(mark.len())
                .enumerate()
                .filter(|(_, w)| *w == mark)
                .map(|(at, _)| at)
                .collect()
        };
        // A tag byte followed by one of the times: 72 random bits, so no false match in practice.
        let times_at: Vec<(usize, u64)> = (0..bytes.len().saturating_sub(8))
            .filter_map(|at| {
                let mut v = [0u8; 8];
                v.copy_from_slice(&bytes[at + 1..at + 9]);
                let v = u64::from_le_bytes(v);
                times.contains(&(bytes[at], v)).then_some((at + 1, v))
            })
            .collect();
        anyhow::ensure!(
            times_at.len() >= 2 * spans,
            "span times not found in the template"
        );
        let traces_at = find(&TRACE_MARK);
        let sessions_at = find(SESSION_MARK.as_bytes());
        anyhow::ensure!(
            traces_at.len() == spans,
            "trace id marks do not match the spans"
        );
        Ok(Self {
            traces_at: traces_at.into_iter().map(|at| at - 4).collect(),
            sessions_at,
            times_at,
            bytes,
            spans,
        })
    }

    /// The body of request `n` of the run salted `salt`, its times moved by `shift_ns`, and its
    /// first trace id.
    fn request(&self, salt: u32, n: usize, shift_ns: u64) -> (Vec<u8>, Option<[u8; 16]>) {
        let mut body = self.bytes.clone();
        for &(at, v) in &self.times_at {
            body[at..at + 8].copy_from_slice(&v.wrapping_add(shift_ns).to_le_bytes());
        }
        let mut tail = [0u8; 12];
        tail[..4].copy_from_slice(&salt.to_be_bytes());
        tail[4..].copy_from_slice(&(n as u64).to_be_bytes());
        for &at in &self.traces_at {
            body[at + 4..at + 16].copy_from_slice(&tail);
        }
        let session = format!("bench-{salt:08x}-{:010}", n % 10_000_000_000);
        for &at in &self.sessions_at {
            body[at..at + SESSION_MARK.len()].copy_from_slice(session.as_bytes());
        }
        let first = self.traces_at.first().map(|&at| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&body[at..at + 16]);
            id
        });
        (body, first)
    }
}

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
    let templates: Vec<Template> = (0..TEMPLATES)
        .map(|_| Template::new(generator.spans_for_live_load(args.batch, now)))
        .collect::<anyhow::Result<_>>()?;
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
        let (client, key, next, accepted, retries, lags, templates) = (
            client.clone(),
            key.clone(),
            next.clone(),
            accepted.clone(),
            retries.clone(),
            lags.clone(),
            templates.clone(),
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
                let template = &templates[n % TEMPLATES];
                let shift = u64::try_from(now_ns() - now).unwrap_or(0);
                let (body, first_trace) = template.request(salt, n, shift);
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
                accepted.fetch_add(template.spans, Ordering::Relaxed);
                // Every 10th batch: how long until one of its traces is queryable.
                if n % 10 == 0 {
                    if let Some(trace) = first_trace.map(hex::encode) {
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

fn localhost_only(url: &str) -> anyhow::Result<()> {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!(
            "refusing to load `{url}`: benchmarks only target this machine (127.0.0.1/localhost)"
        );
    }
    Ok(())
}

/// `vigil bench redact`: the CPU cost of redaction next to the CPU cost of decoding and
/// normalising the same spans (what ingest does before storing them), on one core.
pub fn redact(args: crate::cli::BenchRedactArgs) -> anyhow::Result<()> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use vigil_governance::redact::{RedactionConfig, RedactionCounts, Redactor};

    const BATCH: usize = 200;
    let mut generator = Generator::new(7);
    let now = now_ns();
    let bodies: Vec<Vec<u8>> = (0..args.spans.div_ceil(BATCH).max(1))
        .map(|_| generator.spans_for_load(BATCH, now).encode_to_vec())
        .collect();
    let normalizer = vigil_ingest::Normalizer::new(Arc::new(vigil_model::PriceTable::builtin()?));
    let project = vigil_model::ProjectId::new("bench");
    // Warm up allocator and caches on a slice of the work, then measure.
    for b in bodies.iter().take(20) {
        let req = ExportTraceServiceRequest::decode(b.as_slice())?;
        let _ = normalizer.traces_owned(&project, req);
    }
    let redactor = Redactor::new(
        &RedactionConfig::default().for_project("bench"),
        b"bench-secret-key",
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut counts = RedactionCounts::default();
    // Batch by batch, as ingest does, so both phases run on warm memory of the same size.
    let (mut normalize, mut redact, mut spans) = (Duration::ZERO, Duration::ZERO, 0usize);
    for b in &bodies {
        let t = Instant::now();
        let req = ExportTraceServiceRequest::decode(b.as_slice())?;
        let mut batch = normalizer.traces_owned(&project, req).spans;
        normalize += t.elapsed();
        let t = Instant::now();
        redactor.remembering(|| {
            for span in batch.iter_mut() {
                redactor.redact_span(span, &mut counts);
            }
        });
        redact += t.elapsed();
        spans += batch.len();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / spans as f64;
    println!("spans                      {spans}");
    println!(
        "decode + normalise         {:.2} µs/span ({:.0} spans/s on one core)",
        per(normalize),
        spans as f64 / normalize.as_secs_f64()
    );
    println!(
        "redaction (all detectors)  {:.2} µs/span ({:.0} spans/s on one core)",
        per(redact),
        spans as f64 / redact.as_secs_f64()
    );
    println!(
        "redaction / (decode + normalise) = {:.1} %",
        100.0 * redact.as_secs_f64() / normalize.as_secs_f64()
    );
    println!(
        "values redacted            {} ({})",
        counts.total(),
        counts
            .0
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `vigil bench guard`: latency of guard checks that need no approval, over HTTP.
pub async fn guard(args: crate::cli::BenchGuardArgs) -> anyhow::Result<()> {
    localhost_only(&args.api)?;
    anyhow::ensure!(
        args.concurrency > 0 && args.requests > 0,
        "`--requests` and `--concurrency` must be positive"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let key = args.api_key.clone().unwrap_or_default();
    let url = format!("{}/api/v1/guard/tool-call", args.api.trim_end_matches('/'));
    let policy: serde_json::Value = client
        .get(format!(
            "{}/api/v1/guard/policy",
            args.api.trim_end_matches('/')
        ))
        .bearer_auth(&key)
        .send()
        .await?
        .json()
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.requests)));
    let decisions = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let (next, latencies, decisions) = (next.clone(), latencies.clone(), decisions.clone());
        let total = args.requests;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut seen = std::collections::BTreeMap::<String, usize>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                // A realistic mix: mostly allowed lookups and small refunds, some denials, a few
                // calls per trace so loop caps are counted.
                let (tool, args) = match i % 10 {
                    0..=5 => ("lookup_order", serde_json::json!({"order_id": format!("A-{i}")})),
                    6..=8 => ("refund_payment", serde_json::json!({"amount": (i % 500) as f64, "currency": "USD"})),
                    _ => ("run_shell", serde_json::json!({"cmd": "ls"})),
                };
                let body = serde_json::json!({
                    "tool": tool, "arguments": args, "agent": "support-agent", "environment": "production",
                    "trace_id": format!("{:016x}{:016x}", worker + 1, i / 4 + 1),
                });
                let t = Instant::now();
                let r = client.post(&url).bearer_auth(&key).json(&body).send().await;
                let d = match r {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["decision"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "unreadable".into()),
                    Ok(r) => format!("http {}", r.status().as_u16()),
                    Err(_) => "transport error".into(),
                };
                mine.push(t.elapsed());
                *seen.entry(d).or_default() += 1;
            }
            latencies.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            let mut all = decisions.lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in seen {
                *all.entry(k).or_default() += v;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "policy                {}",
        if policy["version"].as_i64().unwrap_or(0) > 0 {
            format!("v{}", policy["version"])
        } else {
            "none (allow-all default)".into()
        }
    );
    println!(
        "requests              {} at concurrency {}",
        lat.len(),
        args.concurrency
    );
    println!(
        "throughput            {:.0} checks/s",
        lat.len() as f64 / elapsed
    );
    println!(
        "latency               p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "decisions             {}",
        decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `vigil bench evaluate`: how many spans per second the rule evaluators judge, on one core,
/// with the demo workload grouped into traces (the store read of each trace is not included;
/// `scripts/bench-evaluators.sh` measures the whole path end to end).
pub fn evaluate(args: crate::cli::BenchRedactArgs) -> anyhow::Result<()> {
    use std::collections::HashMap;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use vigil_quality::{CompiledRule, EvaluatorDef, Scope};

    const BATCH: usize = 200;
    let mut generator = Generator::new(11);
    let now = now_ns();
    let normalizer = vigil_ingest::Normalizer::new(Arc::new(vigil_model::PriceTable::builtin()?));
    let project = vigil_model::ProjectId::new("bench");
    let mut traces: HashMap<vigil_model::TraceId, Vec<vigil_model::Span>> = HashMap::new();
    for _ in 0..args.spans.div_ceil(BATCH).max(1) {
        let body = generator.spans_for_load(BATCH, now).encode_to_vec();
        let req = ExportTraceServiceRequest::decode(body.as_slice())?;
        for s in normalizer.traces_owned(&project, req).spans {
            traces.entry(s.trace_id).or_default().push(s);
        }
    }
    let spans: usize = traces.values().map(Vec::len).sum();
    let defs: Vec<(&str, serde_json::Value)> = vec![
        (
            "silent_tool_failure",
            serde_json::json!({"rule": {"type": "silent_tool_failure"}}),
        ),
        (
            "hallucinated_tool",
            serde_json::json!({"rule": {"type": "hallucinated_tool"}}),
        ),
        (
            "llm_latency (span)",
            serde_json::json!({"scope": "span", "rule": {"type": "max_latency_ms", "max": 2500}, "filter": {"kind": "llm"}}),
        ),
        (
            "trace_cost",
            serde_json::json!({"rule": {"type": "max_cost_usd", "max": 0.05}}),
        ),
        (
            "regex_output",
            serde_json::json!({"rule": {"type": "regex", "pattern": "A-[0-9]{4}"}}),
        ),
        (
            "not_contains",
            serde_json::json!({"rule": {"type": "not_contains", "value": "sorry"}}),
        ),
        ("refusal", serde_json::json!({"rule": {"type": "refusal"}})),
        (
            "no_pii_in_output",
            serde_json::json!({"rule": {"type": "no_pii_in_output"}}),
        ),
    ];
    let compiled: Vec<(&str, EvaluatorDef, CompiledRule)> = defs
        .into_iter()
        .map(|(n, v)| {
            let def: EvaluatorDef = serde_json::from_value(v)?;
            let rule = def.validate().map_err(|e| anyhow::anyhow!(e))?;
            Ok((n, def, rule))
        })
        .collect::<anyhow::Result<_>>()?;
    println!("traces {}, spans {spans}", traces.len());
    let mut total = Duration::ZERO;
    for (name, def, rule) in &compiled {
        let t = Instant::now();
        let mut verdicts = 0usize;
        for spans in traces.values() {
            match def.scope {
                Scope::Span => {
                    verdicts += spans
                        .iter()
                        .filter(|s| def.filter.matches(s))
                        .filter_map(|s| rule.on_span(s))
                        .count()
                }
                _ => verdicts += usize::from(rule.on_trace(spans).is_some()),
            }
        }
        let d = t.elapsed();
        total += d;
        println!(
            "{name:<22} {:>12.0} spans/s  ({verdicts} verdicts)",
            spans as f64 / d.as_secs_f64()
        );
    }
    println!(
        "all {} evaluators       {:>12.0} spans/s on one core (each span judged by every evaluator)",
        compiled.len(),
        spans as f64 / total.as_secs_f64()
    );
    Ok(())
}
