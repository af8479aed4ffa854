//! `vigil import FILE…`: OTLP export files through the same normaliser and store as live ingest.

use std::process::ExitCode;

use anyhow::Context;
use vigil_ingest::otlp::{decode_logs, decode_traces, gunzip_capped, Encoding};
use vigil_ingest::Normalizer;
use vigil_store::TraceStore;

use crate::cli::ImportArgs;
use crate::config::Settings;

pub async fn run(settings: Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(&settings)?;
    super::serve::bootstrap(&store).await?;
    let project = super::project_id(&store, args.project.as_deref()).await?;
    let normalizer = Normalizer::new(super::price_table(&settings)?);
    // Imported spans are redacted like live ones.
    let governance = super::governance(&settings, &store)?;
    let mut failed = 0;
    for path in &args.files {
        let name = path.display().to_string();
        let mut bytes = std::fs::read(path).with_context(|| format!("cannot read `{name}`"))?;
        let mut stem = name.clone();
        if let Some(s) = name.strip_suffix(".gz") {
            bytes = gunzip_capped(&bytes, 512 * 1024 * 1024)
                .with_context(|| format!("`{name}` is not valid gzip"))?;
            stem = s.to_string();
        }
        let encoding = if stem.ends_with(".json") {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        match decode_traces(&bytes, encoding) {
            Ok(req) if !req.resource_spans.is_empty() => {
                let mut out = normalizer.traces(&project, &req);
                governance.redact_spans(&project, &mut out.spans).await;
                if let Some(msg) = out.rejection_message() {
                    eprintln!("{name}: {msg}");
                }
                let n = out.spans.len();
                let receipt = store.write_spans(out.spans).await?;
                println!(
                    "{name}: {n} spans ({} new, {} already stored)",
                    receipt.inserted, receipt.duplicates
                );
                continue;
            }
            _ => {}
        }
        match decode_logs(&bytes, encoding) {
            Ok(req) if !req.resource_logs.is_empty() => {
                let mut events = normalizer.logs(&req);
                governance.redact_logs(&project, &mut events).await;
                let n = store.write_log_events(&project, events).await?;
                println!("{name}: {n} log records");
            }
            Ok(_) => println!("{name}: empty export, nothing to import"),
            Err(e) => {
                eprintln!("{name}: not an OTLP trace or log export: {e}");
                failed += 1;
            }
        }
    }
    governance.flush_counts().await;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
