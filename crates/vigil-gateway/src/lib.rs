//! The LLM gateway on Vigil's API port: OpenAI-compatible `POST /v1/chat/completions`,
//! `POST /v1/embeddings` and `GET /v1/models`, Anthropic-compatible `POST /v1/messages`.
//!
//! A request names a model; `routing` turns it into an ordered list of targets (provider + model).
//! Each target is tried with retries (429, 5xx, connection errors, timeouts; exponential backoff
//! with jitter, `Retry-After` honoured) behind a circuit breaker, then the next target takes over.
//! When the caller's format differs from the provider's, `translate` converts the request, the
//! response and the stream. Every call ends as an `llm` span (`record`) joined to the caller's
//! trace when it sends `traceparent`.

pub mod cache;
pub mod config;
pub mod format;
pub mod limits;
pub mod record;
pub mod routing;
pub mod sse;
pub mod translate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use vigil_api::{AppState, Authenticator};
use vigil_model::{now_unix_nanos, Message, ToolCall};
use vigil_store::Scope;

use crate::config::{ProviderKind, Resolved};
use crate::format::{ApiFormat, GatewayError};
use crate::record::{CallRecord, Outcome, SpanSink};
use crate::routing::{backoff, Health, Target};
use crate::sse::SseParser;

/// Largest upstream response body read into memory (non-streaming).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Largest single stream event accepted from an upstream.
const MAX_STREAM_EVENT: usize = 4 * 1024 * 1024;
/// Output text kept for the trace of a streamed call.
const MAX_TRACED_OUTPUT: usize = 256 * 1024;
const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Gateway {
    cfg: Resolved,
    cache: Option<cache::Cache>,
    limits: Arc<limits::Limits>,
    /// One HTTP client per provider: connection pools and connect timeouts are per provider.
    clients: HashMap<String, Upstream>,
    health: Health,
    sink: SpanSink,
    auth: Authenticator,
    state: AppState,
}

/// A provider's HTTP client and its endpoints' URLs, parsed once (`None`: built per call, as
/// Azure's name the deployment).
struct Upstream {
    client: reqwest::Client,
    chat: Option<reqwest::Url>,
    embeddings: Option<reqwest::Url>,
}

impl Gateway {
    pub async fn start(cfg: Resolved, state: AppState) -> Result<Arc<Self>, String> {
        let mut clients = HashMap::new();
        for p in &cfg.providers {
            let client = reqwest::Client::builder()
                .connect_timeout(p.timeouts.connect)
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                // A provider answers; it does not redirect. Not following redirects keeps a provider
                // key from being replayed to a host the configuration never named.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("gateway provider `{}`: {e}", p.name))?;
            // Parsed once: a URL parse per call is measurable at thousands of calls a second.
            let url = |path: &str| reqwest::Url::parse(&format!("{}/{path}", p.base_url)).ok();
            let (chat, embeddings) = match p.kind {
                ProviderKind::Azure => (None, None),
                ProviderKind::Anthropic => (url("messages"), url("embeddings")),
                _ => (url("chat/completions"), url("embeddings")),
            };
            clients.insert(
                p.name.clone(),
                Upstream {
                    client,
                    chat,
                    embeddings,
                },
            );
        }
        Ok(Arc::new(Self {
            cache: cfg
                .cache_enabled
                .then(|| cache::Cache::new(cfg.cache_ttl, cfg.cache_max_bytes)),
            limits: limits::Limits::start(&cfg.limits, state.store.clone()).await,
            health: Health::new(&cfg),
            // Call spans are redacted (and judged by ingest evaluators) on the sink's thread,
            // off the request path.
            sink: SpanSink::start(state.store.clone(), Some(state.span_filter())),
            auth: state.auth.clone(),
            cfg,
            clients,
            state,
        }))
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/messages", post(messages))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .with_state(self.clone())
    }

    /// Spans the gateway could not queue for writing (overload), for monitoring.
    pub fn dropped_spans(&self) -> u64 {
        self.sink.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, ApiFormat::OpenAi, Endpoint::Chat, headers, body).await
}

async fn messages(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, ApiFormat::Anthropic, Endpoint::Chat, headers, body).await
}

async fn embeddings(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    handle(gw, ApiFormat::OpenAi, Endpoint::Embeddings, headers, body).await
}

async fn models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = authenticate(&gw, &headers, ApiFormat::OpenAi).await {
        return e.into_response();
    }
    let mut names: Vec<&String> = gw.cfg.routes.keys().collect();
    names.sort();
    let data: Vec<Value> = names
        .into_iter()
        .map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "vigil"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Embeddings,
}

/// Who is calling: a project API key (no limits of its own) or a gateway virtual key.
struct Identity {
    project: vigil_model::ProjectId,
    key: Option<vigil_store::GatewayKeyInfo>,
}

/// The caller's key: `Authorization: Bearer` (OpenAI SDK), `x-api-key` (Anthropic SDK) or
/// `x-vigil-api-key`; a project API key (`vk_…`) or a gateway virtual key (`gk_…`).
async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    format: ApiFormat,
) -> Result<Identity, GatewayError> {
    let key = Authenticator::key_from_headers(headers).or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    });
    // Vigil's own components (the LLM judge) call for a project with the in-process token.
    if let (Some(k), Some(project)) = (
        key.as_deref(),
        header_str(headers, "x-vigil-internal-project"),
    ) {
        if gw.auth.is_internal(k) {
            return Ok(Identity {
                project: vigil_model::ProjectId(project),
                key: None,
            });
        }
    }
    if let Some(k) = key
        .as_deref()
        .filter(|k| vigil_store::gateway::is_gateway_key(k))
    {
        let info = gw
            .auth
            .gateway_key(k)
            .await
            .map_err(|e| GatewayError::new(format, e.code.http_status(), e.message))?;
        return info
            .map(|i| Identity {
                project: i.project_id.clone(),
                key: Some(i),
            })
            .ok_or_else(|| {
                GatewayError::new(
                    format,
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked gateway key",
                )
            });
    }
    gw.auth
        .authenticate(key.as_deref(), Scope::Ingest)
        .await
        .map(|c| Identity {
            project: c.project_id,
            key: None,
        })
        .map_err(|e| GatewayError::new(format, e.code.http_status(), e.message))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn handle(
    gw: Arc<Gateway>,
    format: ApiFormat,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let start_ns = now_unix_nanos();
    let identity = match authenticate(&gw, &headers, format).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let project = identity.project.clone();
    let err = |status: StatusCode, msg: String| GatewayError::new(format, status, msg);
    let bytes = match axum::body::to_bytes(body, gw.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than {} bytes",
                    gw.cfg.max_body_bytes
                ),
            )
            .into_response()
        }
    };
    let req: Arc<Value> = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Arc::new(v),
        Ok(_) => {
            return err(
                StatusCode::BAD_REQUEST,
                "the request body must be a JSON object".into(),
            )
            .into_response()
        }
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("the request body is not valid JSON: {e}"),
            )
            .into_response()
        }
    };
    let Some(requested) = req["model"].as_str().map(str::to_string) else {
        return err(StatusCode::BAD_REQUEST, "`model` is required".into()).into_response();
    };
    if let Some(k) = &identity.key {
        if !k.spec.models.is_empty() && !k.spec.models.contains(&requested) {
            return err(
                StatusCode::FORBIDDEN,
                format!(
                    "this key may not use model `{requested}` (allowed: {})",
                    k.spec.models.join(", ")
                ),
            )
            .into_response();
        }
    }
    let caller = limits::Caller {
        project: project.clone(),
        key: identity.key.as_ref().map(|k| {
            (
                k.id.clone(),
                limits::Limit {
                    rpm: k.spec.rpm,
                    tpm: k.spec.tpm,
                    budget_usd: k.spec.budget_usd,
                    budget_period: k.spec.budget_period.clone(),
                },
            )
        }),
        team: identity.key.as_ref().and_then(|k| k.spec.team.clone()),
        user: header_str(&headers, "x-vigil-user")
            .or_else(|| identity.key.as_ref().and_then(|k| k.spec.user.clone())),
        model: requested.clone(),
    };
    if let Err(refusal) = gw.limits.admit(&caller) {
        return err(StatusCode::TOO_MANY_REQUESTS, refusal.message)
            .with_retry_after(refusal.retry_after)
            .into_response();
    }
    let Some(targets) = routing::targets(&gw.cfg, &gw.health, &requested) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("model `{requested}` is not served here: no gateway provider is configured"),
        )
        .into_response();
    };
    let stream = endpoint == Endpoint::Chat && req["stream"].as_bool() == Some(true);
    let client_wants_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let record = CallRecord {
        project: project.clone(),
        trace: header_str(&headers, "traceparent").and_then(|t| record::parse_traceparent(&t)),
        start_ns,
        requested_model: requested.clone(),
        target_model: None,
        provider: None,
        client_format: match format {
            ApiFormat::OpenAi => "openai",
            ApiFormat::Anthropic => "anthropic",
        },
        request: match format {
            ApiFormat::OpenAi => req.clone(),
            ApiFormat::Anthropic => {
                Arc::new(translate::anthropic_request_to_openai(&req, &requested))
            }
        },
        attempts: Vec::new(),
        circuit: None,
        session: header_str(&headers, "x-vigil-session"),
        user: caller.user.clone(),
        tags: header_str(&headers, "x-vigil-tags"),
        key: identity
            .key
            .as_ref()
            .map(|k| (k.id.clone(), k.spec.team.clone())),
        cost_saved_usd: None,
        embedding: false,
        guard: Vec::new(),
        outcome: Outcome::default(),
    };
    let mut ctx = CallCtx {
        caller,
        cache_key: None,
        embedding: None,
    };
    // Caches, unless the caller opts out with `x-vigil-cache: off`.
    let cache_wanted = endpoint == Endpoint::Chat
        && !matches!(
            header_str(&headers, "x-vigil-cache").as_deref(),
            Some("off" | "no" | "false" | "no-store")
        );
    if let (Some(c), true) = (&gw.cache, cache_wanted) {
        let key = cache::exact_key(project.as_str(), &requested, &record.request);
        let mut hit = c.get(&key).map(|e| (e, "exact", 1.0));
        if hit.is_none() {
            if let Some(sem) = &gw.cfg.semantic {
                if let Some(text) = cache::semantic_text(&record.request) {
                    ctx.embedding = embed(&gw, &sem.embedding_model, &text).await;
                    if let Some(v) = &ctx.embedding {
                        hit = c
                            .nearest((project.as_str(), &requested), v, sem.threshold)
                            .map(|(e, sim)| (e, "semantic", sim));
                    }
                }
            }
        }
        if let Some((entry, kind, similarity)) = hit {
            return serve_cached(
                &gw,
                entry,
                kind,
                similarity,
                record,
                &ctx,
                format,
                stream,
                client_wants_usage,
            );
        }
        ctx.cache_key = Some(key);
    }
    // From here the call may go upstream: if the client goes away meanwhile, the handler's future is
    // dropped (which cancels the upstream request) and the guard records the call as cancelled.
    let mut guard = CancelGuard {
        gw: gw.clone(),
        parts: Some((record.clone(), ctx.clone())),
    };
    let res = try_targets(
        &gw,
        format,
        endpoint,
        &headers,
        &req,
        &bytes,
        &requested,
        &targets,
        stream,
        client_wants_usage,
        started,
        record,
        ctx,
    )
    .await;
    guard.parts = None;
    res
}

/// Records a call whose client went away before it was answered.
struct CancelGuard {
    gw: Arc<Gateway>,
    parts: Option<(CallRecord, CallCtx)>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some((mut record, ctx)) = self.parts.take() {
            record.outcome.cancelled = true;
            self.gw.finish(record, &ctx, None);
        }
    }
}

/// Tries the targets in order, with retries, until one answers.
#[allow(clippy::too_many_arguments)]
async fn try_targets(
    gw: &Arc<Gateway>,
    format: ApiFormat,
    endpoint: Endpoint,
    headers: &HeaderMap,
    req: &Value,
    raw: &bytes::Bytes,
    requested: &str,
    targets: &[Target],
    stream: bool,
    client_wants_usage: bool,
    started: Instant,
    mut record: CallRecord,
    ctx: CallCtx,
) -> Response {
    let err = |status: StatusCode, msg: String| GatewayError::new(format, status, msg);
    let mut last_error: Option<GatewayError> = None;
    for (index, target) in targets.iter().enumerate() {
        let key = target.key();
        let (admitted, circuit) = gw.health.admit(&key);
        if !admitted {
            record.attempts.push(
                json!({"target": key, "skipped": "circuit open", "circuit": circuit.as_str()}),
            );
            last_error = Some(
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("every target of `{requested}` is failing; retry shortly"),
                )
                .with_retry_after(gw.cfg.circuit_open_for.as_secs().max(1)),
            );
            continue;
        }
        record.circuit = Some(circuit.as_str());
        if endpoint == Endpoint::Embeddings && target.provider.kind == ProviderKind::Anthropic {
            record
                .attempts
                .push(json!({"target": key, "skipped": "no embeddings on this provider"}));
            continue;
        }
        let upstream_format = target.provider.kind.format();
        // Same format, same model and nothing to add: the client's bytes go upstream as they are.
        let unchanged = format == upstream_format
            && req["model"].as_str() == Some(target.model.as_str())
            && (!stream || upstream_format != ApiFormat::OpenAi || client_wants_usage);
        let upstream_body = match unchanged {
            true => UpstreamBody::Raw(raw.clone()),
            false => UpstreamBody::Json(upstream_request(
                req,
                format,
                upstream_format,
                &target.model,
                stream,
            )),
        };
        // A half-open circuit lets one probe through, without retries.
        let attempts = if circuit == routing::CircuitState::HalfOpen {
            1
        } else {
            1 + gw.cfg.retries
        };
        for attempt in 1..=attempts {
            let t0 = Instant::now();
            let sent = send(gw, target, endpoint, &upstream_body, headers).await;
            let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let mut entry = json!({"target": key, "attempt": attempt, "latency_ms": latency_ms,
                                   "failover": index > 0 && attempt == 1});
            let (retry_after, error) = match sent {
                Ok(resp) if resp.status().is_success() => {
                    entry["status"] = json!(resp.status().as_u16());
                    record.attempts.push(entry);
                    record.target_model = Some(target.model.clone());
                    record.provider = Some(target.provider.kind.span_name().to_string());
                    return if stream {
                        relay_stream(
                            gw.clone(),
                            resp,
                            record,
                            ctx,
                            target.clone(),
                            format,
                            upstream_format,
                            client_wants_usage,
                            t0,
                        )
                    } else {
                        finish_json(
                            gw,
                            resp,
                            record,
                            ctx,
                            target,
                            format,
                            upstream_format,
                            endpoint,
                            t0,
                            started,
                        )
                        .await
                    };
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = read_capped(resp, 64 * 1024).await.unwrap_or_default();
                    let message = upstream_message(&text)
                        .unwrap_or_else(|| format!("upstream answered {status}"));
                    entry["status"] = json!(status.as_u16());
                    entry["error"] = json!(message);
                    record.attempts.push(entry);
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        // The request itself is wrong: no retry, no failover, the caller hears why.
                        gw.health.release_probe(&key);
                        let e = err(
                            status,
                            format!("{} ({}): {message}", target.provider.name, target.model),
                        );
                        record.outcome.error = Some(e.message.clone());
                        record.target_model = Some(target.model.clone());
                        record.provider = Some(target.provider.kind.span_name().to_string());
                        gw.finish(record, &ctx, None);
                        return e.into_response();
                    }
                    let mut e = err(
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            status
                        } else {
                            StatusCode::BAD_GATEWAY
                        },
                        format!(
                            "{} ({}) answered {}: {message}",
                            target.provider.name,
                            target.model,
                            status.as_u16()
                        ),
                    );
                    if let Some(r) = retry_after {
                        e = e.with_retry_after(r.as_secs().max(1));
                    }
                    (retry_after, e)
                }
                Err(failure) => {
                    entry["error"] = json!(failure);
                    record.attempts.push(entry);
                    (
                        None,
                        err(
                            StatusCode::BAD_GATEWAY,
                            format!("{} ({}): {failure}", target.provider.name, target.model),
                        ),
                    )
                }
            };
            last_error = Some(error);
            if gw.health.failure(&key) {
                tracing::warn!(target = %key, "circuit opened after repeated failures");
                break;
            }
            if attempt < attempts {
                let wait = backoff(
                    gw.cfg.backoff_base,
                    gw.cfg.backoff_max,
                    attempt,
                    retry_after,
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
    let e = last_error.unwrap_or_else(|| {
        err(
            StatusCode::BAD_GATEWAY,
            format!("no target could serve `{requested}`"),
        )
    });
    record.outcome.error = Some(e.message.clone());
    gw.finish(record, &ctx, None);
    e.into_response()
}

/// What a call carries to its end: who to charge, and where to cache the answer.
#[derive(Clone)]
struct CallCtx {
    caller: limits::Caller,
    cache_key: Option<[u8; 32]>,
    embedding: Option<Vec<f32>>,
}

impl Gateway {
    /// Ends a call: its span, its tokens and cost against limits and budgets, and (for a complete
    /// answer, given in OpenAI shape) the cache.
    fn finish(&self, record: CallRecord, ctx: &CallCtx, answer: Option<Value>) {
        let target_model = record.target_model.clone().unwrap_or_default();
        let provider = record.provider.clone().unwrap_or_default();
        // A cache hit used no tokens and cost nothing: it counts against no limit.
        let cache_hit = record.outcome.cache_hit;
        let span = record.into_span(self.state.normalizer.prices());
        let tokens = span.input_tokens.unwrap_or(0) + span.output_tokens.unwrap_or(0);
        let cost = span.cost_usd;
        if !cache_hit {
            self.limits.settle(&ctx.caller, tokens.max(0) as u64, cost);
        }
        if let (Some(c), Some(key), Some(answer)) = (&self.cache, ctx.cache_key, answer) {
            c.put(
                key,
                (ctx.caller.project.as_str(), &ctx.caller.model),
                cache::Entry {
                    response: answer,
                    cost_usd: cost,
                    target_model,
                    provider,
                },
                ctx.embedding.clone(),
            );
        }
        self.record_span(span);
    }

    /// Stores a call's span; the sink applies the project's redaction before writing, like
    /// OTLP ingest.
    fn record_span(&self, span: vigil_model::Span) {
        self.sink.record(span);
    }

    /// Applies the project's guardrail policy to the tool calls in a model's answer. Verdicts go
    /// on the span; with `gateway_tool_calls = "block"` a denied or undeclared tool call refuses
    /// the answer (the message says which call and why).
    async fn police_tool_calls(&self, record: &mut CallRecord) -> Option<String> {
        let calls: Vec<&vigil_model::ToolCall> = record
            .outcome
            .output
            .iter()
            .flat_map(|m| &m.tool_calls)
            .collect();
        if calls.is_empty() {
            return None;
        }
        let policy = self.state.governance.policy(&record.project).await;
        let declared: Vec<&str> = record.request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .collect();
        let mut refusal = None;
        let mut verdicts = Vec::new();
        for call in calls {
            let (decision, rule, reason) =
                if !declared.is_empty() && !declared.contains(&call.name.as_str()) {
                    (
                        "deny",
                        None,
                        format!("the request did not declare a tool named `{}`", call.name),
                    )
                } else {
                    let d = policy.decide(
                        &vigil_governance::policy::ProposedCall {
                            tool: &call.name,
                            arguments: &call.arguments,
                            agent: None,
                            environment: None,
                        },
                        vigil_governance::policy::TraceSoFar::default(),
                    );
                    let word = match d.action {
                        vigil_governance::policy::Action::Allow => "allow",
                        vigil_governance::policy::Action::Deny => "deny",
                        vigil_governance::policy::Action::RequireApproval => "require_approval",
                    };
                    (word, d.rule, d.reason)
                };
            if decision == "deny"
                && policy.gateway_tool_calls == vigil_governance::policy::GatewayMode::Block
                && refusal.is_none()
            {
                refusal =
                    Some(format!(
                    "the model's answer calls `{}`, which Vigil's tool policy blocks{}: {reason}",
                    call.name,
                    rule.as_deref().map(|r| format!(" (rule `{r}`)")).unwrap_or_default()
                ));
            }
            verdicts.push(
                json!({"tool": call.name, "decision": decision, "rule": rule, "reason": reason}),
            );
        }
        record.guard = verdicts;
        refusal
    }
}

/// The embedding of `text` by the gateway's own embedding model (for the semantic cache).
async fn embed(gw: &Gateway, model: &str, text: &str) -> Option<Vec<f32>> {
    let target = routing::targets(&gw.cfg, &gw.health, model)?
        .into_iter()
        .next()?;
    let body = UpstreamBody::Json(json!({"model": target.model, "input": text}));
    let resp = send(gw, &target, Endpoint::Embeddings, &body, &HeaderMap::new())
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&read_capped(resp, 8 * 1024 * 1024).await.ok()?).ok()?;
    v.pointer("/data/0/embedding")?
        .as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn serve_cached(
    gw: &Gateway,
    entry: cache::Entry,
    kind: &str,
    similarity: f64,
    mut record: CallRecord,
    ctx: &CallCtx,
    client: ApiFormat,
    stream: bool,
    client_wants_usage: bool,
) -> Response {
    record.target_model = Some(entry.target_model.clone());
    record.provider = Some(entry.provider.clone());
    record.outcome.cache_hit = true;
    record.cost_saved_usd = entry.cost_usd;
    record
        .attempts
        .push(json!({"cache": kind, "similarity": similarity}));
    outcome_of(&entry.response, &mut record.outcome);
    record.outcome.ttft_ms = Some(0.0);
    gw.finish(record, ctx, None);
    let mut res = if stream {
        let body = match client {
            ApiFormat::OpenAi => cache::openai_stream_of(&entry.response, client_wants_usage),
            ApiFormat::Anthropic => cache::anthropic_stream_of(&entry.response),
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        match client {
            ApiFormat::OpenAi => axum::Json(entry.response).into_response(),
            ApiFormat::Anthropic => {
                axum::Json(translate::openai_response_to_anthropic(&entry.response)).into_response()
            }
        }
    };
    res.headers_mut().insert(
        "x-vigil-cache",
        HeaderValue::from_static(if kind == "exact" {
            "hit"
        } else {
            "semantic-hit"
        }),
    );
    res
}

/// The body to send upstream: the caller's own (unknown fields kept) with the target's model, or
/// its translation when the formats differ.
fn upstream_request(
    req: &Value,
    from: ApiFormat,
    to: ApiFormat,
    model: &str,
    stream: bool,
) -> Value {
    let mut body = match (from, to) {
        (ApiFormat::OpenAi, ApiFormat::Anthropic) => {
            translate::openai_request_to_anthropic(req, model)
        }
        (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
            translate::anthropic_request_to_openai(req, model)
        }
        _ => {
            let mut b = req.clone();
            b["model"] = json!(model);
            b
        }
    };
    // Ask OpenAI-format upstreams for usage in streams, so every streamed call has token counts.
    if stream && to == ApiFormat::OpenAi {
        body["stream_options"]["include_usage"] = json!(true);
    }
    body
}

/// What is sent upstream: the client's own bytes, or a rewritten request.
enum UpstreamBody {
    Raw(bytes::Bytes),
    Json(Value),
}

async fn send(
    gw: &Gateway,
    target: &Target,
    endpoint: Endpoint,
    body: &UpstreamBody,
    client_headers: &HeaderMap,
) -> Result<reqwest::Response, String> {
    let p = &target.provider;
    let upstream = gw
        .clients
        .get(&p.name)
        .ok_or("no HTTP client for this provider")?;
    let path = match endpoint {
        Endpoint::Chat if p.kind == ProviderKind::Anthropic => "messages",
        Endpoint::Chat => "chat/completions",
        Endpoint::Embeddings => "embeddings",
    };
    let known = match endpoint {
        Endpoint::Chat => upstream.chat.clone(),
        Endpoint::Embeddings => upstream.embeddings.clone(),
    };
    let url = match known {
        Some(url) => url,
        None => {
            let url = match p.kind {
                ProviderKind::Azure => format!(
                    "{}/openai/deployments/{}/{path}?api-version={}",
                    p.base_url,
                    target.model,
                    p.api_version.as_deref().unwrap_or_default()
                ),
                _ => format!("{}/{path}", p.base_url),
            };
            reqwest::Url::parse(&url).map_err(|e| format!("invalid upstream URL {url}: {e}"))?
        }
    };
    let mut rb = match body {
        UpstreamBody::Raw(bytes) => upstream
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(bytes.clone()),
        UpstreamBody::Json(v) => upstream.client.post(url).json(v),
    };
    if let Some(key) = &p.api_key {
        rb = match p.kind {
            ProviderKind::Anthropic => rb.header("x-api-key", key),
            ProviderKind::Azure => rb.header("api-key", key),
            _ => rb.bearer_auth(key),
        };
    }
    if p.kind == ProviderKind::Anthropic {
        let version = header_str(client_headers, "anthropic-version")
            .unwrap_or_else(|| ANTHROPIC_VERSION.into());
        rb = rb.header("anthropic-version", version);
        if let Some(beta) = header_str(client_headers, "anthropic-beta") {
            rb = rb.header("anthropic-beta", beta);
        }
    }
    match tokio::time::timeout(p.timeouts.first_token, rb.send()).await {
        Err(_) => Err(format!("no response within {:?}", p.timeouts.first_token)),
        Ok(Err(e)) if e.is_connect() => Err(format!("cannot connect: {e}")),
        Ok(Err(e)) => Err(format!("request failed: {e}")),
        Ok(Ok(r)) => Ok(r),
    }
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the upstream response failed: {e}"))?;
        if out.len() + chunk.len() > cap {
            return Err(format!("upstream response is larger than {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The message inside an upstream error body of either format.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .or_else(|| v["message"].as_str())
        .map(str::to_string)
}

/// Usage, output and finish reasons of an OpenAI-shaped response, for the trace.
fn outcome_of(resp: &Value, outcome: &mut Outcome) {
    outcome.response_model = resp["model"].as_str().map(str::to_string);
    outcome.input_tokens = resp.pointer("/usage/prompt_tokens").and_then(Value::as_i64);
    outcome.output_tokens = resp
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_i64)
        .or_else(|| {
            outcome
                .input_tokens
                .map(|_| 0)
                .filter(|_| resp["data"].is_array())
        });
    for c in resp["choices"].as_array().into_iter().flatten() {
        outcome
            .output
            .extend(record::messages(&json!([c["message"]])));
        if let Some(f) = c["finish_reason"].as_str() {
            outcome.finish_reasons.push(f.to_string());
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish_json(
    gw: &Arc<Gateway>,
    resp: reqwest::Response,
    mut record: CallRecord,
    ctx: CallCtx,
    target: &Target,
    client: ApiFormat,
    upstream: ApiFormat,
    endpoint: Endpoint,
    t0: Instant,
    started: Instant,
) -> Response {
    let key = target.key();
    let remaining = target
        .provider
        .timeouts
        .total
        .saturating_sub(started.elapsed());
    let body = match tokio::time::timeout(remaining, read_capped(resp, MAX_RESPONSE_BYTES)).await {
        Ok(read) => read,
        Err(_) => Err("the upstream response did not finish in time".to_string()),
    };
    let parsed = body.and_then(|b| match serde_json::from_slice::<Value>(&b) {
        Ok(v @ Value::Object(_)) => Ok((v, b)),
        _ => Err(format!(
            "returned a response that is not valid JSON: {}",
            String::from_utf8_lossy(&b[..b.len().min(200)])
        )),
    });
    let (resp, raw) = match parsed {
        Ok(v) => v,
        Err(why) => {
            gw.health.failure(&key);
            let e = GatewayError::new(
                client,
                StatusCode::BAD_GATEWAY,
                format!("{} ({}) {why}", target.provider.name, target.model),
            );
            record.outcome.error = Some(e.message.clone());
            gw.finish(record, &ctx, None);
            return e.into_response();
        }
    };
    gw.health.success(&key, t0.elapsed());
    // Across formats the client's answer is translated now; the same format relays `raw`.
    let translated_for_anthropic = match (client, upstream) {
        (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
            Some(translate::openai_response_to_anthropic(&resp))
        }
        _ => None,
    };
    let openai_view = match upstream {
        ApiFormat::Anthropic => {
            translate::anthropic_response_to_openai(&resp, now_unix_nanos() / 1_000_000_000)
        }
        ApiFormat::OpenAi => resp,
    };
    outcome_of(&openai_view, &mut record.outcome);
    if let Some(refusal) = gw.police_tool_calls(&mut record).await {
        let e = GatewayError::new(client, StatusCode::FORBIDDEN, refusal);
        record.outcome.error = Some(e.message.clone());
        gw.finish(record, &ctx, None);
        return e.into_response();
    }
    // Same format: the upstream's bytes go back untouched (unknown fields and all), with no second
    // serialisation; across formats, the translation.
    let out = match (client, upstream) {
        (ApiFormat::OpenAi, ApiFormat::Anthropic) => Some(openai_view.clone()),
        _ => translated_for_anthropic,
    };
    if endpoint == Endpoint::Embeddings {
        record.embedding = true;
        gw.finish(record, &ctx, None);
    } else {
        gw.finish(record, &ctx, Some(openai_view));
    }
    match out {
        Some(v) => axum::Json(v).into_response(),
        None => ([(header::CONTENT_TYPE, "application/json")], raw).into_response(),
    }
}

/// What a stream said, gathered for the trace whatever the formats.
#[derive(Default)]
struct StreamAccumulator {
    text: String,
    /// (id, name, arguments) per tool call, in order.
    tools: Vec<(Option<String>, String, String)>,
    openai_tool_index: Vec<u64>,
}

impl StreamAccumulator {
    fn observe_openai(&mut self, v: &Value, outcome: &mut Outcome, first: &mut Option<Instant>) {
        if let Some(m) = v["model"].as_str() {
            outcome.response_model = Some(m.to_string());
        }
        if let Some(n) = v.pointer("/usage/prompt_tokens").and_then(Value::as_i64) {
            outcome.input_tokens = Some(n);
        }
        if let Some(n) = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_i64)
        {
            outcome.output_tokens = Some(n);
        }
        let choice = &v["choices"][0];
        if let Some(t) = choice
            .pointer("/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            first.get_or_insert_with(Instant::now);
            if self.text.len() < MAX_TRACED_OUTPUT {
                self.text.push_str(t);
            }
        }
        for tc in choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            first.get_or_insert_with(Instant::now);
            let k = tc["index"].as_u64().unwrap_or(0);
            let at = match self.openai_tool_index.iter().position(|i| *i == k) {
                Some(at) => at,
                None => {
                    self.openai_tool_index.push(k);
                    self.tools.push((
                        tc["id"].as_str().map(str::to_string),
                        String::new(),
                        String::new(),
                    ));
                    self.tools.len() - 1
                }
            };
            if let Some(n) = tc.pointer("/function/name").and_then(Value::as_str) {
                self.tools[at].1.push_str(n);
            }
            if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                if self.tools[at].2.len() < MAX_TRACED_OUTPUT {
                    self.tools[at].2.push_str(a);
                }
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            outcome.finish_reasons = vec![f.to_string()];
        }
    }

    fn observe_anthropic(&mut self, v: &Value, outcome: &mut Outcome, first: &mut Option<Instant>) {
        match v["type"].as_str() {
            Some("message_start") => {
                outcome.response_model = v
                    .pointer("/message/model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                outcome.input_tokens = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_i64);
            }
            Some("content_block_start")
                if v.pointer("/content_block/type") == Some(&json!("tool_use")) =>
            {
                first.get_or_insert_with(Instant::now);
                self.tools.push((
                    v.pointer("/content_block/id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    v.pointer("/content_block/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    String::new(),
                ));
            }
            Some("content_block_delta") => {
                first.get_or_insert_with(Instant::now);
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    if self.text.len() < MAX_TRACED_OUTPUT {
                        self.text.push_str(t);
                    }
                }
                if let (Some(p), Some(last)) = (
                    v.pointer("/delta/partial_json").and_then(Value::as_str),
                    self.tools.last_mut(),
                ) {
                    last.2.push_str(p);
                }
            }
            Some("message_delta") => {
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_i64) {
                    outcome.output_tokens = Some(n);
                }
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    outcome.finish_reasons =
                        vec![translate::anthropic_stop_to_openai(s).to_string()];
                }
            }
            _ => {}
        }
    }

    fn message(self) -> Message {
        Message {
            role: "assistant".into(),
            content: (!self.text.is_empty()).then_some(self.text),
            tool_calls: self
                .tools
                .into_iter()
                .map(|(id, name, args)| ToolCall {
                    id,
                    name,
                    arguments: serde_json::from_str(&args).unwrap_or(Value::String(args)),
                })
                .collect(),
            ..Message::default()
        }
    }
}

/// A canonical assistant message as an OpenAI response message.
fn message_json(m: &Message) -> Value {
    let mut v = json!({"role": "assistant", "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = Value::Array(
            m.tool_calls
                .iter()
                .map(|tc| {
                    json!({"id": tc.id, "type": "function",
                                 "function": {"name": tc.name, "arguments": match &tc.arguments {
                                     Value::String(s) => s.clone(), other => other.to_string() }}})
                })
                .collect(),
        );
    }
    v
}

/// Relays (and, across formats, translates) an upstream stream to the client. The relay runs as
/// its own task feeding a small channel: when the client goes away the channel closes, the task
/// drops the upstream response (cancelling it) and the span says so.
#[allow(clippy::too_many_arguments)]
fn relay_stream(
    gw: Arc<Gateway>,
    resp: reqwest::Response,
    mut record: CallRecord,
    ctx: CallCtx,
    target: Target,
    client: ApiFormat,
    upstream: ApiFormat,
    client_wants_usage: bool,
    t0: Instant,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let key = target.key();
        let deadline = tokio::time::Instant::now() + target.provider.timeouts.total;
        let mut parser = SseParser::new(MAX_STREAM_EVENT);
        let mut to_anthropic = translate::OpenAiToAnthropicStream::default();
        let mut to_openai = translate::AnthropicToOpenAiStream::new(
            client_wants_usage,
            now_unix_nanos() / 1_000_000_000,
        );
        let mut acc = StreamAccumulator::default();
        let mut first: Option<Instant> = None;
        let mut upstream_stream = resp.bytes_stream();
        let mut failed: Option<String> = None;
        'relay: loop {
            let next = tokio::time::timeout_at(deadline, upstream_stream.next()).await;
            let ended = matches!(next, Ok(None));
            let events = match next {
                Ok(Some(Ok(bytes))) => match parser.feed(&bytes) {
                    Ok(ev) => ev,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Ok(Some(Err(e))) => {
                    failed = Some(format!("the upstream stream broke: {e}"));
                    break;
                }
                Ok(None) => parser.finish().into_iter().collect(),
                Err(_) => {
                    failed = Some(format!(
                        "the upstream stream did not finish within {:?}",
                        target.provider.timeouts.total
                    ));
                    break;
                }
            };
            for ev in events {
                // Upstream error events are relayed as errors in the caller's format.
                if ev.event.as_deref() == Some("error") {
                    failed = Some(
                        upstream_message(ev.data.as_bytes())
                            .unwrap_or_else(|| "upstream stream error".into()),
                    );
                    break 'relay;
                }
                let parsed: Option<Value> = serde_json::from_str(&ev.data).ok();
                if let Some(v) = &parsed {
                    if v.get("error").is_some()
                        && v.get("choices").is_none()
                        && v.get("type") != Some(&json!("message_start"))
                    {
                        failed = Some(
                            upstream_message(ev.data.as_bytes())
                                .unwrap_or_else(|| "upstream stream error".into()),
                        );
                        break 'relay;
                    }
                    match upstream {
                        ApiFormat::OpenAi => acc.observe_openai(v, &mut record.outcome, &mut first),
                        ApiFormat::Anthropic => {
                            acc.observe_anthropic(v, &mut record.outcome, &mut first)
                        }
                    }
                }
                let out = match (client, upstream) {
                    (ApiFormat::OpenAi, ApiFormat::OpenAi) => {
                        let usage_only = parsed.as_ref().is_some_and(|v| {
                            v["choices"].as_array().is_some_and(|c| c.is_empty())
                                && v.get("usage").is_some()
                        });
                        if usage_only && !client_wants_usage {
                            String::new()
                        } else {
                            format!("data: {}\n\n", ev.data)
                        }
                    }
                    (ApiFormat::Anthropic, ApiFormat::Anthropic) => match &ev.event {
                        Some(name) => format!("event: {name}\ndata: {}\n\n", ev.data),
                        None => format!("data: {}\n\n", ev.data),
                    },
                    (ApiFormat::Anthropic, ApiFormat::OpenAi) => to_anthropic.chunk(&ev.data),
                    (ApiFormat::OpenAi, ApiFormat::Anthropic) => to_openai.event(&ev.data),
                };
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    record.outcome.cancelled = true;
                    break 'relay;
                }
            }
            if ended {
                // Close the translated stream even if the upstream ended without its last event.
                let tail = match (client, upstream) {
                    (ApiFormat::Anthropic, ApiFormat::OpenAi) => to_anthropic.finish(),
                    (ApiFormat::OpenAi, ApiFormat::Anthropic) => to_openai.finish(),
                    _ => String::new(),
                };
                if !tail.is_empty() && tx.send(Bytes::from(tail)).await.is_err() {
                    record.outcome.cancelled = true;
                }
                break;
            }
        }
        drop(upstream_stream);
        if let Some(message) = &failed {
            let e = GatewayError::new(
                client,
                StatusCode::BAD_GATEWAY,
                format!("{} ({}): {message}", target.provider.name, target.model),
            );
            let _ = tx.send(Bytes::from(e.sse_event())).await;
            record.outcome.error = Some(e.message);
            gw.health.failure(&key);
        } else if record.outcome.cancelled {
            gw.health.release_probe(&key);
        } else {
            gw.health.success(&key, t0.elapsed());
        }
        record.outcome.ttft_ms = first.map(|f| f.duration_since(t0).as_secs_f64() * 1000.0);
        let message = acc.message();
        // A complete streamed answer is cached like any other, in OpenAI shape.
        let answer = (failed.is_none() && !record.outcome.cancelled).then(|| {
            let (input, output) = (record.outcome.input_tokens.unwrap_or(0), record.outcome.output_tokens.unwrap_or(0));
            json!({
                "id": format!("chatcmpl-vigil-{}", now_unix_nanos()),
                "object": "chat.completion",
                "created": now_unix_nanos() / 1_000_000_000,
                "model": record.outcome.response_model.clone().unwrap_or_default(),
                "choices": [{"index": 0, "message": message_json(&message),
                             "finish_reason": record.outcome.finish_reasons.first().cloned().unwrap_or_else(|| "stop".into())}],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            })
        });
        record.outcome.output = vec![message];
        // A stream is already with the client: its tool calls are judged and flagged, not blocked.
        let _ = gw.police_tool_calls(&mut record).await;
        gw.finish(record, &ctx, answer);
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>))
    }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
