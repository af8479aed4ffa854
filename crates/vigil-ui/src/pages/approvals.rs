//! Approvals: tool calls a policy sent to a human. Pending ones first, with the call's arguments,
//! the rule and its reason, a link to the agent's trace, and Approve / Deny with a comment.
//! Deciding needs a signed-in user, or a key with the `approve` scope.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use vigil_api::AppState;
use vigil_store::{Approval, ApprovalStatus, Scope};

use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::Viewer;

fn row(a: &Approval, can_decide: bool) -> maud::Markup {
    let pending = a.status == ApprovalStatus::Pending;
    html! {
        article.approval class={ "status-" (a.status.as_str()) } {
            header {
                span class={ "badge " @if pending { "warn" } @else if a.status == ApprovalStatus::Approved { "ok" } @else { "bad" } } { (a.status.as_str()) }
                strong { code { (a.tool) } }
                @if let Some(agent) = &a.agent { span.muted { " by " (agent) } }
                @if let Some(env) = &a.environment { span.badge { (env) } }
                span.spacer {}
                span.muted.small title=(fmt::time(a.created_ns)) { "asked " (fmt::ago(a.created_ns)) }
            }
            p { (a.reason) @if let Some(r) = &a.rule { span.muted { " — rule " code { (r) } } } }
            pre.json { (fmt::json_pretty(&a.arguments)) }
            p.small.muted {
                @if let Some(t) = &a.trace_id {
                    a href={ "/ui/traces/" (t.to_hex()) "?span=" (a.span_id.to_hex()) } { "Open the agent's trace" }
                    " · "
                }
                @if pending { "expires " (fmt::until(a.expires_ns)) " (" (fmt::time(a.expires_ns)) "), then denied" }
                @else {
                    @if let Some(by) = &a.decided_by { "decided by " (by) }
                    @if let Some(at) = a.decided_ns { " · " (fmt::time(at)) }
                    @if let Some(c) = &a.comment { " · “" (c) "”" }
                }
            }
            @if pending && can_decide {
                form.decide method="post" {
                    input type="text" name="comment" placeholder="Comment (optional)" maxlength="2000" aria-label="Comment";
                    button.primary type="submit" formaction={ "/ui/approvals/" (a.id) "/approve" } { "Approve" }
                    button.danger type="submit" formaction={ "/ui/approvals/" (a.id) "/deny" } { "Deny" }
                }
            }
        }
    }
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap, v: Viewer) -> Response {
    let mut errors = Vec::new();
    let pending = state
        .store
        .list_approvals(&v.project, Some(ApprovalStatus::Pending), 200)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .unwrap_or_default();
    let recent: Vec<Approval> = state
        .store
        .list_approvals(&v.project, None, 50)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.status != ApprovalStatus::Pending)
        .collect();
    let can_decide = v
        .acting_as(&state, &headers, Scope::Approve)
        .await
        .is_some();
    let body = html! {
        div.page-head {
            h1 { "Approvals" }
            p.muted {
                "Tool calls your guardrail policy holds for a human. The agent waits (long-polling "
                code { "GET /api/v1/approvals/{id}?wait=30s" } "); an unanswered request expires to deny."
            }
        }
        @for e in &errors { (layout::alert(e)) }
        @if !can_decide && !pending.is_empty() {
            (layout::alert("You can see these requests but not decide them: log in as a user, or with a key that has the `approve` scope."))
        }
        h2 { "Waiting (" (pending.len()) ")" }
        @if pending.is_empty() {
            div.empty { p { "Nothing is waiting for a decision." } }
        }
        @for a in &pending { (row(a, can_decide)) }
        h2 { "Recently decided" }
        @if recent.is_empty() { p.muted { "No decisions yet." } }
        @for a in &recent { (row(a, false)) }
    };
    layout::page("Approvals", &v, Nav::Approvals, body)
}

#[derive(Deserialize, Default)]
pub struct DecisionForm {
    comment: Option<String>,
}

async fn decide(
    state: AppState,
    headers: HeaderMap,
    v: Viewer,
    id: String,
    f: DecisionForm,
    approve: bool,
) -> Response {
    let Some(who) = v.acting_as(&state, &headers, Scope::Approve).await else {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "deciding approvals needs a signed-in user or a key with the `approve` scope",
        );
    };
    let comment = f
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    match state
        .governance
        .decide_approval(&v.project, &id, approve, &who, comment)
        .await
    {
        Ok(_) => Redirect::to("/ui/approvals").into_response(),
        Err(e) => layout::error_page(StatusCode::CONFLICT, &e.to_string()),
    }
}

pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    decide(state, headers, v, id, f, true).await
}

pub async fn deny(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    decide(state, headers, v, id, f, false).await
}
