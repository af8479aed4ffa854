//! The dashboard: LLM traffic, cost, tokens, latency percentiles, error and flagged-tool-failure
//! rates over time, split by a dimension; the costliest traces, the slowest steps and the most
//! failing tools. Everything comes from the per-minute rollups, so it stays fast at any volume.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_api::AppState;
use vigil_model::SpanKind;
use vigil_store::{
    MetricsDimension, MetricsPoint, MetricsQuery, MetricsResult, TraceQuery, TraceSortField,
};

use super::RangeParams;
use crate::charts::{line_chart, Series};
use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::{self, Viewer};

/// Groups drawn as their own line; the rest are summed into "other".
const TOP_GROUPS: usize = 6;

const SPLITS: &[(&str, &str, MetricsDimension)] = &[
    ("model", "Model", MetricsDimension::Model),
    ("provider", "Provider", MetricsDimension::Provider),
    ("agent", "Agent", MetricsDimension::Agent),
    ("environment", "Environment", MetricsDimension::Environment),
    ("service", "Service", MetricsDimension::Service),
];

#[derive(Deserialize, Default)]
pub struct DashQuery {
    #[serde(flatten)]
    range: RangeParams,
    split: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<DashQuery>,
) -> Response {
    let (range, range_error) = q.range.resolve("24h");
    let mut errors: Vec<String> = range_error.into_iter().collect();
    let split_key = q.split.as_deref().unwrap_or("model");
    let split = SPLITS
        .iter()
        .find(|(k, _, _)| *k == split_key)
        .unwrap_or(&SPLITS[0]);
    let (from, to) = range.bounds();
    // About 48 points per chart, in whole minutes.
    let bucket = ((to - from) / 1_000_000_000 / 48 / 60).max(1) * 60;
    let base = MetricsQuery {
        project_id: v.project.clone(),
        start_time_min: from,
        start_time_max: to,
        bucket_seconds: bucket,
        ..Default::default()
    };
    let metrics = |kind: Option<SpanKind>, group_by: Option<MetricsDimension>| {
        let q = MetricsQuery {
            kind,
            group_by,
            ..base.clone()
        };
        let store = state.store.clone();
        async move { store.metrics(&q).await }
    };
    let mut get = |r: vigil_store::Result<MetricsResult>| match r {
        Ok(m) => Some(m),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let llm_split = get(metrics(Some(SpanKind::Llm), Some(split.2)).await);
    let llm_all = get(metrics(Some(SpanKind::Llm), None).await);
    let tool_all = get(metrics(Some(SpanKind::Tool), None).await);
    let by_tool = get(metrics(Some(SpanKind::Tool), Some(MetricsDimension::Tool)).await);
    let by_model = get(metrics(Some(SpanKind::Llm), Some(MetricsDimension::Model)).await);
    let costly = state
        .store
        .find_traces(&TraceQuery {
            start_time_min: Some(from),
            start_time_max: Some(to),
            sort: TraceSortField::Cost,
            descending: true,
            limit: 10,
            ..TraceQuery::new(v.project.clone())
        })
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();

    let buckets: Vec<i64> = {
        let step = bucket * 1_000_000_000;
        let first = from.div_euclid(step) * step;
        (0..)
            .map(|i| first + i * step)
            .take_while(|t| *t <= to)
            .take(2000)
            .collect()
    };
    let llm_total = llm_all.as_ref().and_then(|m| m.totals.first().cloned());
    let tool_total = tool_all.as_ref().and_then(|m| m.totals.first().cloned());
    let nothing = llm_total.is_none() && tool_total.is_none();
    let split_href = |k: &str| {
        let mut pairs: Vec<(&str, String)> = range.pairs();
        pairs.push(("split", k.to_string()));
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (*a, b.as_str())).collect();
        format!("/ui/dashboard{}", layout::query(&borrowed))
    };
    let split_links = html! {
        span.seg {
            "Split by "
            @for (k, label, _) in SPLITS {
                a class={ @if *k == split.0 { "on" } } href=(split_href(k)) { (label) }
            }
        }
    };
    let body = html! {
        div.page-head {
            h1 { "Dashboard" }
            form.filters.inline-filters method="get" action="/ui/dashboard" {
                (range.picker())
                input type="hidden" name="split" value=(split.0);
                button.primary type="submit" { "Apply" }
                (split_links)
            }
        }
        @for e in &errors { (layout::alert(e)) }
        @if nothing {
            div.empty {
                p { "No LLM or tool spans in this time range." }
                p { a href="/ui/dashboard?range=all" { "Show all time" } " · " a href="/ui/traces" { "Traces" } }
            }
        } @else {
            (tiles(llm_total.as_ref(), tool_total.as_ref()))
            div.charts {
                @if let Some(m) = &llm_split {
                    (line_chart(&format!("LLM calls by {}", split.1.to_lowercase()), &grouped(m, &buckets, Stat::Count), from, to, |v| fmt::count(v.round() as i64)))
                    (line_chart(&format!("Cost by {}", split.1.to_lowercase()), &grouped(m, &buckets, Stat::Cost), from, to, fmt::usd))
                    (line_chart(&format!("Tokens by {}", split.1.to_lowercase()), &grouped(m, &buckets, Stat::Tokens), from, to, |v| if v == 0.0 { "0".into() } else { fmt::tokens(v.round() as i64) }))
                    (line_chart(&format!("LLM error rate by {}", split.1.to_lowercase()), &grouped(m, &buckets, Stat::ErrorRate), from, to, fmt::percent))
                }
                @if let Some(m) = &llm_all {
                    (line_chart("LLM latency p50 / p95 / p99", &percentiles(m, &buckets), from, to, fmt::duration_ms))
                }
                @if let Some(m) = &tool_all {
                    (line_chart("Tool failure rate (flagged silent failures, errors)", &tool_rates(m, &buckets), from, to, fmt::percent))
                }
            }
            div.panels {
                section.card {
                    h3 { "Most expensive traces" }
                    @if let Some(page) = &costly {
                        table.list.compact data-list {
                            thead { tr { th { "Trace" } th { "Agent" } th.num { "Tokens" } th.num { "Cost" } } }
                            tbody {
                                @for t in page.traces.iter().filter(|t| t.cost_usd.is_some()) {
                                    @let href = format!("/ui/traces/{}", t.trace_id.to_hex());
                                    tr data-href=(href) {
                                        td.name { a href=(href) { (t.root_name) } div.sub { (fmt::ago(t.start_time)) } }
                                        td { (t.agent_name.as_deref().unwrap_or("—")) }
                                        td.num { (fmt::tokens(t.total_tokens)) }
                                        td.num { (fmt::cost(t.cost_usd)) }
                                    }
                                }
                            }
                        }
                    }
                }
                section.card {
                    h3 { "Slowest steps " span.muted { "(p95)" } }
                    (slowest_steps(by_model.as_ref(), by_tool.as_ref()))
                }
                section.card {
                    h3 { "Most failing tools" }
                    (failing_tools(by_tool.as_ref()))
                }
            }
        }
    };
    layout::page("Dashboard", &v, Nav::Dashboard, body)
}

fn tiles(llm: Option<&MetricsPoint>, tool: Option<&MetricsPoint>) -> Markup {
    html! {
        div.tiles.big {
            @if let Some(l) = llm {
                div.tile { div.v { (fmt::count(l.count)) } div.l { "LLM calls" } }
                div.tile { div.v { (fmt::cost(l.cost_usd)) } div.l { "cost" @if l.unpriced_count > 0 { " (" (l.unpriced_count) " unpriced calls)" } } }
                div.tile { div.v { (fmt::tokens(l.input_tokens + l.output_tokens)) } div.l { "tokens" } }
                div.tile { div.v { (l.latency_p95_ms.map(fmt::duration_ms).unwrap_or_else(|| "—".into())) } div.l { "p95 LLM latency" } }
                div.tile class={ @if l.error_rate > 0.0 { "bad" } } { div.v { (fmt::percent(l.error_rate)) } div.l { "LLM error rate" } }
            }
            @if let Some(t) = tool {
                div.tile class={ @if t.flagged_count > 0 { "bad" } } {
                    div.v { (fmt::percent(t.flagged_rate)) }
                    div.l { "silent tool failures (" (fmt::count(t.flagged_count)) " of " (fmt::count(t.count)) " tool calls)" }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Stat {
    Count,
    Cost,
    Tokens,
    ErrorRate,
}

/// One line per top group (by call count), the rest summed into "other".
fn grouped(m: &MetricsResult, buckets: &[i64], stat: Stat) -> Vec<Series> {
    let mut order: Vec<&MetricsPoint> = m.totals.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.count));
    let top: Vec<String> = order
        .iter()
        .take(TOP_GROUPS)
        .map(|p| p.group.clone().unwrap_or_default())
        .collect();
    let has_other = order.len() > TOP_GROUPS;
    // (group, bucket) → (count, errors, cost, tokens)
    let mut acc: BTreeMap<(String, i64), (i64, i64, f64, i64)> = BTreeMap::new();
    for p in &m.series {
        let g = p.group.clone().unwrap_or_default();
        let g = if top.contains(&g) {
            g
        } else {
            "other".to_string()
        };
        let e = acc.entry((g, p.bucket_start.unwrap_or(0))).or_default();
        e.0 += p.count;
        e.1 += p.error_count;
        e.2 += p.cost_usd.unwrap_or(0.0);
        e.3 += p.input_tokens + p.output_tokens;
    }
    let mut names: Vec<String> = top;
    if has_other {
        names.push("other".into());
    }
    names
        .into_iter()
        .map(|g| Series {
            points: buckets
                .iter()
                .map(|b| {
                    let e = acc.get(&(g.clone(), *b));
                    let v = match stat {
                        Stat::Count => Some(e.map_or(0.0, |e| e.0 as f64)),
                        Stat::Cost => Some(e.map_or(0.0, |e| e.2)),
                        Stat::Tokens => Some(e.map_or(0.0, |e| e.3 as f64)),
                        Stat::ErrorRate => e.filter(|e| e.0 > 0).map(|e| e.1 as f64 / e.0 as f64),
                    };
                    (*b, v)
                })
                .collect(),
            name: if g.is_empty() { "(none)".into() } else { g },
        })
        .collect()
}

fn by_bucket(m: &MetricsResult) -> BTreeMap<i64, &MetricsPoint> {
    m.series
        .iter()
        .map(|p| (p.bucket_start.unwrap_or(0), p))
        .collect()
}

fn percentiles(m: &MetricsResult, buckets: &[i64]) -> Vec<Series> {
    let at = by_bucket(m);
    let line = |name: &str, f: fn(&MetricsPoint) -> Option<f64>| Series {
        name: name.into(),
        points: buckets
            .iter()
            .map(|b| (*b, at.get(b).and_then(|p| f(p))))
            .collect(),
    };
    vec![
        line("p50", |p| p.latency_p50_ms),
        line("p95", |p| p.latency_p95_ms),
        line("p99", |p| p.latency_p99_ms),
    ]
}

fn tool_rates(m: &MetricsResult, buckets: &[i64]) -> Vec<Series> {
    let at = by_bucket(m);
    let line = |name: &str, f: fn(&MetricsPoint) -> f64| Series {
        name: name.into(),
        points: buckets
            .iter()
            .map(|b| (*b, at.get(b).map(|p| f(p))))
            .collect(),
    };
    vec![
        line("silent failures (flagged)", |p| p.flagged_rate),
        line("errors", |p| p.error_rate),
    ]
}

fn slowest_steps(by_model: Option<&MetricsResult>, by_tool: Option<&MetricsResult>) -> Markup {
    let mut steps: Vec<(&str, String, &MetricsPoint)> = Vec::new();
    for (kind, m) in [("LLM", by_model), ("TOOL", by_tool)] {
        for p in m.map(|m| m.totals.as_slice()).unwrap_or_default() {
            steps.push((kind, p.group.clone().unwrap_or_default(), p));
        }
    }
    steps.sort_by(|a, b| {
        b.2.latency_p95_ms
            .unwrap_or(0.0)
            .total_cmp(&a.2.latency_p95_ms.unwrap_or(0.0))
    });
    html! {
        @if steps.is_empty() { p.muted { "No LLM or tool spans." } } @else {
            table.list.compact {
                thead { tr { th { "Step" } th.num { "Calls" } th.num { "p50" } th.num { "p95" } th.num { "p99" } } }
                tbody {
                    @for (kind, name, p) in steps.iter().take(10) {
                        @let filter = if *kind == "LLM" { "model" } else { "tool" };
                        tr {
                            td.name { span class={ "kind k-" (if *kind == "LLM" { "llm" } else { "tool" }) } { (kind) } " "
                                a href={ "/ui/traces?sort=duration&" (filter) "=" (viewer::url_encode(name)) } { (name) } }
                            td.num { (fmt::count(p.count)) }
                            td.num { (p.latency_p50_ms.map(fmt::duration_ms).unwrap_or_default()) }
                            td.num { (p.latency_p95_ms.map(fmt::duration_ms).unwrap_or_default()) }
                            td.num { (p.latency_p99_ms.map(fmt::duration_ms).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

fn failing_tools(by_tool: Option<&MetricsResult>) -> Markup {
    let mut tools: Vec<&MetricsPoint> = by_tool
        .map(|m| m.totals.iter().collect())
        .unwrap_or_default();
    tools.retain(|p| p.flagged_count + p.error_count > 0);
    tools.sort_by_key(|p| std::cmp::Reverse(p.flagged_count + p.error_count));
    html! {
        @if tools.is_empty() { p.muted { "No tool failures in this range." } } @else {
            table.list.compact {
                thead { tr { th { "Tool" } th.num { "Calls" } th.num { "Silent failures" } th.num { "Errors" } th.num { "Failure rate" } } }
                tbody {
                    @for p in tools.iter().take(10) {
                        @let name = p.group.clone().unwrap_or_default();
                        tr {
                            td.name { a href={ "/ui/traces?flags=silent_tool_failure&tool=" (viewer::url_encode(&name)) } { code { (name) } } }
                            td.num { (fmt::count(p.count)) }
                            td.num { (fmt::count(p.flagged_count)) }
                            td.num { (fmt::count(p.error_count)) }
                            td.num { (fmt::percent((p.flagged_count + p.error_count) as f64 / p.count.max(1) as f64)) }
                        }
                    }
                }
            }
        }
    }
}
