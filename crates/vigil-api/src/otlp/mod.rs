//! OTLP receivers. Transport-specific code lives in `http` and `grpc`; both end in `ingest`.

pub mod grpc;
pub mod http;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use vigil_model::LogEvent;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// Normalises and stores an export; returns only after the accepted spans are durable.
pub async fn ingest_traces(
    state: &AppState,
    caller: &Caller,
    request: ExportTraceServiceRequest,
) -> ApiResult<ExportTraceServiceResponse> {
    let mut outcome = state.normalizer.traces_owned(&caller.project_id, request);
    state
        .governance
        .redact_spans(&caller.project_id, &mut outcome.spans)
        .await;
    state
        .governance
        .audit_executions(&caller.project_id, &outcome.spans)
        .await;
    let message = outcome.rejection_message();
    let rejected = outcome.rejected.len() as i64;
    let accepted = outcome.spans.len();
    // Span-scoped rule evaluators judge the spans now, on their redacted form as stored; the
    // scores commit with the spans.
    let verdicts = state.ingest_evaluators.judge(&outcome.spans);
    state
        .store
        .write_spans_judged(outcome.spans, verdicts)
        .await?;
    tracing::debug!(project = %caller.project_id, accepted, rejected, "ingested spans");
    // Per the OTLP spec, `partial_success` stays unset when everything was accepted.
    let partial_success = message.map(|error_message| ExportTracePartialSuccess {
        rejected_spans: rejected,
        error_message,
    });
    Ok(ExportTraceServiceResponse { partial_success })
}

pub async fn ingest_logs(
    state: &AppState,
    caller: &Caller,
    request: ExportLogsServiceRequest,
) -> ApiResult<ExportLogsServiceResponse> {
    let mut events: Vec<LogEvent> = state.normalizer.logs(&request);
    drop(request);
    state
        .governance
        .redact_logs(&caller.project_id, &mut events)
        .await;
    state
        .store
        .write_log_events(&caller.project_id, events)
        .await?;
    Ok(ExportLogsServiceResponse {
        partial_success: None::<ExportLogsPartialSuccess>,
    })
}
