//! `vigil serve`: the three listeners, background retention, graceful shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use vigil_api::{api_router, edge, otlp_router, AppState, Authenticator, EdgeLimits};
use vigil_ingest::Normalizer;
use vigil_model::ProjectId;
use vigil_store::{ProjectStore, Scope, SqliteStore, Store, TraceStore};

use crate::cli::ServeArgs;
use crate::config::{Config, Settings};

pub fn apply_flags(config: &mut Config, args: &ServeArgs) {
    if let Some(v) = &args.api_addr {
        config.server.api_addr = v.clone();
    }
    if let Some(v) = &args.otlp_http_addr {
        config.server.otlp_http_addr = v.clone();
    }
    if let Some(v) = &args.otlp_grpc_addr {
        config.server.otlp_grpc_addr = v.clone();
    }
    if args.insecure_local {
        config.server.insecure_local = true;
    }
    if let Some(v) = &args.durability {
        config.storage.durability = v.clone();
    }
    if let Some(v) = &args.max_body_size {
        config.ingest.max_body_size = v.clone();
    }
}

/// Makes sure the `default` project exists; on first start, mints its first key and prints it once.
pub async fn bootstrap(store: &SqliteStore) -> anyhow::Result<ProjectId> {
    if let Some(p) = store.get_project_by_name("default").await? {
        return Ok(p.id);
    }
    let project = store.create_project("default").await?;
    let key = store
        .create_api_key(&project.id, "first key", &[Scope::Ingest, Scope::Read])
        .await?;
    eprintln!();
    eprintln!("  Created project `default` and its first API key. It is shown only this once:");
    eprintln!();
    eprintln!("      {}", key.secret);
    eprintln!();
    eprintln!("  Log in to the web UI with it, and send it as `Authorization: Bearer <key>` or");
    eprintln!("  `x-vigil-api-key: <key>`, e.g.");
    eprintln!(
        "      export OTEL_EXPORTER_OTLP_HEADERS=\"x-vigil-api-key={}\"",
        key.secret
    );
    eprintln!("  More keys: `vigil keys create`.");
    eprintln!();
    Ok(project.id)
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    serve_store(settings, store).await
}

pub async fn serve_store(settings: Settings, store: SqliteStore) -> anyhow::Result<()> {
    let default_project = bootstrap(&store).await?;
    let prices = super::price_table(&settings)?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let auth = Authenticator::new(
        shared.clone(),
        settings.insecure_local.then(|| default_project.clone()),
    );
    let limits = EdgeLimits {
        max_body_bytes: settings.max_body_bytes,
        max_inflight_bytes: settings.max_inflight_bytes,
        max_grpc_message_bytes: settings.max_grpc_message_bytes,
    };
    let governance = vigil_governance::Governance::start(
        shared.clone(),
        &settings.data_dir,
        settings.governance.clone(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    record_config(&governance, &store, &settings).await;
    let ingest_evaluators = vigil_quality::ingest::IngestEvaluators::start(shared.clone()).await;
    governance.judge_own_spans_with(ingest_evaluators.clone());
    let state = AppState::new(
        shared.clone(),
        Normalizer::new(prices.clone()),
        auth,
        governance.clone(),
        limits,
    )
    .with_ingest_evaluators(ingest_evaluators.clone());
    let mut api_app = api_router(state.clone()).merge(vigil_ui::router(state.clone()));
    if let Some(gw) = &settings.gateway {
        let gateway = vigil_gateway::Gateway::start(gw.clone(), state.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        api_app = api_app.merge(gateway.router());
    }

    let api = bind(settings.api_addr, "API").await?;
    // The LLM judge calls this server's own gateway, authenticated with the in-process token.
    let judge = vigil_quality::judge::JudgeClient::new(
        format!("http://{}", api.local_addr()?),
        state.auth.internal_token().to_string(),
        prices.clone(),
    );
    start_evaluators(&shared, &settings, judge).await?;
    // The evaluators of vigil.toml judge spans from the first export on.
    ingest_evaluators.refresh().await;
    let otlp_http = bind(settings.otlp_http_addr, "OTLP/HTTP").await?;
    let otlp_grpc = bind(settings.otlp_grpc_addr, "OTLP/gRPC").await?;
    let (api_addr, http_addr, grpc_addr) = (
        api.local_addr()?,
        otlp_http.local_addr()?,
        otlp_grpc.local_addr()?,
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let api_task = tokio::spawn(
        axum::serve(api, edge(api_app))
            .with_graceful_shutdown(wait(shutdown_rx.clone()))
            .into_future(),
    );
    let http_task = tokio::spawn(
        axum::serve(otlp_http, otlp_router(state.clone()))
            .with_graceful_shutdown(wait(shutdown_rx.clone()))
            .into_future(),
    );
    let grpc_task = tokio::spawn(
        vigil_api::otlp::grpc::router(state.clone()).serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(otlp_grpc),
            wait(shutdown_rx.clone()),
        ),
    );
    let gc_task = tokio::spawn(retention_loop(
        store.clone(),
        settings.clone(),
        shutdown_rx.clone(),
    ));

    eprintln!("vigil {} ready", env!("CARGO_PKG_VERSION"));
    eprintln!("  API + UI    http://{api_addr}");
    eprintln!("  OTLP/HTTP   http://{http_addr}");
    eprintln!("  OTLP/gRPC   http://{grpc_addr}");
    match &settings.gateway {
        Some(gw) => {
            let count = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            eprintln!(
                "  gateway     http://{api_addr}/v1  ({}, {}; `provider/model` reaches any model)",
                count(gw.providers.len(), "provider", "providers"),
                count(gw.routes.len(), "model alias", "model aliases")
            )
        }
        None => eprintln!("  gateway     off (add [[gateway.providers]] to vigil.toml)"),
    }
    eprintln!("  data        {}", store.path().display());
    if settings.insecure_local {
        eprintln!("  auth        OFF (--insecure-local): every request acts on project `default`");
    }
    eprintln!("  try         vigil traces  ·  curl -H \"x-vigil-api-key: $KEY\" http://{api_addr}/api/v1/traces");

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    let drain = async {
        let _ = api_task.await;
        let _ = http_task.await;
        let _ = grpc_task.await;
        let _ = gc_task.await;
    };
    if tokio::time::timeout(Duration::from_secs(25), drain)
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 25 s");
    }
    governance.flush_counts().await;
    if let Err(e) = governance.audit.checkpoint_all().await {
        tracing::warn!(error = %e, "final audit checkpoint failed");
    }
    // Leave a small WAL behind; not needed for safety, only for tidiness and a fast next start.
    match tokio::time::timeout(Duration::from_secs(5), store.checkpoint()).await {
        Ok(Err(e)) => tracing::warn!(error = %e, "final checkpoint failed"),
        Err(_) => tracing::warn!("final checkpoint did not finish within 5 s"),
        Ok(Ok(())) => {}
    }
    Ok(())
}

/// Puts the `[[evaluators]]` of vigil.toml into their projects and starts the online evaluator.
async fn start_evaluators(
    store: &Arc<dyn Store>,
    settings: &Settings,
    judge: vigil_quality::judge::JudgeClient,
) -> anyhow::Result<()> {
    for e in &settings.evaluators {
        let project = store
            .get_project_by_name(&e.project)
            .await?
            .with_context(|| {
                format!("`[[evaluators]]` `{}`: no project `{}`", e.name, e.project)
            })?;
        let def = serde_json::to_value(e.def())?;
        store
            .put_evaluator(&project.id, &e.name, def, e.enabled)
            .await?;
    }
    vigil_quality::runner::Runner::new(
        store.clone(),
        vigil_quality::runner::RunnerSettings {
            settle: settings.quality_settle,
            lease: settings.quality_lease,
            judge: Some(judge),
            ..Default::default()
        },
    )
    .spawn();
    Ok(())
}

/// The settings a server starts with go into every project's audit trail (redaction and
/// retention are compliance evidence; a change between starts is visible there).
async fn record_config(
    governance: &vigil_governance::Governance,
    store: &SqliteStore,
    settings: &Settings,
) {
    let redaction = serde_json::to_value(&settings.governance.redaction).unwrap_or_default();
    let content = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "redaction": redaction,
        "retention": {
            "max_age_seconds": settings.retention.max_age_seconds,
            "max_size_bytes": settings.retention.max_size_bytes,
        },
        "insecure_local": settings.insecure_local,
        "gateway": settings.gateway.is_some(),
    });
    let Ok(projects) = store.list_projects().await else {
        return;
    };
    for p in projects {
        governance
            .audit
            .record(vigil_governance::audit::AuditEvent::new(
                &p.id,
                "system",
                "config.loaded",
                "vigil serve",
                content.clone(),
            ))
            .await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for {what} on {addr} (is another Vigil running? use --help for the address flags)"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn retention_loop(store: SqliteStore, settings: Settings, mut stop: watch::Receiver<bool>) {
    if settings.retention.max_age_seconds.is_none() && settings.retention.max_size_bytes.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(settings.gc_interval_secs));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match store.gc(&settings.retention).await {
                    Ok(r) if r.traces_deleted > 0 => tracing::info!(traces = r.traces_deleted, spans = r.spans_deleted, "retention deleted old traces"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention pass failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}
