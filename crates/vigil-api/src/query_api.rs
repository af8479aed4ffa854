//! `/api/v1/*`: the JSON query API. Handlers parse, call the store with the caller's project, and
//! convert errors; a resource of another project answers 404 exactly like a missing one.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_ingest::normalize::events::merge_log_events;
use vigil_model::{FlagKind, SpanKind, SpanStatus, TraceId};
use vigil_store::{
    Cursor, MetricsDimension, MetricsQuery, Scope, SessionQuery, TraceQuery, TraceSortField,
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::params::{non_empty, now_ns, opt_time, parse_duration_secs, parse_time, query};
use crate::state::AppState;

async fn reader(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    crate::params::caller(state, headers, Scope::Read).await
}

fn limit(v: Option<usize>) -> ApiResult<usize> {
    match v {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE_SIZE}, got {n}"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceListParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub tool: Option<String>,
    pub status: Option<String>,
    /// Comma-separated flag names; a trace must carry all of them.
    pub flags: Option<String>,
    pub min_duration_ms: Option<f64>,
    pub min_cost_usd: Option<f64>,
    pub session: Option<String>,
    pub user: Option<String>,
    /// Full-text search over inputs, outputs, tool arguments and results.
    pub q: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

impl TraceListParams {
    pub fn into_query(self, caller: &Caller) -> ApiResult<TraceQuery> {
        let mut q = TraceQuery::new(caller.project_id.clone());
        q.start_time_min = opt_time("from", &self.from)?;
        q.start_time_max = opt_time("to", &self.to)?;
        q.service_name = non_empty(&self.service);
        q.environment = non_empty(&self.environment);
        q.agent_name = non_empty(&self.agent);
        q.model = non_empty(&self.model);
        q.provider = non_empty(&self.provider);
        q.tool_name = non_empty(&self.tool);
        q.session_id = non_empty(&self.session);
        q.user_id = non_empty(&self.user);
        q.text = non_empty(&self.q);
        q.duration_min_ms = self.min_duration_ms;
        q.cost_min_usd = self.min_cost_usd;
        if let Some(s) = non_empty(&self.status) {
            q.status = Some(SpanStatus::parse(&s).ok_or_else(|| {
                ApiError::bad_request(format!("`status` must be ok, error or unset, got `{s}`"))
            })?);
        }
        if let Some(f) = non_empty(&self.flags) {
            q.flags = f
                .split(',')
                .map(|name| {
                    FlagKind::parse(name.trim()).ok_or_else(|| {
                        ApiError::bad_request(format!("unknown flag `{}`", name.trim()))
                    })
                })
                .collect::<ApiResult<_>>()?;
        }
        if let Some(s) = non_empty(&self.sort) {
            q.sort = TraceSortField::parse(&s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`sort` must be start_time, duration, cost, tokens or spans, got `{s}`"
                ))
            })?;
        }
        q.descending = match self.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "`order` must be asc or desc, got `{o}`"
                )))
            }
        };
        q.limit = limit(self.limit)?;
        if let Some(c) = non_empty(&self.cursor) {
            q.cursor = Some(Cursor::decode(&c)?);
        }
        Ok(q)
    }
}

pub async fn list_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<TraceListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let query = query(q)?.into_query(&caller)?;
    let page = state.store.find_traces(&query).await?;
    Ok(Json(json!(page)))
}

pub fn parse_trace_id(s: &str) -> ApiResult<TraceId> {
    TraceId::from_hex(s)
        .map_err(|_| ApiError::bad_request(format!("`{s}` is not a trace id (32 hex characters)")))
}

pub async fn get_trace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let trace_id = parse_trace_id(&id)?;
    let mut detail = state
        .store
        .get_trace(&caller.project_id, trace_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("trace `{id}`")))?;
    for span in &mut detail.spans {
        merge_log_events(span, &detail.log_events);
    }
    Ok(Json(json!(detail)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionListParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub user: Option<String>,
    pub environment: Option<String>,
    pub agent: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

pub async fn list_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SessionListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let p = query(q)?;
    let offset = match non_empty(&p.cursor) {
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::bad_request("`cursor` is not a cursor this API returned"))?,
        None => 0,
    };
    let sq = SessionQuery {
        project_id: caller.project_id.clone(),
        start_time_min: opt_time("from", &p.from)?,
        start_time_max: opt_time("to", &p.to)?,
        user_id: non_empty(&p.user),
        environment: non_empty(&p.environment),
        agent_name: non_empty(&p.agent),
        limit: limit(p.limit)?,
        offset,
    };
    Ok(Json(json!(state.store.find_sessions(&sq).await?)))
}

pub async fn get_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let detail = state
        .store
        .get_session(&caller.project_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session `{id}`")))?;
    Ok(Json(json!(detail)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Bucket width: `1m`, `5m`, `1h`, `1d`.
    pub bucket: Option<String>,
    pub group_by: Option<String>,
    pub kind: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub agent: Option<String>,
    pub environment: Option<String>,
    pub service: Option<String>,
    pub tool: Option<String>,
}

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<MetricsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let p = query(q)?;
    let to = match non_empty(&p.to) {
        Some(t) => parse_time("to", &t)?,
        None => now_ns(),
    };
    let from = match non_empty(&p.from) {
        Some(t) => parse_time("from", &t)?,
        None => to - 24 * 3_600_000_000_000,
    };
    let bucket_seconds = match non_empty(&p.bucket) {
        Some(b) => parse_duration_secs(&b).ok_or_else(|| {
            ApiError::bad_request(format!("`bucket` must look like 1m, 1h or 1d, got `{b}`"))
        })?,
        // About 48 points whatever the range, in whole minutes.
        None => (((to - from) / 1_000_000_000 / 48) / 60).max(1) * 60,
    };
    let group_by = match non_empty(&p.group_by) {
        Some(g) => Some(MetricsDimension::parse(&g).ok_or_else(|| {
            ApiError::bad_request(format!("`group_by` must be model, provider, agent, environment, service, kind or tool, got `{g}`"))
        })?),
        None => None,
    };
    let kind = match non_empty(&p.kind) {
        Some(k) => Some(
            SpanKind::parse(&k)
                .ok_or_else(|| ApiError::bad_request(format!("unknown span kind `{k}`")))?,
        ),
        None => None,
    };
    let mq = MetricsQuery {
        project_id: caller.project_id.clone(),
        start_time_min: from,
        start_time_max: to,
        bucket_seconds,
        group_by,
        kind,
        model: non_empty(&p.model),
        provider: non_empty(&p.provider),
        agent_name: non_empty(&p.agent),
        environment: non_empty(&p.environment),
        service_name: non_empty(&p.service),
        tool_name: non_empty(&p.tool),
    };
    Ok(Json(json!(state.store.metrics(&mq).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsParams {
    pub from: Option<String>,
    pub unpriced: Option<bool>,
}

/// Spend and usage per model, with the price used, and the models Vigil could not price.
pub async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ModelsParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let p = query(q)?;
    let since = opt_time("from", &p.from)?.unwrap_or(0);
    let rows = state
        .store
        .model_usage(Some(&caller.project_id), since)
        .await?;
    let prices = state.normalizer.prices();
    let models: Vec<Value> = rows
        .into_iter()
        .filter(|r| !p.unpriced.unwrap_or(false) || r.unpriced_count > 0)
        .map(|r| {
            let price = prices.lookup(&r.model);
            json!({
                "model": r.model, "provider": r.provider, "span_count": r.span_count, "unpriced_count": r.unpriced_count,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "cost_usd": r.cost_usd,
                "priced": price.is_some(), "price": price,
            })
        })
        .collect();
    Ok(Json(json!({
        "price_table_as_of": prices.as_of,
        "models": models,
        "how_to_price": "add a [[prices]] entry with name, input, output (USD per million tokens) to vigil.toml",
    })))
}

pub async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let projects = state.store.list_projects().await?;
    let project = projects.into_iter().find(|p| p.id == caller.project_id);
    Ok(Json(
        json!({"project": project, "key": caller.key, "auth": !state.auth.is_insecure()}),
    ))
}

/// Gateway events of the caller's project (budget thresholds crossed), oldest first.
pub async fn gateway_events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = reader(&state, &headers).await?;
    let events = state.store.gateway_events(&caller.project_id, 0).await?;
    Ok(Json(json!({ "events": events })))
}
