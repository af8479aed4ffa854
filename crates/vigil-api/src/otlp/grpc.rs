//! OTLP/gRPC: the trace and logs collector services on port 4317.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use vigil_store::Scope;

use crate::auth::{Authenticator, Caller};
use crate::state::AppState;

#[derive(Clone)]
pub struct OtlpGrpc {
    state: AppState,
}

impl OtlpGrpc {
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let headers = req.metadata().clone().into_headers();
        let key = Authenticator::key_from_headers(&headers);
        self.state
            .auth
            .authenticate(key.as_deref(), Scope::Ingest)
            .await
            .map_err(|e| e.to_grpc())
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let resp = super::ingest_traces(&self.state, &caller, request.into_inner())
            .await
            .map_err(|e| e.to_grpc())?;
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let resp = super::ingest_logs(&self.state, &caller, request.into_inner())
            .await
            .map_err(|e| e.to_grpc())?;
        Ok(Response::new(resp))
    }
}

/// tonic reports a message above `max_decoding_message_size` as `OUT_OF_RANGE`; the OTLP
/// specification (and every OTLP client's retry logic) expects `RESOURCE_EXHAUSTED`.
fn oversize_is_resource_exhausted<B>(mut resp: axum::http::Response<B>) -> axum::http::Response<B> {
    let h = resp.headers();
    let out_of_range = h.get("grpc-status").is_some_and(|v| v == "11");
    let too_large = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        });
    if out_of_range && too_large {
        resp.headers_mut()
            .insert("grpc-status", axum::http::HeaderValue::from_static("8"));
    }
    resp
}

/// Builds the gRPC router; messages above the limit fail with `RESOURCE_EXHAUSTED` before decoding.
type GrpcResponse = axum::http::Response<tonic::body::Body>;
pub type GrpcRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<
        tower::util::MapResponseLayer<fn(GrpcResponse) -> GrpcResponse>,
        tower::layer::util::Identity,
    >,
>;

pub fn router(state: AppState) -> GrpcRouter {
    let limit = state.limits.max_grpc_message_bytes;
    let svc = OtlpGrpc { state };
    let traces = TraceServiceServer::new(svc.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let logs = LogsServiceServer::new(svc)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted as fn(GrpcResponse) -> GrpcResponse,
        ))
        // Bounds against HTTP/2 abuse (rapid reset and stream floods).
        .max_concurrent_streams(Some(256))
        .http2_max_pending_accept_reset_streams(Some(100))
        .timeout(std::time::Duration::from_secs(60))
        .add_service(traces)
        .add_service(logs)
}
