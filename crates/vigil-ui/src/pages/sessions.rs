//! Sessions: the list with a breakdown by session length (does quality fall as conversations grow?)
//! and one session read as a conversation, turn by turn.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use vigil_api::AppState;
use vigil_model::{Span, SpanKind};
use vigil_store::{SessionLengthBucket, SessionQuery, TraceRow};

use super::RangeParams;
use crate::fmt;
use crate::layout::{self, Nav};
use crate::pages::trace::transcript;
use crate::viewer::{self, Viewer};
use vigil_api::params::non_empty;

const PAGE: usize = 50;
/// Turns whose conversation is shown inline; longer sessions link to the rest.
const TURNS_SHOWN: usize = 60;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(flatten)]
    range: RangeParams,
    user: Option<String>,
    environment: Option<String>,
    agent: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let (range, range_error) = q.range.resolve("7d");
    let mut errors: Vec<String> = range_error.into_iter().collect();
    let offset: usize = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let query = SessionQuery {
        project_id: v.project.clone(),
        start_time_min: range.from,
        start_time_max: range.to,
        user_id: non_empty(&q.user),
        environment: non_empty(&q.environment),
        agent_name: non_empty(&q.agent),
        limit: PAGE,
        offset,
    };
    let page = state
        .store
        .find_sessions(&query)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let lengths = state
        .store
        .session_length_breakdown(&v.project, range.from.unwrap_or(0))
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok()
        .unwrap_or_default();
    let base_pairs = {
        let mut p: Vec<(&str, String)> = range.pairs();
        for (k, val) in [
            ("user", &q.user),
            ("environment", &q.environment),
            ("agent", &q.agent),
        ] {
            p.push((k, val.clone().unwrap_or_default()));
        }
        p
    };
    let url_with_cursor = |cursor: &str| {
        let mut pairs: Vec<(&str, &str)> =
            base_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.push(("cursor", cursor));
        format!("/ui/sessions{}", layout::query(&pairs))
    };
    let body = html! {
        div.page-head { h1 { "Sessions" } }
        form.filters method="get" action="/ui/sessions" {
            div.row {
                (range.picker())
                input type="text" name="user" value=(q.user.as_deref().unwrap_or("")) placeholder="User id";
                input type="text" name="agent" value=(q.agent.as_deref().unwrap_or("")) placeholder="Agent";
                input type="text" name="environment" value=(q.environment.as_deref().unwrap_or("")) placeholder="Environment";
                button.primary type="submit" { "Apply" }
            }
        }
        @for e in &errors { (layout::alert(e)) }
        (length_breakdown(&lengths))
        @if let Some(page) = &page {
            @if page.sessions.is_empty() {
                div.empty {
                    p { "No sessions in this range." }
                    p.muted { "A session groups the turns (traces) of one conversation. Set " code { "session.id" } " (OpenInference) or " code { "gen_ai.conversation.id" } " on your spans to see them here." }
                }
            } @else {
                table.list data-list {
                    thead { tr {
                        th { "Session" } th { "User" } th { "Agents" } th.num { "Turns" } th.num { "Duration" }
                        th.num { "Tokens" } th.num { "Cost" } th.num { "Turns with errors" } th.num { "Flagged turns" } th.num { "Last activity" }
                    } }
                    tbody {
                        @for s in &page.sessions {
                            @let href = format!("/ui/sessions/{}", viewer::url_encode(&s.session_id));
                            tr data-href=(href) class={ @if s.error_count > 0 { "failed" } } {
                                td.name { a href=(href) { (s.session_id) } }
                                td { (s.user_id.as_deref().unwrap_or("—")) }
                                td { (s.agent_names.join(", ")) }
                                td.num { (s.turns) }
                                td.num { (fmt::duration_ms(s.duration_ms)) }
                                td.num { (fmt::tokens(s.total_tokens)) }
                                td.num { (fmt::cost(s.cost_usd)) }
                                td.num { @if s.error_count > 0 { span.bad { (s.error_count) } } @else { "0" } }
                                td.num { @if s.flagged_count > 0 { span.badge.flag { (s.flagged_count) } } @else { "0" } }
                                td.num title=(fmt::time(s.end_time)) { (fmt::ago(s.end_time)) }
                            }
                        }
                    }
                }
                nav.pager {
                    @if offset > 0 { a href=(url_with_cursor("")) { "← First page" } }
                    @if let Some(c) = &page.next_cursor { a.next href=(url_with_cursor(c)) rel="next" { "Next page →" } }
                }
            }
        }
    };
    layout::page("Sessions", &v, Nav::Sessions, body)
}

fn length_breakdown(buckets: &[SessionLengthBucket]) -> Markup {
    if buckets.is_empty() {
        return html! {};
    }
    html! {
        section.card.breakdown {
            h3 { "By session length" span.muted { " — does quality fall as conversations get longer?" } }
            table.list.compact {
                thead { tr {
                    th { "Length" } th.num { "Sessions" } th.num { "Turns" } th.num { "Turn error rate" }
                    th.num { "Flagged turn rate" } th.num { "Cost / session" } th.num { "Cost / turn" } th.num { "Tokens / turn" }
                } }
                tbody {
                    @for b in buckets {
                        @let turns = b.turns.max(1) as f64;
                        tr data-length=(b.length) {
                            td { (b.length) span.muted { (match b.length.as_str() { "short" => " (1–2 turns)", "medium" => " (3–6)", _ => " (7+)" }) } }
                            td.num { (fmt::count(b.sessions)) }
                            td.num { (fmt::count(b.turns)) }
                            td.num { (fmt::percent(b.error_turns as f64 / turns)) }
                            td.num { (fmt::percent(b.flagged_turns as f64 / turns)) }
                            td.num { (fmt::cost(b.cost_usd.map(|c| c / b.sessions.max(1) as f64))) }
                            td.num { (fmt::cost(b.cost_usd.map(|c| c / turns))) }
                            td.num { (fmt::tokens((b.tokens as f64 / turns).round() as i64)) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, v: Viewer, Path(id): Path<String>) -> Response {
    let detail = match state.store.get_session(&v.project, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return layout::error_page(StatusCode::NOT_FOUND, "No such session in this project.")
        }
        Err(e) => return layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let mut turns = Vec::new();
    for t in detail.traces.iter().take(TURNS_SHOWN) {
        let spans = match state.store.get_trace(&v.project, t.trace_id).await {
            Ok(Some(d)) => d.spans,
            _ => Vec::new(),
        };
        turns.push((t, conversation(&spans)));
    }
    let s = &detail.session;
    let body = html! {
        div.page-head {
            a.back href="/ui/sessions" data-back { "← Sessions" }
            h1 { "Session " code { (s.session_id) } }
            div.meta {
                @if let Some(u) = &s.user_id { span.kv { span.k { "User" } (u) } }
                @if !s.agent_names.is_empty() { span.kv { span.k { "Agents" } (s.agent_names.join(", ")) } }
                @if let Some(e) = &s.environment { span.kv { span.k { "Env" } (e) } }
                span.kv { span.k { "From" } (fmt::time(s.start_time)) " UTC" }
            }
            div.tiles {
                div.tile { div.v { (s.turns) } div.l { "turns" } }
                div.tile { div.v { (fmt::duration_ms(s.duration_ms)) } div.l { "duration" } }
                div.tile { div.v { (fmt::tokens(s.total_tokens)) } div.l { "tokens" } }
                div.tile { div.v { (fmt::cost(s.cost_usd)) } div.l { "cost" } }
                div.tile class={ @if s.error_count > 0 { "bad" } } { div.v { (s.error_count) } div.l { "turns with errors" } }
                div.tile { div.v { (s.flagged_count) } div.l { "flagged turns" } }
            }
        }
        ol.timeline data-list {
            @for (i, (t, convo)) in turns.iter().enumerate() {
                (turn(i + 1, t, convo))
            }
        }
        @if detail.traces.len() > TURNS_SHOWN {
            p.muted { "Showing the first " (TURNS_SHOWN) " of " (detail.traces.len()) " turns. "
                a href={ "/ui/traces?range=all&session=" (viewer::url_encode(&s.session_id)) } { "All turns as traces →" } }
        }
    };
    layout::page(
        &format!("Session {}", s.session_id),
        &v,
        Nav::Sessions,
        body,
    )
}

/// What a turn said: the user's last message going in, and the final answer coming out.
struct Conversation {
    user: Vec<vigil_model::Message>,
    answer: Vec<vigil_model::Message>,
    tools: Vec<String>,
}

fn conversation(spans: &[Span]) -> Conversation {
    let mut llm: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Llm).collect();
    llm.sort_by_key(|s| s.start_time);
    let user = llm
        .first()
        .and_then(|s| s.input_messages.iter().rev().find(|m| m.role == "user"))
        .cloned()
        .into_iter()
        .collect();
    let answer = llm
        .last()
        .map(|s| s.output_messages.clone())
        .unwrap_or_default();
    let tools = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Tool)
        .filter_map(|s| s.tool_name.clone())
        .collect();
    Conversation {
        user,
        answer,
        tools,
    }
}

fn turn(n: usize, t: &TraceRow, c: &Conversation) -> Markup {
    let href = format!("/ui/traces/{}", t.trace_id.to_hex());
    html! {
        li.turn data-href=(href) class={ @if t.status.as_str() == "error" { "error " } @if !t.flags.is_empty() { "flagged" } } {
            div.turn-head {
                span.n { "Turn " (n) }
                (layout::status_dot(t.status.as_str()))
                a href=(href) { (t.root_name) }
                span.muted { (fmt::time(t.start_time)) }
                span.num { (fmt::duration_ms(t.duration_ms)) " · " (fmt::tokens(t.total_tokens)) " tok · " (fmt::cost(t.cost_usd)) }
                (layout::flag_badges(&t.flags))
            }
            @if !c.user.is_empty() { (transcript(&c.user)) }
            @if !c.tools.is_empty() { div.tools-used.muted { "tools: " (c.tools.join(" → ")) } }
            @if !c.answer.is_empty() { (transcript(&c.answer)) }
            @if c.user.is_empty() && c.answer.is_empty() { p.muted { "No messages recorded for this turn (content capture may be off)." } }
        }
    }
}
