//! Quality: the failure modes that matter now and whether they are getting better, how much of
//! them the evaluators cover, whether deployments regress, and what new failures look like.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use vigil_api::AppState;
use vigil_model::now_unix_nanos;
use vigil_quality::insights::{self, DayPoint};
use vigil_store::Scope;

use crate::charts::{line_chart, Series};
use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::Viewer;

const DAYS: i64 = 14;
const DAY_NS: i64 = 86_400_000_000_000;

fn series(name: &str, points: &[DayPoint], now: i64) -> Series {
    let n = points.len() as i64;
    Series {
        name: name.to_string(),
        points: points
            .iter()
            .enumerate()
            .map(|(i, p)| (now - (n - 1 - i as i64) * DAY_NS, p.value))
            .collect(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{:.0} %", x * 100.0))
}

pub async fn show(State(state): State<AppState>, v: Viewer) -> Response {
    let now = now_unix_nanos();
    let store = state.store.as_ref();
    let mut errors = Vec::new();
    let summary = insights::summary(store, &v.project, now, DAYS)
        .await
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let modes = store
        .list_failure_modes(Some(&v.project))
        .await
        .unwrap_or_default();
    let failing = store
        .failing_verdicts(&v.project, now - 7 * DAY_NS, 5000)
        .await
        .unwrap_or_default();
    let candidates = insights::candidates(&failing, &modes);
    let queue = store.eval_queue_stats(&v.project, now).await.ok();
    let from = now - (DAYS - 1) * DAY_NS;
    let body = html! {
        div.page-head {
            h1 { "Quality" }
            p.muted { "Failure modes tracked like bugs, the evaluators that detect them and how far humans agree with those evaluators. Last " (DAYS) " days." }
        }
        @for e in &errors { (layout::alert(e)) }
        @if let Some(s) = &summary {
            div.tiles.big {
                div.tile { div.v { (s.active_failure_modes) } div.l { "active failure modes" } }
                div.tile title="Active failure modes whose evaluator agrees with humans (MCC ≥ 0.5)" { div.v { (pct(s.eval_coverage)) } div.l { "eval coverage" } }
                @if let Some(w) = &s.worst {
                    div.tile.bad title=(format!("{} ({}, {})", w.failure_mode, w.severity, w.status)) {
                        div.v { (w.per_1000_sessions_24h.map_or("—".into(), |r| format!("{r:.1}"))) }
                        div.l { "per 1,000 sessions (24 h): " (w.failure_mode) }
                    }
                }
                div.tile title="Deployments (new service.version) with no tracked failure mode rising by half or more" {
                    div.v { (pct(s.regression_free_rate)) }
                    div.l { "regression-free deployments (" (s.regression_free_deployments) "/" (s.deployments) ")" }
                }
            }
            div.charts {
                (line_chart("Active failure modes", &[series("active", &s.active_by_day, now)], from, now, |x| format!("{x:.0}")))
                @if let Some(w) = &s.worst {
                    (line_chart(&format!("{} per 1,000 sessions", w.failure_mode), &[series(&w.failure_mode, &w.per_1000_sessions_by_day, now)], from, now, |x| format!("{x:.1}")))
                }
                @if !s.alignment.is_empty() {
                    (line_chart("Evaluator MCC vs humans", &s.alignment.iter().map(|a| series(&a.evaluator, &a.mcc_by_day, now)).collect::<Vec<_>>(), from, now, |x| format!("{x:.2}")))
                }
            }
        }
        h2 { "Failure modes" }
        @if modes.is_empty() {
            div.empty { p { "None yet. Name one from the candidates below or while annotating, or with " code { "POST /api/v1/failure-modes" } "." } }
        } @else {
            table.list.compact {
                thead { tr { th { "Failure mode" } th { "Severity" } th { "Status" } th { "Evaluator" } th { "Examples" } th { "Fixed in" } th { "Updated" } } }
                tbody {
                    @for m in &modes {
                        tr class={ @if m.status == "regressed" { "failed" } } {
                            td { strong { (m.name) } br; span.small.muted { (m.definition) } }
                            td { span class={ "badge " @if m.severity == "critical" || m.severity == "high" { "bad" } } { (m.severity) } }
                            td { span class={ "badge " @match m.status.as_str() { "verified" => "ok", "regressed" => "bad", "fixed" => "warn", _ => "" } } { (m.status) } }
                            td { @if let Some(e) = &m.evaluator { code { (e) } } @else { span.muted { "—" } } }
                            td { (m.human_examples) " confirmed" }
                            td { (m.fixed_in.as_deref().unwrap_or("—")) }
                            td { (fmt::ago(m.updated_ns)) }
                        }
                    }
                }
            }
        }
        h2 { "Candidate failure modes" }
        p.muted.small { "Failing traces of the last 7 days clustered by evaluator and failure signature; untracked ones first." }
        @if candidates.is_empty() {
            p.muted { "No clusters of failing traces." }
        } @else {
            table.list.compact {
                thead { tr { th { "Suggested name" } th { "Evaluator" } th { "Signature" } th { "Traces" } th { "Examples" } } }
                tbody {
                    @for c in candidates.iter().take(20) {
                        tr {
                            td { (c.suggested_name) }
                            td { code { (c.evaluator) } }
                            td.small { (c.signature) }
                            td { (c.traces) }
                            td.small { @for t in &c.examples { a href={ "/ui/traces/" (t.to_hex()) } { (t.to_hex()[..8].to_string()) } " " } }
                        }
                    }
                }
            }
        }
        @if let Some(s) = &summary {
            h2 { "Evaluators" }
            form.new-evaluator method="post" action="/ui/evaluators" {
                input type="text" name="name" placeholder="evaluator name" required aria-label="Evaluator name";
                textarea name="definition" rows="3" aria-label="Definition (JSON)" {
                    r#"{"rule": {"type": "refusal"}, "scope": "trace", "sample": 1.0}"#
                }
                button.primary type="submit" { "Save evaluator" }
                span.small.muted { "Rules: regex, contains, not_contains, valid_json, json_schema, silent_tool_failure, hallucinated_tool, max_latency_ms, max_cost_usd, no_pii_in_output, refusal, llm_judge." }
            }
            table.list.compact {
                thead { tr { th { "Evaluator" } th { "MCC" } th { "Precision" } th { "Recall" } th { "Agreement" } th { "n" } } }
                tbody {
                    @for a in &s.alignment {
                        tr {
                            td { code { (a.evaluator) } }
                            td { (a.now.mcc.map_or("—".into(), |m| format!("{m:.2}"))) }
                            td { (pct(a.now.precision)) }
                            td { (pct(a.now.recall)) }
                            td { (pct(a.now.agreement)) }
                            td { (a.now.n) }
                        }
                    }
                }
            }
            @if let Some(q) = &queue {
                p.small.muted {
                    "Evaluation queue: " (q.queued) " queued, " (q.running) " running, " (q.done) " done, " (q.failed) " failed"
                    @if let Some(age) = q.oldest_ready_age_ns { " · oldest waiting " (fmt::duration_ms(age as f64 / 1e6)) }
                }
            }
        }
    };
    layout::page("Quality", &v, Nav::Quality, body)
}

#[derive(Deserialize)]
pub struct EvaluatorForm {
    name: String,
    definition: String,
}

/// `POST /ui/evaluators`: create or replace an evaluator from the Quality page.
pub async fn save_evaluator(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Form(f): Form<EvaluatorForm>,
) -> Response {
    let Some(who) = v.acting_as(&state, &headers, Scope::Admin).await else {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "changing evaluators needs a signed-in user or a key with the `admin` scope",
        );
    };
    let def: vigil_quality::EvaluatorDef = match serde_json::from_str(&f.definition) {
        Ok(d) => d,
        Err(e) => {
            return layout::error_page(StatusCode::BAD_REQUEST, &format!("invalid definition: {e}"))
        }
    };
    if let Err(e) = def.validate() {
        return layout::error_page(StatusCode::BAD_REQUEST, &format!("invalid evaluator: {e}"));
    }
    let json = serde_json::to_value(&def).unwrap_or_default();
    if let Err(e) = state
        .store
        .put_evaluator(&v.project, f.name.trim(), json.clone(), def.enabled)
        .await
    {
        return layout::error_page(StatusCode::BAD_REQUEST, &e.to_string());
    }
    state.ingest_evaluators.refresh().await;
    state
        .governance
        .audit
        .record(vigil_governance::audit::AuditEvent::new(
            &v.project,
            who,
            "evaluator.updated",
            f.name.trim(),
            json,
        ))
        .await;
    Redirect::to("/ui/quality").into_response()
}

#[derive(Deserialize)]
pub struct DatasetForm {
    trace_id: String,
    dataset: String,
}

/// `POST /ui/datasets/add`: a trace's input and output become an item of a dataset.
pub async fn add_to_dataset(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Form(f): Form<DatasetForm>,
) -> Response {
    if v.acting_as(&state, &headers, Scope::Approve)
        .await
        .is_none()
    {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "curating datasets needs a signed-in user or a key with the `approve` scope",
        );
    }
    let Ok(id) = vigil_model::TraceId::from_hex(&f.trace_id) else {
        return layout::error_page(StatusCode::BAD_REQUEST, "not a trace id");
    };
    let detail = match state.store.get_trace(&v.project, id).await {
        Ok(Some(d)) => d,
        Ok(None) => return layout::error_page(StatusCode::NOT_FOUND, "no such trace"),
        Err(e) => return layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    use vigil_quality::rules::{trace_text, Field};
    let mut v_json = serde_json::json!({
        "input": trace_text(&detail.spans, Field::Input).unwrap_or_default(),
        "expected": trace_text(&detail.spans, Field::Output),
    });
    state.governance.redact_value(&v.project, &mut v_json).await;
    let item = vigil_store::DatasetItem {
        id: 0,
        input: v_json["input"].as_str().unwrap_or("").to_string(),
        expected: v_json["expected"].as_str().map(str::to_string),
        source_trace: Some(id),
    };
    match state
        .store
        .add_dataset_items(&v.project, f.dataset.trim(), vec![item])
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/traces/{}", id.to_hex())).into_response(),
        Err(e) => layout::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
