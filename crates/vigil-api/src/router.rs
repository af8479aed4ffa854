//! The HTTP routers: the API port (query API, OTLP/HTTP; the binary merges the UI into it) and the
//! OTLP port.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ErrorCode};
use crate::otlp::http::{export_logs, export_traces};
use crate::state::AppState;
use crate::{governance_api, quality_api, query_api};

pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route of the API port, for the OpenAPI completeness test.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/traces"),
    ("get", "/api/v1/traces/{trace_id}"),
    ("get", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{session_id}"),
    ("get", "/api/v1/metrics"),
    ("get", "/api/v1/models"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/gateway/events"),
    ("post", "/api/v1/guard/tool-call"),
    ("get", "/api/v1/guard/policy"),
    ("put", "/api/v1/guard/policy"),
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/approvals/{approval_id}"),
    ("post", "/api/v1/approvals/{approval_id}/approve"),
    ("post", "/api/v1/approvals/{approval_id}/deny"),
    ("post", "/api/v1/approvals/{approval_id}/redeem"),
    ("get", "/api/v1/evaluators"),
    ("put", "/api/v1/evaluators/{name}"),
    ("post", "/api/v1/evaluators/{name}/backfill"),
    ("get", "/api/v1/evaluators/{name}/alignment"),
    ("get", "/api/v1/datasets"),
    ("get", "/api/v1/datasets/{name}"),
    ("post", "/api/v1/datasets/{name}/items"),
    ("get", "/api/v1/experiments"),
    ("post", "/api/v1/experiments"),
    ("get", "/api/v1/experiments/compare"),
    ("get", "/api/v1/experiments/{id}"),
    ("get", "/api/v1/annotations/queue"),
    ("post", "/api/v1/annotations"),
    ("get", "/api/v1/annotations/agreement"),
    ("get", "/api/v1/failure-modes"),
    ("post", "/api/v1/failure-modes"),
    ("get", "/api/v1/failure-modes/candidates"),
    ("get", "/api/v1/quality/summary"),
    ("get", "/api/v1/failure-modes/{id}"),
    ("post", "/api/v1/failure-modes/{id}/examples"),
    ("post", "/api/v1/failure-modes/{id}/fix"),
    ("post", "/api/v1/scores"),
    ("get", "/api/v1/scores"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/audit/verify"),
    ("post", "/api/v1/erasure"),
    ("get", "/api/v1/redaction/stats"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/v1/traces"),
    ("post", "/v1/logs"),
    ("get", "/healthz"),
];

fn otlp_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/logs", post(export_logs))
}

/// The routes of the API port (7070 by default): query API, OTLP/HTTP for single-port setups,
/// health. The binary merges the UI and the gateway into it, then wraps the whole port in `edge`.
pub fn api_router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/traces", get(query_api::list_traces))
        .route("/api/v1/traces/{trace_id}", get(query_api::get_trace))
        .route("/api/v1/sessions", get(query_api::list_sessions))
        .route("/api/v1/sessions/{session_id}", get(query_api::get_session))
        .route("/api/v1/metrics", get(query_api::metrics))
        .route("/api/v1/models", get(query_api::models))
        .route("/api/v1/whoami", get(query_api::whoami))
        .route("/api/v1/gateway/events", get(query_api::gateway_events))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/evaluators", get(quality_api::list_evaluators))
        .route("/api/v1/evaluators/{name}", put(quality_api::put_evaluator))
        .route(
            "/api/v1/evaluators/{name}/backfill",
            post(quality_api::backfill),
        )
        .route(
            "/api/v1/evaluators/{name}/alignment",
            get(quality_api::evaluator_alignment),
        )
        .route(
            "/api/v1/scores",
            get(quality_api::list_scores).post(quality_api::post_score),
        )
        .route(
            "/api/v1/failure-modes",
            get(quality_api::list_failure_modes).post(quality_api::put_failure_mode),
        )
        .route(
            "/api/v1/failure-modes/candidates",
            get(quality_api::failure_mode_candidates),
        )
        .route("/api/v1/quality/summary", get(quality_api::quality_summary))
        .route(
            "/api/v1/failure-modes/{id}",
            get(quality_api::get_failure_mode),
        )
        .route(
            "/api/v1/failure-modes/{id}/examples",
            post(quality_api::add_example),
        )
        .route("/api/v1/failure-modes/{id}/fix", post(quality_api::fix))
        .route("/api/v1/annotations", post(quality_api::post_annotation))
        .route("/api/v1/datasets", get(quality_api::list_datasets))
        .route("/api/v1/datasets/{name}", get(quality_api::get_dataset))
        .route(
            "/api/v1/datasets/{name}/items",
            post(quality_api::add_dataset_items),
        )
        .route(
            "/api/v1/experiments",
            get(quality_api::list_experiments).post(quality_api::post_experiment),
        )
        .route(
            "/api/v1/experiments/compare",
            get(quality_api::compare_experiments),
        )
        .route("/api/v1/experiments/{id}", get(quality_api::get_experiment))
        .route(
            "/api/v1/annotations/queue",
            get(quality_api::annotation_queue),
        )
        .route(
            "/api/v1/annotations/agreement",
            get(quality_api::annotation_agreement),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ));
    // Long polls wait up to 60 s, so the guard routes sit outside the 30 s request timeout.
    let guard = Router::new()
        .route(
            "/api/v1/guard/tool-call",
            post(governance_api::check_tool_call),
        )
        .route(
            "/api/v1/guard/policy",
            get(governance_api::get_policy).put(governance_api::put_policy),
        )
        .route("/api/v1/approvals", get(governance_api::list_approvals))
        .route(
            "/api/v1/approvals/{approval_id}",
            get(governance_api::get_approval),
        )
        .route(
            "/api/v1/approvals/{approval_id}/approve",
            post(governance_api::approve),
        )
        .route(
            "/api/v1/approvals/{approval_id}/deny",
            post(governance_api::deny),
        )
        .route(
            "/api/v1/approvals/{approval_id}/redeem",
            post(governance_api::redeem),
        )
        .route("/api/v1/audit", get(governance_api::audit_entries))
        .route("/api/v1/audit/verify", get(governance_api::audit_verify))
        .route("/api/v1/erasure", post(governance_api::erasure))
        .route(
            "/api/v1/redaction/stats",
            get(governance_api::redaction_stats),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(90),
        ));
    Router::new()
        .merge(api)
        .merge(guard)
        .merge(otlp_routes())
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The OTLP/HTTP port (4318 by default).
pub fn otlp_router(state: AppState) -> Router {
    edge(
        otlp_routes()
            .route("/healthz", get(healthz))
            .with_state(state),
    )
}

/// What every HTTP port gets around all of its routes, whichever crate added them: request
/// tracing, a panic answered as a 500 (never a dropped connection), and a JSON 404.
pub fn edge(router: Router) -> Router {
    router
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::Internal, "internal error").into_response()
        }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route; see /api/v1/openapi.json",
    )
}
