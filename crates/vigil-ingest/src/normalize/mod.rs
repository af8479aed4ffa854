//! OTLP span → canonical `Span`.
//!
//! Each convention module fills only the fields still empty, in order of precedence: current
//! OpenTelemetry GenAI, then OpenInference, then OpenLLMetry, then generic fallbacks. A span may
//! carry several conventions at once (an OpenInference span with `gen_ai.*` keys), and the first
//! convention to know a field wins. Unknown spans become `other`, with every attribute kept.

mod attrs;
pub mod events;
pub mod flags;
mod genai;
mod messages;
mod openinference;
/// OpenAI-shaped message objects → canonical messages (the gateway reads request and response
/// bodies with the same parser as ingest).
pub use messages::from_openai_objects;
mod openllmetry;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind as OtlpKind, status::StatusCode, Span as OtlpSpan,
};
use serde_json::{Map, Value};
use vigil_model::keys::{genai as g, otel};
use vigil_model::{
    PriceTable, ProjectId, Span, SpanEvent, SpanId, SpanKind, SpanLink, SpanStatus, TraceId,
};

pub use attrs::{to_json, Attrs};
pub use vigil_model::LogEvent;

#[derive(Debug, Clone, PartialEq)]
pub struct RejectedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct NormalizeOutcome {
    pub spans: Vec<Span>,
    pub rejected: Vec<RejectedSpan>,
}

impl NormalizeOutcome {
    /// The OTLP `partial_success.error_message`: the first few reasons, with a count.
    pub fn rejection_message(&self) -> Option<String> {
        if self.rejected.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .rejected
            .iter()
            .take(3)
            .map(|r| format!("span `{}`: {}", r.span_id, r.reason))
            .collect();
        let more = self.rejected.len().saturating_sub(3);
        let suffix = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        Some(format!(
            "{} span(s) rejected: {}{}",
            self.rejected.len(),
            shown.join("; "),
            suffix
        ))
    }
}

/// Resource-level context shared by every span of a `ResourceSpans`.
struct ResourceContext {
    attributes: Map<String, Value>,
    service_name: Option<String>,
    service_version: Option<String>,
    environment: Option<String>,
}

impl ResourceContext {
    fn new(attributes: Map<String, Value>) -> Self {
        let a = Attrs::new(&attributes);
        Self {
            service_name: a.text(otel::SERVICE_NAME),
            service_version: a.text(otel::SERVICE_VERSION),
            environment: a.first_str(&[
                otel::DEPLOYMENT_ENVIRONMENT_NAME,
                otel::DEPLOYMENT_ENVIRONMENT,
            ]),
            attributes,
        }
    }
}

#[derive(Clone)]
pub struct Normalizer {
    prices: Arc<PriceTable>,
}

impl Normalizer {
    pub fn new(prices: Arc<PriceTable>) -> Self {
        Self { prices }
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// `traces_owned` for a request the caller keeps (it is copied).
    pub fn traces(
        &self,
        project: &ProjectId,
        request: &ExportTraceServiceRequest,
    ) -> NormalizeOutcome {
        self.traces_owned(project, request.clone())
    }

    /// Normalises every span of an export request. Taking the request lets attribute keys and
    /// values (message bodies among them, most of a request's bytes) move into the spans.
    pub fn traces_owned(
        &self,
        project: &ProjectId,
        request: ExportTraceServiceRequest,
    ) -> NormalizeOutcome {
        let mut out = NormalizeOutcome::default();
        for rs in request.resource_spans {
            let resource = ResourceContext::new(
                rs.resource
                    .map(|r| attrs::flatten_owned(r.attributes))
                    .unwrap_or_default(),
            );
            for ss in rs.scope_spans {
                let (scope_name, scope_version) = ss
                    .scope
                    .as_ref()
                    .map(|s| (non_empty(&s.name), non_empty(&s.version)))
                    .unwrap_or((None, None));
                for mut span in ss.spans {
                    let attributes = attrs::flatten_owned(std::mem::take(&mut span.attributes));
                    match self.span(
                        project,
                        &span,
                        attributes,
                        &resource,
                        scope_name.clone(),
                        scope_version.clone(),
                    ) {
                        Ok(s) => out.spans.push(s),
                        Err(reason) => out.rejected.push(RejectedSpan {
                            trace_id: hex::encode(&span.trace_id),
                            span_id: hex::encode(&span.span_id),
                            reason,
                        }),
                    }
                }
            }
        }
        inherit_from_ancestors(&mut out.spans);
        out
    }

    pub fn logs(&self, request: &ExportLogsServiceRequest) -> Vec<LogEvent> {
        events::from_logs(request)
    }

    /// `otlp`'s attributes arrive already flattened, as `attributes`.
    fn span(
        &self,
        project: &ProjectId,
        otlp: &OtlpSpan,
        attributes: Map<String, Value>,
        resource: &ResourceContext,
        scope_name: Option<String>,
        scope_version: Option<String>,
    ) -> Result<Span, String> {
        let trace_id = TraceId::from_bytes(&otlp.trace_id).map_err(|e| e.to_string())?;
        let span_id = SpanId::from_bytes(&otlp.span_id).map_err(|e| e.to_string())?;
        let parent_span_id = match otlp.parent_span_id.as_slice() {
            [] => None,
            bytes if bytes.iter().all(|b| *b == 0) => None,
            bytes => Some(SpanId::from_bytes(bytes).map_err(|e| format!("parent_{e}"))?),
        };
        if otlp.start_time_unix_nano == 0 {
            return Err("`start_time_unix_nano` is required".into());
        }
        let start_time = i64::try_from(otlp.start_time_unix_nano)
            .map_err(|_| "`start_time_unix_nano` is out of range".to_string())?;
        let end_time = i64::try_from(otlp.end_time_unix_nano)
            .unwrap_or(start_time)
            .max(start_time);

        let events: Vec<SpanEvent> = otlp
            .events
            .iter()
            .map(|e| SpanEvent {
                name: e.name.clone(),
                time: i64::try_from(e.time_unix_nano).unwrap_or(0),
                attributes: attrs::flatten(&e.attributes),
            })
            .collect();
        let links = otlp
            .links
            .iter()
            .filter_map(|l| {
                Some(SpanLink {
                    trace_id: TraceId::from_bytes(&l.trace_id).ok()?,
                    span_id: SpanId::from_bytes(&l.span_id).ok()?,
                    attributes: attrs::flatten(&l.attributes),
                })
            })
            .collect();
        let (status, status_message) = match otlp.status.as_ref() {
            Some(s) if s.code == StatusCode::Error as i32 => {
                (SpanStatus::Error, non_empty(&s.message))
            }
            Some(s) if s.code == StatusCode::Ok as i32 => (SpanStatus::Ok, None),
            _ => (SpanStatus::Unset, None),
        };

        let mut span = Span {
            trace_id,
            span_id,
            parent_span_id,
            project_id: project.clone(),
            name: otlp.name.clone(),
            service_name: resource.service_name.clone(),
            service_version: resource.service_version.clone(),
            environment: resource.environment.clone(),
            start_time,
            end_time,
            duration_ms: (end_time - start_time) as f64 / 1e6,
            status,
            error_message: status_message,
            scope_name,
            scope_version,
            otel_kind: otel_kind_name(otlp.kind),
            events,
            links,
            resource_attributes: resource.attributes.clone(),
            ..Span::default()
        };

        let a = Attrs::new(&attributes);
        let mut raw_tool_result = None;
        genai::apply(&a, &mut span, &mut raw_tool_result);
        openinference::apply(&a, &mut span, &mut raw_tool_result);
        openllmetry::apply(&a, &mut span, &mut raw_tool_result);
        generic_fallbacks(&a, &mut span);
        events::apply_span_events(&mut span);
        finish(&self.prices, &mut span, raw_tool_result.as_ref());
        span.attributes = attributes;
        Ok(span)
    }
}

/// Agent, session and user are usually set once, on the agent span; its LLM and tool calls inherit
/// them from the nearest ancestor in the same export, so per-agent metrics cover every step.
fn inherit_from_ancestors(spans: &mut [Span]) {
    let index: foldhash::HashMap<(TraceId, SpanId), usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.trace_id, s.span_id), i))
        .collect();
    for i in 0..spans.len() {
        let (mut agent, mut session, mut user) = (None, None, None);
        let mut parent = spans[i].parent_span_id;
        let mut hops = 0;
        while let (Some(p), true) = (parent, hops < 64) {
            let Some(&j) = index.get(&(spans[i].trace_id, p)) else {
                break;
            };
            let a = &spans[j];
            agent = agent.or_else(|| a.agent_name.clone());
            session = session.or_else(|| a.session_id.clone());
            user = user.or_else(|| a.user_id.clone());
            parent = a.parent_span_id;
            hops += 1;
        }
        let s = &mut spans[i];
        fill(&mut s.agent_name, || agent);
        fill(&mut s.session_id, || session);
        fill(&mut s.user_id, || user);
    }
}

/// Fields every convention shares or none of them sets.
fn generic_fallbacks(a: &Attrs, span: &mut Span) {
    fill(&mut span.session_id, || {
        a.first_str(&[otel::SESSION_ID, g::CONVERSATION_ID])
    });
    fill(&mut span.user_id, || {
        a.first_str(&[otel::USER_ID, otel::ENDUSER_ID])
    });
    fill(&mut span.environment, || {
        a.first_str(&[
            otel::DEPLOYMENT_ENVIRONMENT_NAME,
            otel::DEPLOYMENT_ENVIRONMENT,
        ])
    });
    let resource = Attrs::new(&span.resource_attributes);
    let session = resource.first_str(&[otel::SESSION_ID]);
    let user = resource.first_str(&[otel::USER_ID]);
    fill(&mut span.session_id, || session);
    fill(&mut span.user_id, || user);
    if span.error_message.is_none() {
        span.error_message = span
            .events
            .iter()
            .find(|e| e.name == otel::EXCEPTION_EVENT)
            .and_then(|e| {
                let ea = Attrs::new(&e.attributes);
                match (
                    ea.text(otel::EXCEPTION_TYPE),
                    ea.text(otel::EXCEPTION_MESSAGE),
                ) {
                    (Some(t), Some(m)) => Some(format!("{t}: {m}")),
                    (t, m) => m.or(t),
                }
            })
            .or_else(|| {
                a.text(otel::ERROR_TYPE)
                    .filter(|_| span.status == SpanStatus::Error)
            });
    }
    // `error.type` is how GenAI instrumentations mark a failed call when they leave status unset.
    if span.status == SpanStatus::Unset {
        if let Some(t) = a.text(otel::ERROR_TYPE) {
            span.status = SpanStatus::Error;
            span.error_message.get_or_insert(t);
        }
    }
    if span.kind == SpanKind::Other
        && (span.model.is_some()
            && (span.input_tokens.is_some() || !span.output_messages.is_empty()))
    {
        span.kind = SpanKind::Llm;
    }
}

/// Derived fields: provider guess, cost, flags.
fn finish(prices: &PriceTable, span: &mut Span, raw_tool_result: Option<&Value>) {
    if matches!(span.kind, SpanKind::Llm | SpanKind::Embedding) {
        if span.provider.is_none() {
            span.provider = span
                .model
                .as_deref()
                .or(span.response_model.as_deref())
                .and_then(guess_provider)
                .map(str::to_string);
        }
        let usage = span.usage();
        span.cost_usd = span
            .model
            .as_deref()
            .and_then(|m| prices.cost(m, usage))
            .or_else(|| {
                span.response_model
                    .as_deref()
                    .and_then(|m| prices.cost(m, usage))
            });
    }
    if span.kind == SpanKind::Tool && span.tool_name.is_none() {
        let name = span
            .name
            .strip_prefix("execute_tool ")
            .unwrap_or(&span.name)
            .trim()
            .to_string();
        span.tool_name = Some(name);
    }
    span.finish_reasons.dedup();
    flags::apply(span, raw_tool_result);
}

/// Normalised provider ids (`gen_ai.provider.name` style) for the values instrumentations send.
fn normalize_provider(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    match lower.as_str() {
        "az.ai.openai" | "azure" | "azure_openai" | "azure.ai.openai" => "azure.ai.openai".into(),
        "vertexai" | "vertex_ai" | "gcp.vertex_ai" => "gcp.vertex_ai".into(),
        "gemini" | "google" | "gcp.gemini" | "google_genai" => "gcp.gemini".into(),
        "mistralai" | "mistral" | "mistral_ai" => "mistral_ai".into(),
        "xai" | "x_ai" | "x-ai" => "x_ai".into(),
        "bedrock" | "aws" | "aws.bedrock" | "aws_bedrock" => "aws.bedrock".into(),
        _ => lower,
    }
}

fn guess_provider(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m).to_string();
    let table: [(&[&str], &str); 7] = [
        (
            &[
                "gpt-",
                "o1",
                "o3",
                "o4",
                "text-embedding-",
                "chatgpt",
                "davinci",
            ],
            "openai",
        ),
        (&["claude"], "anthropic"),
        (&["gemini", "gemma"], "gcp.gemini"),
        (
            &[
                "mistral",
                "mixtral",
                "codestral",
                "ministral",
                "magistral",
                "devstral",
            ],
            "mistral_ai",
        ),
        (&["deepseek"], "deepseek"),
        (&["grok"], "x_ai"),
        (&["command"], "cohere"),
    ];
    table
        .iter()
        .find(|(prefixes, _)| prefixes.iter().any(|p| m.starts_with(p)))
        .map(|(_, p)| *p)
}

fn otel_kind_name(kind: i32) -> Option<String> {
    let name = match OtlpKind::try_from(kind).ok()? {
        OtlpKind::Unspecified => return None,
        OtlpKind::Internal => "internal",
        OtlpKind::Server => "server",
        OtlpKind::Client => "client",
        OtlpKind::Producer => "producer",
        OtlpKind::Consumer => "consumer",
    };
    Some(name.into())
}

pub(crate) fn fill<T>(slot: &mut Option<T>, f: impl FnOnce() -> Option<T>) {
    if slot.is_none() {
        *slot = f();
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests;
