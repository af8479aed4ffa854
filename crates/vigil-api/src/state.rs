//! Shared state of the HTTP and gRPC servers.

use std::sync::Arc;

use tokio::sync::Semaphore;
use vigil_governance::Governance;
use vigil_ingest::Normalizer;
use vigil_quality::ingest::IngestEvaluators;
use vigil_store::sink::SpanFilter;
use vigil_store::IngestVerdicts;
use vigil_store::Store;

use crate::auth::Authenticator;

/// Limits applied at the network edge.
#[derive(Clone, Debug)]
pub struct EdgeLimits {
    /// Largest OTLP body accepted, after decompression (bytes).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held in memory at once across all ingest requests.
    pub max_inflight_bytes: usize,
    /// Largest gRPC message (bytes).
    pub max_grpc_message_bytes: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 20 * 1024 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            max_grpc_message_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub normalizer: Normalizer,
    pub auth: Authenticator,
    /// Redaction before storage, guardrails, approvals and the audit trail.
    pub governance: Arc<Governance>,
    pub limits: EdgeLimits,
    /// One permit per KiB of request body in memory; exhausted permits mean back-pressure.
    pub inflight: Arc<Semaphore>,
    /// Span-scoped rule evaluators that judge spans as they are ingested.
    pub ingest_evaluators: Arc<IngestEvaluators>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        normalizer: Normalizer,
        auth: Authenticator,
        governance: Arc<Governance>,
        limits: EdgeLimits,
    ) -> Self {
        let permits = (limits.max_inflight_bytes / 1024).max(1);
        Self {
            store,
            normalizer,
            auth,
            governance,
            inflight: Arc::new(Semaphore::new(permits)),
            limits,
            ingest_evaluators: IngestEvaluators::none(),
        }
    }

    pub fn with_ingest_evaluators(mut self, evaluators: Arc<IngestEvaluators>) -> Self {
        self.ingest_evaluators = evaluators;
        self
    }

    /// What spans made inside Vigil (gateway calls) go through before they are stored, like OTLP
    /// spans: the project's redaction, then the ingest evaluators.
    pub fn span_filter(&self) -> Arc<dyn SpanFilter> {
        Arc::new(RedactThenJudge {
            governance: self.governance.clone(),
            evaluators: self.ingest_evaluators.clone(),
        })
    }
}

struct RedactThenJudge {
    governance: Arc<Governance>,
    evaluators: Arc<IngestEvaluators>,
}

#[async_trait::async_trait]
impl SpanFilter for RedactThenJudge {
    async fn filter(&self, spans: &mut [vigil_model::Span]) -> IngestVerdicts {
        self.governance.redact_spans_of_projects(spans).await;
        self.evaluators.judge(spans)
    }
}
