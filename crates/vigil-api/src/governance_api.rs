//! `/api/v1/guard/*`, `/api/v1/approvals/*`, `/api/v1/audit/*`, `/api/v1/erasure` and
//! `/api/v1/redaction/stats`: guardrails with human approval, the audit trail and erasure.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_governance::guard::{ApprovalView, GuardError, GuardRequest};
use vigil_model::{format_rfc3339_nanos, parse_traceparent};
use vigil_store::{ApprovalStatus, Scope};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::params::{caller, json_body, now_ns, parse_duration_secs, parse_time, query};
use crate::state::AppState;

/// Longest long poll a client may ask for.
const MAX_WAIT_SECS: i64 = 60;

/// Who did it, for the audit trail: the key's id (never its secret).
pub fn actor(c: &Caller) -> String {
    c.key
        .as_ref()
        .map_or_else(|| "local".to_string(), |k| format!("key:{}", k.id))
}

impl From<GuardError> for ApiError {
    fn from(e: GuardError) -> Self {
        match e {
            GuardError::BadRequest(m) => ApiError::bad_request(m),
            GuardError::NotFound(id) => ApiError::not_found(format!("approval `{id}`")),
            e @ GuardError::AlreadyDecided { .. } => {
                ApiError::new(ErrorCode::Conflict, e.to_string())
            }
            GuardError::Store(e) => e.into(),
            GuardError::Audit(m) => {
                tracing::error!(error = %m, "audit append failed");
                ApiError::unavailable(
                    "the audit trail is temporarily unavailable, so guarded actions are refused; retry later",
                    2,
                )
            }
            GuardError::Forbidden(m) => ApiError::new(ErrorCode::Forbidden, m),
            GuardError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
        }
    }
}

/// `POST /api/v1/guard/tool-call`: may the agent run this tool with these arguments?
pub async fn check_tool_call(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<GuardRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Ingest).await?;
    let req = json_body(body)?;
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let answer = state
        .governance
        .check_tool_call(&c.project_id, &actor(&c), req, traceparent)
        .await?;
    Ok(Json(json!(answer)))
}

pub async fn get_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = state.store.get_policy(&c.project_id).await?;
    Ok(Json(match p {
        Some(p) => {
            json!({"version": p.version, "source": p.source, "updated_at": format_rfc3339_nanos(p.updated_ns)})
        }
        None => {
            json!({"version": 0, "source": null, "note": "no policy set: every tool call is allowed and recorded"})
        }
    }))
}

/// `PUT /api/v1/guard/policy` with the TOML policy as the body; rejected with every mistake named.
pub async fn put_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    if body.len() > 256 * 1024 {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "a policy is at most 256 KiB",
        ));
    }
    let version = state
        .governance
        .set_policy(&c.project_id, &body, &actor(&c))
        .await
        .map_err(|e| match e {
            vigil_governance::PolicyError::Invalid(m) => {
                ApiError::bad_request(format!("invalid policy: {m}"))
            }
            e @ vigil_governance::PolicyError::Unavailable(_) => {
                tracing::error!(error = %e, "policy update failed");
                ApiError::unavailable("the policy could not be stored, retry later", 2)
            }
        })?;
    Ok(Json(json!({"version": version})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalListParams {
    pub status: Option<String>,
    pub limit: Option<usize>,
}

pub async fn list_approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ApprovalListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(params)?;
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`status` is pending, approved, denied or expired, got `{s}`"
            ))
        })?),
    };
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let list = state
        .store
        .list_approvals(&c.project_id, status, limit)
        .await?;
    let items: Vec<ApprovalView> = list.into_iter().map(ApprovalView::from).collect();
    Ok(Json(json!({"items": items})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Long poll: wait up to this long (`30s`, max 60 s) for a decision.
    pub wait: Option<String>,
}

/// `GET /api/v1/approvals/{id}?wait=30s`: the agent's long poll (ingest keys) or a reviewer's read.
pub async fn get_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = match caller(&state, &headers, Scope::Ingest).await {
        Ok(c) => c,
        Err(e) if e.code == ErrorCode::Forbidden => caller(&state, &headers, Scope::Read).await?,
        Err(e) => return Err(e),
    };
    let p = query(params)?;
    let wait = match p.wait.as_deref() {
        None | Some("") => 0,
        Some(w) => parse_duration_secs(w).filter(|s| *s >= 0).ok_or_else(|| {
            ApiError::bad_request(format!("`wait` must be a duration like `30s`, got `{w}`"))
        })?,
    }
    .min(MAX_WAIT_SECS);
    let a = state
        .governance
        .wait_for_approval(&c.project_id, &id, Duration::from_secs(wait as u64))
        .await?;
    Ok(Json(json!(ApprovalView::from(a))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub comment: Option<String>,
    /// Who decided, for the record; defaults to the key.
    pub reviewer: Option<String>,
}

async fn decide(
    state: AppState,
    headers: HeaderMap,
    id: String,
    body: Option<DecisionBody>,
    approve: bool,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Approve).await?;
    let body = body.unwrap_or_default();
    let who = match body
        .reviewer
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => format!("{} ({r})", actor(&c)),
        None => actor(&c),
    };
    let a = state
        .governance
        .decide_approval(&c.project_id, &id, approve, &who, body.comment)
        .await?;
    Ok(Json(json!(ApprovalView::from(a))))
}

fn optional_body(
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> ApiResult<Option<DecisionBody>> {
    match body {
        Ok(Json(b)) => Ok(Some(b)),
        // No body at all is fine: approve or deny without a comment.
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(None),
        Err(e) => Err(ApiError::bad_request(e.body_text())),
    }
}

pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    decide(state, headers, id, optional_body(body)?, true).await
}

pub async fn deny(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    decide(state, headers, id, optional_body(body)?, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    pub tool: String,
    #[serde(default)]
    pub arguments: Value,
}

/// `POST /api/v1/approvals/{id}/redeem`: the agent, right before running the approved call, shows
/// it again; allowed once, for exactly the call that was approved.
pub async fn redeem(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RedeemBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Ingest).await?;
    let b = json_body(body)?;
    let a = state
        .governance
        .redeem_approval(&c.project_id, &id, &b.tool, &b.arguments, &actor(&c))
        .await?;
    Ok(Json(json!(ApprovalView::from(a))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/audit`: the project's chain, in order, from `after`.
pub async fn audit_entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let p = query(params)?;
    let rows = state
        .store
        .audit_rows(
            &c.project_id,
            p.after.unwrap_or(0),
            p.limit.unwrap_or(200).clamp(1, 5000),
        )
        .await?;
    let next = rows.last().map(|r| r.seq);
    Ok(Json(json!({"items": rows, "next_after": next})))
}

/// `GET /api/v1/audit/verify`: walks the chain and names the first broken entry.
pub async fn audit_verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let report = state.governance.audit.verify(&c.project_id).await?;
    Ok(Json(json!(report)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    pub user_id: String,
}

/// `POST /api/v1/erasure`: GDPR erasure of one end user's data.
pub async fn erasure(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ErasureBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Admin).await?;
    let b = json_body(body)?;
    if b.user_id.trim().is_empty() {
        return Err(ApiError::bad_request("`user_id` is empty"));
    }
    let report = state
        .governance
        .erase_user(&c.project_id, &b.user_id, &actor(&c))
        .await
        .map_err(|e| ApiError::unavailable(e, 2))?;
    Ok(Json(json!(report)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `GET /api/v1/redaction/stats`: values redacted before storage, per day and detector.
pub async fn redaction_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &headers, Scope::Read).await?;
    let p = query(params)?;
    let from = match p.from.as_deref() {
        Some(f) => parse_time("from", f)?,
        None => now_ns() - 30 * 86_400 * 1_000_000_000,
    };
    let to = match p.to.as_deref() {
        Some(t) => parse_time("to", t)?,
        None => now_ns(),
    };
    state.governance.flush_counts().await;
    let day = |ns: i64| {
        format_rfc3339_nanos(ns)
            .chars()
            .take(10)
            .collect::<String>()
    };
    let rows = state
        .store
        .redaction_counts(&c.project_id, &day(from), &day(to))
        .await?;
    let mut totals = serde_json::Map::new();
    for (_, d, n) in &rows {
        let t = totals.get(d).and_then(Value::as_u64).unwrap_or(0) + n;
        totals.insert(d.clone(), json!(t));
    }
    let days: Vec<Value> = rows
        .into_iter()
        .map(|(day, detector, count)| json!({"day": day, "detector": detector, "count": count}))
        .collect();
    Ok(Json(json!({"totals": totals, "days": days})))
}
