//! `vigil traces`, `vigil trace ID`, `vigil models`: the query API in the terminal.

use std::collections::HashMap;
use std::process::ExitCode;

use vigil_api::query_api::TraceListParams;
use vigil_api::Caller;
use vigil_ingest::normalize::events::merge_log_events;
use vigil_model::{format_rfc3339_nanos, Span, SpanId, SpanStatus, TraceId};
use vigil_store::{TraceRow, TraceStore};

use crate::cli::{ModelsArgs, TraceArgs, TracesArgs};
use crate::config::Settings;

pub async fn traces(settings: Settings, a: TracesArgs) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let project_id = super::project_id(&store, a.project.as_deref()).await?;
    let params = TraceListParams {
        from: a.from,
        to: a.to,
        service: a.service,
        environment: a.environment,
        agent: a.agent,
        model: a.model,
        provider: a.provider,
        tool: a.tool,
        status: a.status,
        flags: a.flags,
        min_duration_ms: a.min_duration_ms,
        min_cost_usd: a.min_cost_usd,
        session: a.session,
        user: a.user,
        q: a.q,
        sort: a.sort,
        order: a.order,
        limit: Some(a.limit),
        cursor: None,
    };
    let caller = Caller {
        project_id,
        key: None,
    };
    let query = params
        .into_query(&caller)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let page = store.find_traces(&query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.traces.is_empty() {
        println!("no traces match (see `vigil demo` for sample data, or point an OTLP exporter at :4318)");
        return Ok(());
    }
    println!(
        "{:<32}  {:<24}  {:<13}  {:<19}  {:>9}  {:>5}  {:>7}  {:>10}  {:<6}  FLAGS",
        "TRACE", "ROOT", "AGENT", "START (UTC)", "DURATION", "SPANS", "TOKENS", "COST", "STATUS"
    );
    for t in &page.traces {
        println!(
            "{:<32}  {:<24}  {:<13}  {:<19}  {:>9}  {:>5}  {:>7}  {:>10}  {:<6}  {}",
            t.trace_id,
            clip(&t.root_name, 24),
            clip(t.agent_name.as_deref().unwrap_or("-"), 13),
            short_time(t.start_time),
            ms(t.duration_ms),
            t.span_count,
            t.total_tokens,
            cost(t.cost_usd),
            t.status.as_str(),
            t.flags
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if page.next_cursor.is_some() {
        println!("… more traces: raise --limit or narrow the filters");
    }
    Ok(())
}

pub async fn trace(settings: Settings, a: TraceArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(&settings)?;
    let project_id = super::project_id(&store, a.project.as_deref()).await?;
    let Ok(trace_id) = TraceId::from_hex(a.trace_id.trim()) else {
        eprintln!(
            "error: `{}` is not a trace id (32 hex characters)",
            a.trace_id
        );
        return Ok(ExitCode::from(2));
    };
    let Some(mut detail) = store.get_trace(&project_id, trace_id).await? else {
        eprintln!("error: trace `{trace_id}` not found");
        return Ok(ExitCode::FAILURE);
    };
    for span in &mut detail.spans {
        merge_log_events(span, &detail.log_events);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print!("{}", render_tree(&detail.trace, &detail.spans));
    }
    Ok(ExitCode::SUCCESS)
}

const BAR: usize = 28;

/// The span tree with latency bars on the trace's time axis, tokens, cost and flags.
pub fn render_tree(t: &TraceRow, spans: &[Span]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "trace {}  {}\n  {} · {} · {} · {} spans · {} tokens · {} · {} · {}\n\n",
        t.trace_id,
        t.root_name,
        t.service_name.as_deref().unwrap_or("-"),
        t.environment.as_deref().unwrap_or("-"),
        short_time(t.start_time),
        t.span_count,
        t.total_tokens,
        cost(t.cost_usd),
        ms(t.duration_ms),
        t.status.as_str()
    ));
    let parents: HashMap<SpanId, Option<SpanId>> = spans
        .iter()
        .map(|s| (s.span_id, s.parent_span_id))
        .collect();
    let depth = |s: &Span| {
        let mut d = 0;
        let mut cur = s.parent_span_id;
        while let Some(p) = cur {
            match parents.get(&p) {
                Some(next) if d < 64 => {
                    d += 1;
                    cur = *next;
                }
                _ => break,
            }
        }
        d
    };
    let total = (t.end_time - t.start_time).max(1) as f64;
    // The slowest *step*: spans that have children only add up the time of their steps.
    let has_children: std::collections::HashSet<SpanId> =
        spans.iter().filter_map(|s| s.parent_span_id).collect();
    let slowest = spans
        .iter()
        .filter(|s| !has_children.contains(&s.span_id))
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
        .map(|s| s.span_id);
    let priciest = spans
        .iter()
        .filter(|s| s.cost_usd.is_some())
        .max_by(|a, b| {
            a.cost_usd
                .unwrap_or(0.0)
                .total_cmp(&b.cost_usd.unwrap_or(0.0))
        })
        .map(|s| s.span_id);
    for s in spans {
        let d = depth(s);
        let label = format!("{}{}", "  ".repeat(d), s.name);
        let from = (((s.start_time - t.start_time) as f64 / total) * BAR as f64).floor() as usize;
        let width =
            ((((s.end_time - s.start_time) as f64) / total * BAR as f64).ceil() as usize).max(1);
        let from = from.min(BAR - 1);
        let width = width.min(BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(width),
            " ".repeat(BAR - from - width)
        );
        let mut extra = Vec::new();
        if let Some(m) = &s.model {
            extra.push(m.clone());
        }
        if s.input_tokens.is_some() || s.output_tokens.is_some() {
            extra.push(format!(
                "{}→{} tok",
                s.input_tokens.unwrap_or(0),
                s.output_tokens.unwrap_or(0)
            ));
        }
        if let Some(c) = s.cost_usd {
            extra.push(cost(Some(c)));
        }
        if s.status == SpanStatus::Error {
            extra.push(format!(
                "ERROR {}",
                s.error_message.as_deref().unwrap_or("")
            ));
        }
        if Some(s.span_id) == slowest {
            extra.push("◀ slowest".into());
        }
        if Some(s.span_id) == priciest && spans.len() > 1 {
            extra.push("◀ most expensive".into());
        }
        out.push_str(&format!(
            "  {:<40} {:<9} │{bar}│ {:>9}  {}\n",
            clip(&label, 40),
            s.kind.as_str(),
            ms(s.duration_ms),
            extra.join("  ")
        ));
        for f in &s.flags {
            out.push_str(&format!(
                "  {:<40} ⚑ {}: {}\n",
                "",
                f.name.as_str(),
                f.reason
            ));
        }
    }
    out
}

pub async fn models(settings: Settings, a: ModelsArgs) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let project_id = match &a.project {
        Some(p) => Some(super::project_id(&store, Some(p)).await?),
        None => None,
    };
    let prices = super::price_table(&settings)?;
    let rows: Vec<_> = store
        .model_usage(project_id.as_ref(), 0)
        .await?
        .into_iter()
        .filter(|r| !a.unpriced || r.unpriced_count > 0)
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "{}",
            if a.unpriced {
                "every model seen has a price"
            } else {
                "no LLM spans stored yet"
            }
        );
        return Ok(());
    }
    println!(
        "{:<40}  {:<14}  {:>7}  {:>10}  {:>10}  {:>11}  PRICE ($/1M in, out; table of {})",
        "MODEL", "PROVIDER", "SPANS", "IN TOK", "OUT TOK", "COST", prices.as_of
    );
    for r in &rows {
        let price = match prices.lookup(&r.model) {
            Some(p) => format!("{} / {} (as `{}`)", p.input, p.output, p.name),
            None => "UNPRICED".into(),
        };
        println!(
            "{:<40}  {:<14}  {:>7}  {:>10}  {:>10}  {:>11}  {}",
            clip(&r.model, 40),
            r.provider.as_deref().unwrap_or("-"),
            r.span_count,
            r.input_tokens,
            r.output_tokens,
            cost(r.cost_usd),
            price
        );
    }
    if rows.iter().any(|r| r.unpriced_count > 0) {
        println!("\nTo price a model, add to vigil.toml (USD per million tokens):\n\n  [[prices]]\n  name = \"my-model\"\n  input = 0.50\n  output = 1.50\n");
    }
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn cost(c: Option<f64>) -> String {
    match c {
        Some(c) if c >= 0.01 => format!("${c:.2}"),
        Some(c) => format!("${c:.5}"),
        None => "unpriced".into(),
    }
}

fn short_time(ns: i64) -> String {
    let s = format_rfc3339_nanos(ns);
    s.get(..19).map(|x| x.replace('T', " ")).unwrap_or(s)
}
