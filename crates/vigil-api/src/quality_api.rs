//! `/api/v1/evaluators/*` and `/api/v1/scores`: evaluators on production traffic, scores from
//! evaluators, humans and end users, and how well evaluators agree with humans.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_model::{now_unix_nanos, SpanId, TraceId};
use vigil_quality::alignment::from_verdicts;
use vigil_quality::EvaluatorDef;
use vigil_store::{Scope, ScoreRow, ScoreSource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::governance_api::actor;
use crate::params::{caller, json_body, now_ns, parse_time, query};
use crate::state::AppState;

/// 404 unless the trace is the caller's project's (labels of made-up traces move nothing).
async fn trace_exists(state: &AppState, c: &Caller, trace: TraceId) -> ApiResult<()> {
    match state.store.get_trace(&c.project_id, trace).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("trace `{trace}`"))),
    }
}

/// `PUT /api/v1/evaluators/{name}`: create or replace an evaluator (validated; audited).
pub async fn put_evaluator(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    def: Result<Json<EvaluatorDef>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let def = json_body(def)?;
    def.validate()
        .map_err(|e| ApiError::bad_request(format!("invalid evaluator: {e}")))?;
    let definition = serde_json::to_value(&def).unwrap_or_default();
    let row = state
        .store
        .put_evaluator(&c.project_id, &name, definition.clone(), def.enabled)
        .await?;
    // Ingest judges with the new definition from the next export on.
    state.ingest_evaluators.refresh().await;
    state
        .governance
        .audit
        .append(vigil_governance::audit::AuditEvent::new(
            &c.project_id,
            actor(&c),
            "evaluator.updated",
            &name,
            definition,
        ))
        .await
        .map_err(|e| ApiError::unavailable(e, 2))?;
    Ok(Json(json!(row)))
}

/// `GET /api/v1/evaluators`: the project's evaluators and the state of its evaluation queue.
pub async fn list_evaluators(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let items = state.store.list_evaluators(Some(&c.project_id)).await?;
    let queue = state
        .store
        .eval_queue_stats(&c.project_id, now_unix_nanos())
        .await?;
    Ok(Json(json!({"items": items, "queue": queue})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillBody {
    pub from: String,
    pub to: Option<String>,
}

/// `POST /api/v1/evaluators/{name}/backfill`: evaluate the traces of a past time range.
pub async fn backfill(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: Result<Json<BackfillBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let b = json_body(b)?;
    let from = parse_time("from", &b.from)?;
    let to = match &b.to {
        Some(t) => parse_time("to", t)?,
        None => now_ns(),
    };
    let e = find(&state, &c, &name).await?;
    let queued = state.store.eval_backfill(&e.id, from, to).await?;
    Ok(Json(json!({"queued": queued})))
}

async fn find(state: &AppState, c: &Caller, name: &str) -> ApiResult<vigil_store::EvaluatorRow> {
    state
        .store
        .list_evaluators(Some(&c.project_id))
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::not_found(format!("evaluator `{name}`")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentParams {
    /// The human score name to compare with (default: the evaluator's own name).
    pub human: Option<String>,
}

/// `GET /api/v1/evaluators/{name}/alignment`: MCC, precision, recall and agreement against human
/// labels on the same traces ("positive" = failing).
pub async fn evaluator_alignment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    p: Result<Query<AlignmentParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    find(&state, &c, &name).await?;
    let human = p.human.unwrap_or_else(|| name.clone());
    let pairs = state
        .store
        .score_pairs(&c.project_id, &name, &human)
        .await?;
    let a = from_verdicts(pairs);
    Ok(Json(
        json!({"evaluator": name, "human_score": human, "alignment": a}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub session_id: Option<String>,
    pub name: String,
    pub value: Option<f64>,
    pub passed: Option<bool>,
    pub label: Option<String>,
    pub reason: Option<String>,
    /// `feedback` (an end user's thumbs up/down, the default) or `human` (an annotator).
    pub source: Option<String>,
    /// Who gave it: the end user or the annotator.
    pub by: Option<String>,
}

/// `POST /api/v1/scores`: a score from the user's own app (thumbs up/down) or an annotator.
pub async fn post_score(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<ScoreBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = json_body(b)?;
    // End-user feedback comes from apps (ingest keys); a human label is a reviewer's (approve).
    let needed = if b.source.as_deref() == Some("human") {
        Scope::Approve
    } else {
        Scope::Ingest
    };
    let c = caller(&state, &headers, needed).await?;
    let source = match b.source.as_deref().unwrap_or("feedback") {
        "feedback" => ScoreSource::Feedback,
        "human" => ScoreSource::Human,
        other => {
            return Err(ApiError::bad_request(format!(
                "`source` is `feedback` or `human`, got `{other}` (evaluators score on their own)"
            )))
        }
    };
    let name = b.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("`name` must be 1 to 128 bytes"));
    }
    if b.trace_id.is_none() && b.session_id.is_none() {
        return Err(ApiError::bad_request(
            "a score needs a `trace_id` or a `session_id`",
        ));
    }
    if b.value.is_none() && b.passed.is_none() && b.label.is_none() {
        return Err(ApiError::bad_request(
            "a score needs a `value`, `passed` or `label`",
        ));
    }
    if b.value.is_some_and(|v| !v.is_finite()) {
        return Err(ApiError::bad_request("`value` must be a finite number"));
    }
    let trace_id = b
        .trace_id
        .as_deref()
        .map(TraceId::from_hex)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let span_id = b
        .span_id
        .as_deref()
        .map(SpanId::from_hex)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let clip = |s: Option<String>, n: usize| s.map(|s| s.chars().take(n).collect::<String>());
    // Free text from an app or a person: redacted like everything else stored.
    let mut text =
        json!({"reason": clip(b.reason, 2000), "label": clip(b.label, 128), "by": clip(b.by, 256)});
    state
        .governance
        .redact_value(&c.project_id, &mut text)
        .await;
    let s = |k: &str| text[k].as_str().map(str::to_string);
    let row = ScoreRow {
        id: 0,
        project_id: c.project_id.clone(),
        trace_id,
        span_id,
        session_id: clip(b.session_id, 256),
        name: name.to_string(),
        value: b.value.or(b.passed.map(|p| if p { 1.0 } else { 0.0 })),
        passed: b.passed,
        label: s("label"),
        reason: s("reason"),
        source,
        source_id: s("by"),
        created_ns: now_unix_nanos(),
        cost_usd: None,
    };
    let id = state.store.insert_score(row).await?;
    Ok(Json(json!({"id": id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreListParams {
    pub trace_id: Option<String>,
    pub name: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/scores`: scores of the project, newest first.
pub async fn list_scores(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<ScoreListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let trace = p
        .trace_id
        .as_deref()
        .map(TraceId::from_hex)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let items = state
        .store
        .list_scores(
            &c.project_id,
            trace,
            p.name.as_deref(),
            p.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(json!({"items": items})))
}

/// `POST /api/v1/failure-modes`: name a failure mode (or update its definition).
pub async fn put_failure_mode(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<vigil_store::FailureModeSpec>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let spec = json_body(b)?;
    let row = state.store.put_failure_mode(&c.project_id, spec).await?;
    state
        .governance
        .audit
        .record(vigil_governance::audit::AuditEvent::new(
            &c.project_id,
            actor(&c),
            "failure_mode.updated",
            &row.name,
            json!({"id": row.id, "definition": row.definition, "severity": row.severity, "evaluator": row.evaluator}),
        ))
        .await;
    Ok(Json(json!(row)))
}

const DAY_NS: i64 = 86_400_000_000_000;

/// `GET /api/v1/failure-modes`: every failure mode with its status and its rate over 24 hours.
pub async fn list_failure_modes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let now = now_unix_nanos();
    let mut items = Vec::new();
    for f in state.store.list_failure_modes(Some(&c.project_id)).await? {
        let rate = match &f.evaluator {
            Some(e) => Some(
                state
                    .store
                    .failure_rate(&c.project_id, e, now - DAY_NS, now, None, None)
                    .await?,
            ),
            None => None,
        };
        let mut v = json!(f);
        v["rate_24h_per_1000_sessions"] = json!(rate.and_then(|r| r.per_thousand()));
        v["sessions_24h"] = json!(rate.map(|r| r.sessions));
        items.push(v);
    }
    Ok(Json(json!({"items": items})))
}

async fn failure_mode(
    state: &AppState,
    c: &Caller,
    id: &str,
) -> ApiResult<vigil_store::FailureModeRow> {
    state
        .store
        .list_failure_modes(Some(&c.project_id))
        .await?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::not_found(format!("failure mode `{id}`")))
}

/// `GET /api/v1/failure-modes/{id}`: one failure mode, its history, and its frequency per day.
pub async fn get_failure_mode(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let f = failure_mode(&state, &c, &id).await?;
    let events = state.store.failure_mode_events(&c.project_id, &id).await?;
    let now = now_unix_nanos();
    let by_day = match &f.evaluator {
        Some(e) => state
            .store
            .failure_rate_by_day(&c.project_id, e, now - 14 * DAY_NS, now)
            .await?
            .into_iter()
            .map(|(day, r)| json!({"day": day, "failing_sessions": r.failing, "sessions": r.sessions, "per_1000_sessions": r.per_thousand()}))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(
        json!({"failure_mode": f, "events": events, "frequency_by_day": by_day}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleBody {
    pub trace_id: String,
}

/// `POST /api/v1/failure-modes/{id}/examples`: a human confirms a trace shows this failure mode.
pub async fn add_example(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<ExampleBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Approve).await?;
    let b = json_body(b)?;
    let trace = TraceId::from_hex(&b.trace_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    trace_exists(&state, &c, trace).await?;
    state
        .store
        .add_failure_mode_example(&c.project_id, &id, trace, ScoreSource::Human)
        .await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixBody {
    /// The `service.version` meant to fix it.
    pub version: String,
}

/// `POST /api/v1/failure-modes/{id}/fix`: the deployment meant to fix it; Vigil verifies the fix
/// (and reopens the failure mode if it comes back).
pub async fn fix(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    b: Result<Json<FixBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let b = json_body(b)?;
    if b.version.trim().is_empty() {
        return Err(ApiError::bad_request("`version` is empty"));
    }
    failure_mode(&state, &c, &id).await?;
    let row = vigil_quality::failure_modes::mark_fixed(
        state.store.as_ref(),
        &c.project_id,
        &id,
        &b.version,
    )
    .await
    .map_err(ApiError::bad_request)?;
    state
        .governance
        .audit
        .record(vigil_governance::audit::AuditEvent::new(
            &c.project_id,
            actor(&c),
            "failure_mode.fixed",
            &row.name,
            json!({"id": id, "version": b.version, "baseline_rate": row.baseline_rate}),
        ))
        .await;
    Ok(Json(json!(row)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// Whose queue (traces they already labelled are left out); default: the key.
    pub annotator: Option<String>,
    /// How far back (default 7d).
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/annotations/queue`: recent traces ranked by risk, with the reasons.
pub async fn annotation_queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<QueueParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let since = parse_time("since", p.since.as_deref().unwrap_or("7d"))?;
    let annotator = p.annotator.unwrap_or_else(|| actor(&c));
    let items = vigil_quality::annotation::queue(
        state.store.as_ref(),
        &c.project_id,
        &annotator,
        since,
        p.limit.unwrap_or(20).clamp(1, 500),
    )
    .await?;
    Ok(Json(json!({"annotator": annotator, "items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationBody {
    pub trace_id: String,
    /// `good` or `bad`.
    pub label: String,
    /// A failure mode (id or name; a new name creates it).
    pub failure_mode: Option<String>,
    pub comment: Option<String>,
    /// Who labels; default: the key.
    pub annotator: Option<String>,
}

/// `POST /api/v1/annotations`: a human label (scope `approve`, the reviewers' scope).
pub async fn post_annotation(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<AnnotationBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Approve).await?;
    let b = json_body(b)?;
    let good = match b.label.as_str() {
        "good" => true,
        "bad" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "`label` is `good` or `bad`, got `{other}`"
            )))
        }
    };
    let trace_id =
        TraceId::from_hex(&b.trace_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    trace_exists(&state, &c, trace_id).await?;
    let mut comment = Value::String(b.comment.unwrap_or_default().chars().take(2000).collect());
    state
        .governance
        .redact_value(&c.project_id, &mut comment)
        .await;
    let annotator = b
        .annotator
        .map(|a| a.chars().take(128).collect::<String>())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| actor(&c));
    let mode = vigil_quality::annotation::annotate(
        state.store.as_ref(),
        &c.project_id,
        vigil_quality::annotation::Label {
            trace_id,
            annotator,
            good,
            failure_mode: if good { None } else { b.failure_mode },
            comment: comment
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_string),
        },
    )
    .await?;
    Ok(Json(json!({"ok": true, "failure_mode_id": mode})))
}

/// `GET /api/v1/annotations/agreement`: Cohen's kappa between annotators on shared traces.
pub async fn annotation_agreement(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let labels = state.store.annotations(&c.project_id).await?;
    Ok(Json(json!(vigil_quality::annotation::agreement(&labels))))
}

/// A small CSV reader: a header row naming `input` (and optionally `expected`), quoted fields with
/// `""` escapes and embedded newlines.
fn parse_csv(text: &str) -> Result<Vec<vigil_store::DatasetItem>, String> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    let mut rows = rows
        .into_iter()
        .filter(|r| !(r.len() == 1 && r[0].is_empty()));
    let header = rows.next().ok_or("the CSV is empty")?;
    let col = |n: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(n));
    let input = col("input").ok_or("the CSV needs an `input` column")?;
    let expected = col("expected");
    rows.enumerate()
        .map(|(i, r)| {
            Ok(vigil_store::DatasetItem {
                id: 0,
                input: r
                    .get(input)
                    .cloned()
                    .ok_or(format!("row {} has no input", i + 2))?,
                expected: expected
                    .and_then(|e| r.get(e).cloned())
                    .filter(|e| !e.is_empty()),
                source_trace: None,
            })
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsBody {
    #[serde(default)]
    pub items: Vec<vigil_store::DatasetItem>,
    /// Production traces to add: their input and (as expected) output.
    #[serde(default)]
    pub trace_ids: Vec<String>,
}

const MAX_ITEMS: usize = 10_000;

/// `POST /api/v1/datasets/{name}/items`: add items as JSON (`items`, `trace_ids`), JSONL or CSV.
pub async fn add_dataset_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    text: String,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Ingest).await?;
    let kind = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let mut items = Vec::new();
    if kind.starts_with("text/csv") {
        items = parse_csv(&text).map_err(|e| ApiError::bad_request(format!("CSV: {e}")))?;
    } else if kind.contains("ndjson") || kind.contains("jsonl") {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            items.push(
                serde_json::from_str::<vigil_store::DatasetItem>(line)
                    .map_err(|e| ApiError::bad_request(format!("line {}: {e}", i + 1)))?,
            );
        }
    } else {
        let b: ItemsBody =
            serde_json::from_str(&text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        items = b.items;
        for t in &b.trace_ids {
            let id = TraceId::from_hex(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let d = state
                .store
                .get_trace(&c.project_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("trace `{t}`")))?;
            let input =
                vigil_quality::rules::trace_text(&d.spans, vigil_quality::rules::Field::Input);
            let output =
                vigil_quality::rules::trace_text(&d.spans, vigil_quality::rules::Field::Output);
            items.push(vigil_store::DatasetItem {
                id: 0,
                input: input.unwrap_or_default(),
                expected: output,
                source_trace: Some(id),
            });
        }
    }
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "no items: send `items`, `trace_ids`, JSONL or CSV",
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ITEMS} items per request"
        )));
    }
    // Items are stored like everything else: redacted.
    for it in &mut items {
        let mut v = json!({"input": it.input, "expected": it.expected});
        state.governance.redact_value(&c.project_id, &mut v).await;
        it.input = v["input"].as_str().unwrap_or("").to_string();
        it.expected = v["expected"].as_str().map(str::to_string);
    }
    let row = state
        .store
        .add_dataset_items(&c.project_id, &name, items)
        .await?;
    Ok(Json(json!(row)))
}

pub async fn list_datasets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    Ok(Json(
        json!({"items": state.store.list_datasets(&c.project_id).await?}),
    ))
}

pub async fn get_dataset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let (row, items) = state
        .store
        .get_dataset(&c.project_id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("dataset `{name}`")))?;
    let runs = state
        .store
        .list_experiments(&c.project_id, Some(&row.id), 50)
        .await?;
    Ok(Json(json!({"dataset": row, "items": items, "runs": runs})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentBody {
    pub dataset: String,
    pub name: String,
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub results: Vec<vigil_store::ExperimentResult>,
}

/// `POST /api/v1/experiments`: store a run's results (`vigil eval run` sends them).
pub async fn post_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<ExperimentBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Ingest).await?;
    let mut b = json_body(b)?;
    let (ds, items) = state
        .store
        .get_dataset(&c.project_id, &b.dataset)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("dataset `{}`", b.dataset)))?;
    let known: std::collections::HashSet<i64> = items.iter().map(|i| i.id).collect();
    if let Some(r) = b.results.iter().find(|r| !known.contains(&r.item_id)) {
        return Err(ApiError::bad_request(format!(
            "item {} is not in dataset `{}`",
            r.item_id, b.dataset
        )));
    }
    for r in &mut b.results {
        let mut v = json!({"output": r.output, "error": r.error});
        state.governance.redact_value(&c.project_id, &mut v).await;
        r.output = v["output"].as_str().map(str::to_string);
        r.error = v["error"].as_str().map(str::to_string);
    }
    let run = vigil_store::ExperimentRun {
        id: format!("run_{}", &TraceId::random().to_hex()[..16]),
        project_id: c.project_id.clone(),
        dataset_id: ds.id,
        name: b.name.chars().take(128).collect(),
        model: b.model,
        prompt: b.prompt,
        summary: vigil_quality::experiment::summary(&b.results),
        created_ns: now_unix_nanos(),
    };
    let id = run.id.clone();
    let summary = run.summary.clone();
    state.store.put_experiment(run, b.results).await?;
    Ok(Json(json!({"id": id, "summary": summary})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentListParams {
    pub dataset: Option<String>,
}

pub async fn list_experiments(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<ExperimentListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let ds = match &p.dataset {
        Some(name) => Some(
            state
                .store
                .get_dataset(&c.project_id, name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("dataset `{name}`")))?
                .0
                .id,
        ),
        None => None,
    };
    Ok(Json(
        json!({"items": state.store.list_experiments(&c.project_id, ds.as_deref(), 200).await?}),
    ))
}

pub async fn get_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let (run, results) = state
        .store
        .get_experiment(&c.project_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("experiment run `{id}`")))?;
    Ok(Json(json!({"run": run, "results": results})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    pub base: String,
    pub run: String,
    /// Smallest drop in pass rate that counts as a regression (default 0.05).
    pub threshold: Option<f64>,
    /// Significance level (default 0.05).
    pub alpha: Option<f64>,
}

/// `GET /api/v1/experiments/compare?base=RUN&run=RUN`: per-item diff and per-evaluator deltas.
pub async fn compare_experiments(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<CompareParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let get = |id: String| {
        let (store, project) = (state.store.clone(), c.project_id.clone());
        async move {
            store
                .get_experiment(&project, &id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("experiment run `{id}`")))
        }
    };
    let (base, base_results) = get(p.base).await?;
    let (run, run_results) = get(p.run).await?;
    if base.dataset_id != run.dataset_id {
        return Err(ApiError::bad_request(
            "the two runs are of different datasets",
        ));
    }
    let cmp = vigil_quality::experiment::compare(
        &base_results,
        &run_results,
        p.threshold.unwrap_or(0.05),
        p.alpha.unwrap_or(0.05),
    );
    Ok(Json(json!({"base": base, "run": run, "comparison": cmp})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceParams {
    pub since: Option<String>,
}

/// `GET /api/v1/failure-modes/candidates`: failing traces clustered into proposed failure modes.
pub async fn failure_mode_candidates(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<SinceParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let since = parse_time("since", p.since.as_deref().unwrap_or("7d"))?;
    let failing = state
        .store
        .failing_verdicts(&c.project_id, since, 5000)
        .await?;
    let known = state.store.list_failure_modes(Some(&c.project_id)).await?;
    let items = vigil_quality::insights::candidates(&failing, &known);
    Ok(Json(json!({"items": items})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryParams {
    /// Days of history (1..=90, default 14).
    pub days: Option<i64>,
}

/// `GET /api/v1/quality/summary`: active failure modes over time, eval coverage, the worst
/// failure mode's rate, regression-free deployments, evaluator alignment over time.
pub async fn quality_summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<SummaryParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(p)?;
    let days = p.days.unwrap_or(14).clamp(1, 90);
    let s = vigil_quality::insights::summary(
        state.store.as_ref(),
        &c.project_id,
        now_unix_nanos(),
        days,
    )
    .await?;
    Ok(Json(json!(s)))
}
