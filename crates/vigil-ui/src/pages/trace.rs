//! One trace: a waterfall of its span tree on a shared time axis, and the selected span in detail
//! (chat transcript, tool call, model, errors, flags, raw attributes). `?span=ID` deep-links a
//! span; `&partial=detail` returns only the detail panel, which the script swaps in on click.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_api::AppState;
use vigil_ingest::normalize::events::merge_log_events;
use vigil_model::{Message, Span, SpanId, SpanKind, SpanStatus, TraceId};
use vigil_store::{ScoreRow, TraceDetail};

use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::{self, Viewer};

#[derive(Deserialize, Default)]
pub struct TraceQuery {
    span: Option<String>,
    partial: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<TraceQuery>,
) -> Response {
    let Ok(trace_id) = TraceId::from_hex(&id) else {
        return layout::error_page(
            StatusCode::BAD_REQUEST,
            "that is not a trace id (32 hex characters)",
        );
    };
    let mut detail = match state.store.get_trace(&v.project, trace_id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return layout::error_page(
                StatusCode::NOT_FOUND,
                "No such trace in this project. It may have been removed by retention, or belong to another project.",
            )
        }
        Err(e) => return layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    for span in &mut detail.spans {
        merge_log_events(span, &detail.log_events);
    }
    // Verdicts on this trace and its spans (evaluators, humans, end users); a failed read only
    // leaves them out.
    let scores = state
        .store
        .list_scores(&v.project, Some(trace_id), None, 500)
        .await
        .unwrap_or_default();
    let marks = Marks::of(&detail.spans);
    let selected = q
        .span
        .as_deref()
        .and_then(|s| SpanId::from_hex(s).ok())
        .and_then(|s| detail.spans.iter().position(|x| x.span_id == s))
        .or_else(|| default_selection(&detail.spans))
        .unwrap_or(0);
    let trace_start = detail.trace.start_time;
    if q.partial.as_deref() == Some("detail") {
        let panel = detail
            .spans
            .get(selected)
            .map(|s| span_detail(s, trace_start, &marks, &scores))
            .unwrap_or_default();
        return Html(panel.into_string()).into_response();
    }
    let body = html! {
        (header(&detail))
        (verdicts_bar(&detail, &scores))
        div.trace-layout {
            section.waterfall-wrap { (waterfall(&detail, selected, &marks)) }
            aside #detail.detail {
                @if let Some(s) = detail.spans.get(selected) { (span_detail(s, trace_start, &marks, &scores)) }
            }
        }
    };
    layout::page(&detail.trace.root_name, &v, Nav::Traces, body)
}

/// The span shown first: a flagged or failed one if any (that is what the user came for), else the root.
fn default_selection(spans: &[Span]) -> Option<usize> {
    spans
        .iter()
        .position(|s| !s.flags.is_empty())
        .or_else(|| spans.iter().position(|s| s.status == SpanStatus::Error))
        .or((!spans.is_empty()).then_some(0))
}

/// The slowest step and the most expensive step of a trace.
struct Marks {
    slowest: Option<SpanId>,
    costliest: Option<SpanId>,
}

impl Marks {
    fn of(spans: &[Span]) -> Marks {
        // A step is a span doing work itself: not the root, not an agent or chain wrapping others.
        let steps = spans.iter().filter(|s| {
            s.parent_span_id.is_some() && !matches!(s.kind, SpanKind::Agent | SpanKind::Chain)
        });
        let slowest = steps
            .clone()
            .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
            .map(|s| s.span_id);
        let costliest = spans
            .iter()
            .filter(|s| s.cost_usd.is_some_and(|c| c > 0.0))
            .max_by(|a, b| {
                a.cost_usd
                    .unwrap_or(0.0)
                    .total_cmp(&b.cost_usd.unwrap_or(0.0))
            })
            .map(|s| s.span_id);
        Marks { slowest, costliest }
    }
}

fn header(d: &TraceDetail) -> Markup {
    let t = &d.trace;
    html! {
        div.page-head {
            a.back href="/ui/traces" data-back { "← Traces" }
            h1 { (layout::status_dot(t.status.as_str())) " " (t.root_name) }
            div.meta {
                span.kv { span.k { "Trace" } code { (t.trace_id.to_hex()) } }
                span.kv { span.k { "Started" } (fmt::time(t.start_time)) " UTC" }
                @if let Some(a) = &t.agent_name { span.kv { span.k { "Agent" } (a) } }
                @if let Some(s) = &t.service_name {
                    span.kv { span.k { "Service" } (s) @if let Some(v) = &t.service_version { " " span.muted { (v) } } }
                }
                @if let Some(e) = &t.environment { span.kv { span.k { "Env" } (e) } }
                @if let Some(s) = &t.session_id {
                    span.kv { span.k { "Session" } a href={ "/ui/sessions/" (viewer::url_encode(s)) } { (s) } }
                }
                @if let Some(u) = &t.user_id { span.kv { span.k { "User" } (u) } }
            }
            form.inline.add-dataset method="post" action="/ui/datasets/add" {
                input type="hidden" name="trace_id" value=(t.trace_id.to_hex());
                input type="text" name="dataset" placeholder="dataset name" required aria-label="Dataset";
                button type="submit" title="Add this trace's input and output as a dataset item" { "Add to dataset" }
            }
            div.tiles {
                div.tile { div.v { (fmt::duration_ms(t.duration_ms)) } div.l { "duration" } }
                div.tile { div.v { (t.span_count) } div.l { "spans" } }
                div.tile { div.v { (t.llm_count) } div.l { "LLM calls" } }
                div.tile { div.v { (fmt::tokens(t.total_tokens)) } div.l { "tokens (" (fmt::tokens(t.input_tokens)) " in / " (fmt::tokens(t.output_tokens)) " out)" } }
                div.tile { div.v { (fmt::cost(t.cost_usd)) } div.l { @if t.cost_usd.is_none() && t.llm_count > 0 { "unpriced model" } @else { "cost" } } }
                div.tile class={ @if t.error_count > 0 { "bad" } } { div.v { (t.error_count) } div.l { "errors" } }
            }
            @if !t.flags.is_empty() {
                div.flagbar {
                    @for f in &t.flags {
                        div { span.badge.flag { (layout::flag_label(*f)) } " " (layout::flag_explanation(*f)) }
                    }
                }
            }
        }
    }
}

pub fn kind_label(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Agent => "AGENT",
        SpanKind::Llm => "LLM",
        SpanKind::Tool => "TOOL",
        SpanKind::Retrieval => "RETR",
        SpanKind::Embedding => "EMB",
        SpanKind::Chain => "CHAIN",
        SpanKind::Guardrail => "GUARD",
        SpanKind::Other => "SPAN",
    }
}

fn waterfall(d: &TraceDetail, selected: usize, marks: &Marks) -> Markup {
    let start = d.trace.start_time;
    let total = (d.trace.end_time - start).max(1) as f64;
    let depth = depths(&d.spans);
    let trace_hex = d.trace.trace_id.to_hex();
    html! {
        table.waterfall data-list {
            thead {
                tr {
                    th { "Span" }
                    th.num { "Tokens" }
                    th.num { "Cost" }
                    th.num { "Duration" }
                    th.axis {
                        div.ticks {
                            @for i in 0..=4 {
                                span style={ "left:" (i * 25) "%" } { (fmt::duration_ms(total / 1e6 * f64::from(i) / 4.0)) }
                            }
                        }
                    }
                }
            }
            tbody {
                @for (i, s) in d.spans.iter().enumerate() {
                    @let left = (s.start_time - start).max(0) as f64 / total * 100.0;
                    @let width = ((s.end_time - s.start_time).max(0) as f64 / total * 100.0).max(0.3);
                    @let href = format!("/ui/traces/{}?span={}", trace_hex, s.span_id.to_hex());
                    @let tokens = s.input_tokens.unwrap_or(0) + s.output_tokens.unwrap_or(0);
                    tr.span-row data-href=(href) data-span=(s.span_id.to_hex())
                        class={ @if i == selected { "selected " } @if !s.flags.is_empty() { "flagged " } @if s.status == SpanStatus::Error { "error" } } {
                        td.name style={ "padding-left:" (0.6 + f64::from(depth[i]) * 1.1) "em" } {
                            span class={ "kind k-" (s.kind.as_str()) } { (kind_label(s.kind)) }
                            " "
                            a.span-link href=(href) { (s.name) }
                            @if let Some(m) = s.model.as_deref().or(s.tool_name.as_deref()) {
                                @if !s.name.contains(m) { span.sub { " " (m) } }
                            }
                            @if Some(s.span_id) == marks.slowest { span.mark.slow title="The slowest step of this trace" { "slowest" } }
                            @if Some(s.span_id) == marks.costliest { span.mark.costly title="The most expensive step of this trace" { "most expensive" } }
                            @for f in &s.flags { span.badge.flag title=(f.reason) { "⚑ " (layout::flag_label(f.name)) } }
                            @if s.status == SpanStatus::Error { span.badge.err { "error" } }
                        }
                        td.num { @if tokens > 0 { (fmt::tokens(tokens)) } }
                        td.num { @if s.cost_usd.is_some() { (fmt::cost(s.cost_usd)) } }
                        td.num { (fmt::duration_ms(s.duration_ms)) }
                        td.bar-cell {
                            div class={ "bar k-" (s.kind.as_str()) @if s.status == SpanStatus::Error { " err" } } style={ "left:" (format!("{left:.2}")) "%;width:" (format!("{width:.2}")) "%" } {}
                        }
                    }
                }
            }
        }
    }
}

/// Nesting depth of each span (spans are in tree order; orphans count as roots).
fn depths(spans: &[Span]) -> Vec<u16> {
    let mut by_id: HashMap<SpanId, u16> = HashMap::new();
    spans
        .iter()
        .map(|s| {
            let d = s
                .parent_span_id
                .and_then(|p| by_id.get(&p).copied())
                .map_or(0, |d| d.saturating_add(1).min(30));
            by_id.insert(s.span_id, d);
            d
        })
        .collect()
}

/// One verdict as a badge: its name, pass or fail (or its label), the reason on hover.
fn verdict_badge(x: &ScoreRow) -> Markup {
    let class = match x.passed {
        Some(true) => "badge ok",
        Some(false) => "badge bad",
        None => "badge",
    };
    let outcome = match (x.passed, &x.label, x.value) {
        (Some(true), _, _) => "pass".to_string(),
        (Some(false), _, _) => "fail".to_string(),
        (None, Some(l), _) => l.clone(),
        (None, None, Some(v)) => format!("{v}"),
        _ => "—".into(),
    };
    let title = format!(
        "{} ({}){}",
        x.reason.as_deref().unwrap_or(""),
        x.source.as_str(),
        x.source_id
            .as_deref()
            .filter(|_| x.source != vigil_store::ScoreSource::Evaluator)
            .map(|s| format!(", {s}"))
            .unwrap_or_default()
    );
    html! { span class=(class) title=(title) { (x.name) ": " (outcome) } }
}

/// The verdicts on the trace, failures first; span verdicts link to their span.
fn verdicts_bar(d: &TraceDetail, scores: &[ScoreRow]) -> Markup {
    if scores.is_empty() {
        return html! {};
    }
    let mut sorted: Vec<&ScoreRow> = scores.iter().collect();
    sorted.sort_by_key(|x| (x.passed != Some(false), x.span_id.is_some(), x.name.clone()));
    let failed = scores.iter().filter(|x| x.passed == Some(false)).count();
    let trace_hex = d.trace.trace_id.to_hex();
    html! {
        div.verdicts {
            span.k { "Verdicts" }
            " " span.muted { (scores.len()) " · " (failed) " failed" } " "
            @for x in sorted.iter().take(40) {
                @match x.span_id {
                    Some(span) => {
                        @let name = d.spans.iter().find(|s| s.span_id == span).map(|s| s.name.as_str()).unwrap_or("span");
                        a href={ "/ui/traces/" (trace_hex) "?span=" (span.to_hex()) } title={ "on " (name) } { (verdict_badge(x)) }
                    }
                    None => (verdict_badge(x)),
                }
            }
            @if sorted.len() > 40 { span.muted { " and " (sorted.len() - 40) " more" } }
        }
    }
}

fn span_detail(s: &Span, trace_start: i64, marks: &Marks, scores: &[ScoreRow]) -> Markup {
    let mut own: Vec<&ScoreRow> = scores
        .iter()
        .filter(|x| x.span_id == Some(s.span_id))
        .collect();
    own.sort_by_key(|x| (x.passed != Some(false), x.name.clone()));
    html! {
        div.span-detail data-span=(s.span_id.to_hex()) {
            h2 {
                span class={ "kind k-" (s.kind.as_str()) } { (kind_label(s.kind)) } " " (s.name)
            }
            @if !own.is_empty() {
                div.verdicts {
                    span.k { "Verdicts" } " "
                    @for x in &own { (verdict_badge(x)) }
                }
            }
            div.meta {
                span.kv { span.k { "Status" } (layout::status_dot(s.status.as_str())) " " (s.status.as_str()) }
                span.kv { span.k { "Starts at" } "+" (fmt::duration_ms((s.start_time - trace_start) as f64 / 1e6)) }
                span.kv { span.k { "Duration" } (fmt::duration_ms(s.duration_ms)) }
                @if let Some(t) = s.time_to_first_token_ms { span.kv { span.k { "First token" } (fmt::duration_ms(t)) } }
                @if Some(s.span_id) == marks.slowest { span.mark.slow { "slowest step" } }
                @if Some(s.span_id) == marks.costliest { span.mark.costly { "most expensive step" } }
            }
            @if !s.flags.is_empty() {
                div.flag-explain {
                    @for f in &s.flags {
                        div {
                            strong { "⚑ " (layout::flag_label(f.name)) }
                            p { (f.reason) }
                            p.muted { (layout::flag_explanation(f.name)) }
                        }
                    }
                }
            }
            @if let Some(e) = &s.error_message { div.error-box { strong { "Error" } pre { (e) } } }
            @if s.model.is_some() || s.provider.is_some() {
                dl.facts {
                    @if let Some(m) = &s.model { dt { "Model" } dd { (m) } }
                    @if let Some(m) = &s.response_model { @if Some(m) != s.model.as_ref() { dt { "Response model" } dd { (m) } } }
                    @if let Some(p) = &s.provider { dt { "Provider" } dd { (p) } }
                    @if !s.finish_reasons.is_empty() { dt { "Finish reason" } dd { (s.finish_reasons.join(", ")) } }
                    dt { "Tokens" }
                    dd {
                        (s.input_tokens.map(fmt::count).unwrap_or_else(|| "—".into())) " in · "
                        (s.output_tokens.map(fmt::count).unwrap_or_else(|| "—".into())) " out"
                        @if let Some(c) = s.cached_input_tokens { " · " (fmt::count(c)) " cached" }
                        @if let Some(r) = s.reasoning_tokens { " · " (fmt::count(r)) " reasoning" }
                    }
                    dt { "Cost" }
                    dd { @if s.cost_usd.is_none() && s.model.is_some() { "unpriced — " a href="/ui/models" { "add a price" } } @else { (fmt::cost(s.cost_usd)) } }
                    @if !s.declared_tools.is_empty() { dt { "Declared tools" } dd { (s.declared_tools.join(", ")) } }
                }
            }
            @if s.kind == SpanKind::Tool || s.tool_name.is_some() {
                section.tool {
                    h3 { "Tool call" }
                    dl.facts {
                        @if let Some(t) = &s.tool_name { dt { "Tool" } dd { code { (t) } } }
                        @if let Some(id) = &s.tool_call_id { dt { "Call id" } dd { code { (id) } } }
                    }
                    h4 { "Arguments" }
                    @if let Some(a) = &s.tool_arguments { pre.code.args { (fmt::json_pretty(a)) } } @else { p.muted { "none recorded" } }
                    h4 { "Result" }
                    @if let Some(r) = &s.tool_result { pre.code.result { (fmt::json_pretty(r)) } } @else { p.muted { "none recorded" } }
                }
            }
            @if !s.input_messages.is_empty() {
                section { h3 { "Input" } (transcript(&s.input_messages)) }
            }
            @if !s.output_messages.is_empty() {
                section { h3 { "Output" } (transcript(&s.output_messages)) }
            }
            @if !s.events.is_empty() {
                details.raw {
                    summary { "Events (" (s.events.len()) ")" }
                    ul.events { @for e in &s.events { li { code { (e.name) } " +" (fmt::duration_ms((e.time - trace_start) as f64 / 1e6)) } } }
                }
            }
            details.raw open[s.input_messages.is_empty() && s.output_messages.is_empty() && s.tool_name.is_none()] {
                summary { "Attributes (" (s.attributes.len()) ")" }
                table.attrs {
                    @for (k, v) in &s.attributes {
                        tr { th { code { (k) } } td { pre { (fmt::json_pretty(v)) } } }
                    }
                    @for (k, v) in &s.resource_attributes {
                        tr.resource { th { code { (k) } } td { pre { (fmt::json_pretty(v)) } } }
                    }
                }
                p.muted.small { "Span " code { (s.span_id.to_hex()) } @if let Some(sc) = &s.scope_name { " · instrumentation " code { (sc) } } }
            }
        }
    }
}

pub fn transcript(messages: &[Message]) -> Markup {
    html! {
        div.transcript {
            @for m in messages {
                div class={ "msg role-" (role_class(&m.role)) } {
                    div.role {
                        (m.role)
                        @if let Some(n) = &m.name { " · " (n) }
                        @if let Some(id) = &m.tool_call_id { span.muted { " answers " code { (id) } } }
                    }
                    @if let Some(c) = &m.content { @if !c.is_empty() { div.content { (c) } } }
                    @for tc in &m.tool_calls {
                        div.toolcall {
                            div { "→ calls " code.tool-name { (tc.name) } @if let Some(id) = &tc.id { span.muted { " " (id) } } }
                            pre.code.args { (fmt::json_pretty(&tc.arguments)) }
                        }
                    }
                }
            }
        }
    }
}

fn role_class(role: &str) -> &'static str {
    match role {
        "system" | "developer" => "system",
        "user" | "human" => "user",
        "assistant" | "model" | "ai" => "assistant",
        "tool" | "function" | "ipython" => "tool",
        _ => "other",
    }
}
