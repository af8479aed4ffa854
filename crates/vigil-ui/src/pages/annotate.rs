//! Annotate: one trace at a time from the risk-ranked queue, labelled from the keyboard (`y` good,
//! `n` bad, `f` failure mode, `c` comment, `Enter` save and next, `s` skip), with agreement between
//! annotators and each evaluator's alignment with humans shown above.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use vigil_api::AppState;
use vigil_model::{now_unix_nanos, TraceId};
use vigil_quality::alignment::from_verdicts;
use vigil_quality::annotation::{self, Label};
use vigil_store::Scope;

use crate::fmt;
use crate::layout::{self, Nav};
use crate::viewer::{url_encode, Viewer};

const WEEK_NS: i64 = 7 * 86_400_000_000_000;

#[derive(Deserialize, Default)]
pub struct AnnotateQuery {
    /// Traces skipped in this sitting, comma-separated.
    skip: Option<String>,
}

fn short_text(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Query(q): Query<AnnotateQuery>,
) -> Response {
    let Some(annotator) = v.acting_as(&state, &headers, Scope::Approve).await else {
        return layout::page(
            "Annotate",
            &v,
            Nav::Annotate,
            html! {
                h1 { "Annotate" }
                (layout::alert("Labelling needs a signed-in user, or a key with the `approve` scope."))
            },
        );
    };
    let store = state.store.as_ref();
    let skipped: Vec<String> = q
        .skip
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let mut errors = Vec::new();
    let items = annotation::queue(
        store,
        &v.project,
        &annotator,
        now_unix_nanos() - WEEK_NS,
        50 + skipped.len(),
    )
    .await
    .map_err(|e| errors.push(e.to_string()))
    .unwrap_or_default();
    let item = items
        .iter()
        .find(|i| !skipped.contains(&i.trace_id.to_hex()));
    let detail = match item {
        Some(i) => store.get_trace(&v.project, i.trace_id).await.ok().flatten(),
        None => None,
    };
    let modes = store
        .list_failure_modes(Some(&v.project))
        .await
        .unwrap_or_default();
    let labels = store.annotations(&v.project).await.unwrap_or_default();
    let agreement = annotation::agreement(&labels);
    let mine = labels
        .iter()
        .filter(|(_, who, _)| *who == annotator)
        .count();
    let mut aligned = Vec::new();
    for e in store
        .list_evaluators(Some(&v.project))
        .await
        .unwrap_or_default()
    {
        let pairs = store
            .score_pairs(&v.project, &e.name, &e.name)
            .await
            .unwrap_or_default();
        let a = from_verdicts(pairs);
        aligned.push((e.name, a));
    }
    let body = html! {
        div.page-head {
            h1 { "Annotate" }
            p.muted {
                "Riskiest first: failing evaluators, errors, quiet tool failures, negative feedback, cost and latency outliers, "
                "evaluators that disagree with humans. Keys: " kbd { "y" } " good · " kbd { "n" } " bad · " kbd { "f" } " failure mode · "
                kbd { "c" } " comment · " kbd { "Enter" } " save and next · " kbd { "s" } " skip."
            }
        }
        @for e in &errors { (layout::alert(e)) }
        div.tiles {
            div.tile { div.v { (mine) } div.l { "labelled by you (" (annotator) ")" } }
            div.tile { div.v { (items.len().saturating_sub(skipped.len())) } div.l { "in your queue (7 days)" } }
            div.tile title="Cohen's kappa between annotators on traces two or more of them labelled" {
                div.v { (agreement.kappa.map_or("—".to_string(), |k| format!("{k:.2}"))) }
                div.l { "inter-annotator κ (" (agreement.shared_traces) " shared, " (agreement.annotators.len()) " annotators)" }
            }
            @for (name, a) in &aligned {
                div.tile title="Matthews correlation with human labels (positive = failing)" {
                    div.v { (a.mcc.map_or("—".to_string(), |m| format!("{m:.2}"))) }
                    div.l { "MCC " code { (name) } " (n=" (a.n) ")" }
                }
            }
        }
        @match (item, &detail) {
            (Some(i), Some(d)) => {
                article.annotate {
                    header {
                        h2 { a href={ "/ui/traces/" (i.trace_id.to_hex()) } { (i.root_name) } }
                        span.muted.small { (fmt::time(i.start_ns)) " · " (fmt::duration_ms(i.duration_ms)) " · " (fmt::cost(i.cost_usd)) }
                    }
                    ul.reasons { @for r in &i.reasons { li { (r) } } @if i.reasons.is_empty() { li.muted { "no risk signal: a random look" } } }
                    @let input = vigil_quality::rules::trace_text(&d.spans, vigil_quality::rules::Field::Input);
                    @let output = vigil_quality::rules::trace_text(&d.spans, vigil_quality::rules::Field::Output);
                    div.io {
                        div { h4 { "Input" } pre { (short_text(input.as_deref().unwrap_or("—"), 2000)) } }
                        div { h4 { "Output" } pre { (short_text(output.as_deref().unwrap_or("—"), 2000)) } }
                    }
                    table.list.compact {
                        thead { tr { th { "Kind" } th { "Step" } th { "Duration" } th { "Status" } } }
                        tbody {
                            @for s in d.spans.iter().take(40) {
                                tr class={ @if s.status.as_str() == "error" { "failed" } } {
                                    td { span.badge { (s.kind.as_str()) } }
                                    td { (s.name) @for f in &s.flags { " " span.badge.flag title=(f.reason) { (f.name.as_str()) } } }
                                    td { (fmt::duration_ms(s.duration_ms)) }
                                    td { (s.status.as_str()) }
                                }
                            }
                        }
                    }
                    form.annotate method="post" action="/ui/annotate" data-annotate {
                        input type="hidden" name="trace_id" value=(i.trace_id.to_hex());
                        input type="hidden" name="skip" value=(skipped.join(","));
                        label { input type="radio" name="label" value="good"; " Good " kbd { "y" } }
                        label { input type="radio" name="label" value="bad"; " Bad " kbd { "n" } }
                        input type="text" name="failure_mode" list="modes" placeholder="Failure mode (pick or name a new one)" aria-label="Failure mode";
                        datalist #modes { @for m in &modes { option value=(m.name) { (m.severity) " · " (m.status) } } }
                        input type="text" name="comment" placeholder="Comment" maxlength="2000" aria-label="Comment";
                        button.primary type="submit" { "Save and next" }
                        a.small data-skip href={ "/ui/annotate?skip=" (url_encode(&{ let mut s = skipped.clone(); s.push(i.trace_id.to_hex()); s.join(",") })) } { "Skip" }
                    }
                }
            }
            _ => { div.empty { p { "Nothing left to label in the last 7 days." } } }
        }
    };
    layout::page("Annotate", &v, Nav::Annotate, body)
}

#[derive(Deserialize)]
pub struct AnnotateForm {
    trace_id: String,
    label: Option<String>,
    failure_mode: Option<String>,
    comment: Option<String>,
    skip: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    Form(f): Form<AnnotateForm>,
) -> Response {
    let Some(annotator) = v.acting_as(&state, &headers, Scope::Approve).await else {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "labelling needs a signed-in user or a key with the `approve` scope",
        );
    };
    let Ok(trace_id) = TraceId::from_hex(&f.trace_id) else {
        return layout::error_page(StatusCode::BAD_REQUEST, "not a trace id");
    };
    let failure_mode = f
        .failure_mode
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    let good = match f.label.as_deref() {
        Some("good") => true,
        Some("bad") => false,
        // A failure mode without a label means bad.
        None if failure_mode.is_some() => false,
        _ => return layout::error_page(StatusCode::BAD_REQUEST, "pick good (y) or bad (n)"),
    };
    let mut comment =
        serde_json::Value::String(f.comment.unwrap_or_default().chars().take(2000).collect());
    state
        .governance
        .redact_value(&v.project, &mut comment)
        .await;
    let label = Label {
        trace_id,
        annotator,
        good,
        failure_mode: if good { None } else { failure_mode },
        comment: comment
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    };
    match annotation::annotate(state.store.as_ref(), &v.project, label).await {
        Ok(_) => {
            let skip = f.skip.unwrap_or_default();
            let to = if skip.is_empty() {
                "/ui/annotate".to_string()
            } else {
                format!("/ui/annotate?skip={}", url_encode(&skip))
            };
            Redirect::to(&to).into_response()
        }
        Err(e) => layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
