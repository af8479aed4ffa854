//! `vigil eval run`: the experiment runner and CI gate. It is a client of a running Vigil, as a CI
//! job is: it reads the dataset and the evaluators from the API, calls the model through the
//! gateway, scores the answers, stores the run, and compares it with a baseline.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use vigil_quality::experiment::{self, Comparison};
use vigil_quality::{CompiledRule, EvaluatorDef};
use vigil_store::ExperimentResult;

use crate::cli::EvalRunArgs;

async fn get(client: &reqwest::Client, url: String, key: &str) -> anyhow::Result<Value> {
    let r = client
        .get(&url)
        .bearer_auth(key)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

pub async fn run(args: EvalRunArgs) -> anyhow::Result<ExitCode> {
    let key = args.api_key.clone().unwrap_or_default();
    let api = args.api.trim_end_matches('/').to_string();
    anyhow::ensure!(
        args.prompt.contains("{input}"),
        "`--prompt` must contain `{{input}}`"
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let dataset = get(
        &client,
        format!("{api}/api/v1/datasets/{}", url_encode(&args.dataset)),
        &key,
    )
    .await?;
    // The baseline is resolved before this run is stored, so a run named like its baseline (the
    // usual `--name main --baseline main` on a main branch) is compared with the previous one.
    let baseline_id = match &args.baseline {
        Some(b) => Some(
            get(
                &client,
                format!("{api}/api/v1/experiments/{}", url_encode(b)),
                &key,
            )
            .await
            .with_context(|| format!("baseline `{b}`"))?["run"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        None => None,
    };
    let items = dataset["items"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(!items.is_empty(), "dataset `{}` has no items", args.dataset);
    let evaluators = get(&client, format!("{api}/api/v1/evaluators"), &key).await?;
    let mut rules: Vec<(String, CompiledRule)> = Vec::new();
    for e in evaluators["items"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let wanted = if args.evaluators.is_empty() {
            e["enabled"] == true
        } else {
            args.evaluators.contains(&name)
        };
        if !wanted {
            continue;
        }
        let def: EvaluatorDef = serde_json::from_value(e["definition"].clone())
            .with_context(|| format!("evaluator `{name}`"))?;
        rules.push((
            name.clone(),
            def.validate()
                .map_err(|err| anyhow::anyhow!("evaluator `{name}`: {err}"))?,
        ));
    }
    for wanted in &args.evaluators {
        anyhow::ensure!(
            rules.iter().any(|(n, _)| n == wanted),
            "no evaluator `{wanted}` in this project"
        );
    }
    anyhow::ensure!(
        !rules.is_empty(),
        "no evaluators to score with (configure `[[evaluators]]`)"
    );
    let rules = Arc::new(rules);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::new();
    for item in items {
        let (client, key, api, rules, gate) = (
            client.clone(),
            key.clone(),
            api.clone(),
            rules.clone(),
            gate.clone(),
        );
        let (model, prompt) = (args.model.clone(), args.prompt.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let input = item["input"].as_str().unwrap_or_default().to_string();
            let started = Instant::now();
            let call = client
                .post(format!("{api}/v1/chat/completions"))
                .bearer_auth(&key)
                .header("x-vigil-cache", "off")
                .header("x-vigil-tags", "experiment")
                .json(&json!({"model": model, "messages": [{"role": "user", "content": prompt.replace("{input}", &input)}]}))
                .send()
                .await;
            let (output, error) = match call {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => (v["choices"][0]["message"]["content"].as_str().map(str::to_string), None),
                    Err(e) => (None, Some(format!("unreadable answer: {e}"))),
                },
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (None, Some(format!("{status}: {}", body["error"]["message"].as_str().unwrap_or(""))))
                }
                Err(e) => (None, Some(e.to_string())),
            };
            ExperimentResult {
                item_id: item["id"].as_i64().unwrap_or(0),
                verdicts: experiment::verdicts(&rules, &input, output.as_deref(), started.elapsed().as_secs_f64() * 1000.0),
                output,
                error,
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            }
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "run-{}",
            vigil_model::format_rfc3339_nanos(vigil_model::now_unix_nanos())
        )
    });
    let stored = client
        .post(format!("{api}/api/v1/experiments"))
        .bearer_auth(&key)
        .json(&json!({"dataset": args.dataset, "name": name, "model": args.model, "prompt": args.prompt, "results": results}))
        .send()
        .await?;
    let status = stored.status();
    let stored: Value = stored.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "storing the run failed: {status}: {}",
            stored["error"]["message"].as_str().unwrap_or("")
        );
    }
    let run_id = stored["id"].as_str().unwrap_or_default().to_string();
    println!(
        "run {run_id} ({name}): {} items, model {}",
        results.len(),
        args.model
    );
    println!("{:<28} {:>8} {:>8}", "evaluator", "passed", "rate");
    for (e, s) in stored["summary"]["evaluators"]
        .as_object()
        .into_iter()
        .flatten()
    {
        println!(
            "{:<28} {:>4}/{:<3} {:>7.1}%",
            e,
            s["passed"],
            s["total"],
            s["pass_rate"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    let errors = stored["summary"]["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        println!("{errors} items got no answer (they fail every evaluator)");
    }
    let Some(baseline) = &baseline_id else {
        return Ok(ExitCode::SUCCESS);
    };
    let cmp = get(
        &client,
        format!(
            "{api}/api/v1/experiments/compare?base={}&run={run_id}&threshold={}&alpha={}",
            url_encode(baseline),
            args.threshold,
            args.alpha
        ),
        &key,
    )
    .await?;
    let comparison: Comparison =
        serde_json::from_value(cmp["comparison"].clone()).context("unreadable comparison")?;
    println!();
    println!(
        "against {} ({}):",
        cmp["base"]["name"].as_str().unwrap_or(baseline),
        cmp["base"]["id"].as_str().unwrap_or("")
    );
    println!(
        "{:<28} {:>7} {:>7} {:>8} {:>17} {:>9}  verdict",
        "evaluator", "base", "run", "delta", "95% CI", "p"
    );
    for d in &comparison.deltas {
        println!(
            "{:<28} {:>6.1}% {:>6.1}% {:>+7.1}  [{:>+6.1}, {:>+6.1}] {:>9.4}  {}",
            d.evaluator,
            d.base_rate * 100.0,
            d.run_rate * 100.0,
            d.delta * 100.0,
            d.ci95.0 * 100.0,
            d.ci95.1 * 100.0,
            d.p_value,
            if d.regressed { "REGRESSED" } else { "ok" }
        );
    }
    if let Some(path) = &args.junit {
        std::fs::write(
            path,
            experiment::junit(&format!("vigil eval {}", args.dataset), &comparison),
        )
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if comparison.regressed {
        eprintln!("regression: at least one evaluator's pass rate fell significantly");
        if args.fail_on_regression {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
