//! OTLP/gRPC: the trace and logs collector services on port 4317.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
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
        self.state.auth.authenticate(key.as_deref(), Scope::Ingest).await.map_err(|e| e.to_grpc())
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let resp = super::ingest_traces(&self.state, &caller, request.into_inner()).await.map_err(|e| e.to_grpc())?;
        Ok(Response::new(resp))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(&self, request: Request<ExportLogsServiceRequest>) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let resp = super::ingest_logs(&self.state, &caller, request.into_inner()).await.map_err(|e| e.to_grpc())?;
        Ok(Response::new(resp))
    }
}

/// Builds the gRPC router; messages above the limit fail with `RESOURCE_EXHAUSTED` before decoding.
pub fn router(state: AppState) -> tonic::transport::server::Router {
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
        // Bounds against HTTP/2 abuse (rapid reset and stream floods).
        .max_concurrent_streams(Some(256))
        .http2_max_pending_accept_reset_streams(Some(100))
        .timeout(std::time::Duration::from_secs(60))
        .add_service(traces)
        .add_service(logs)
}
