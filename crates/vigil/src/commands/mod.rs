//! One module per command group.

pub mod admin;
pub mod bench;
pub mod demo;
pub mod eval;
pub mod governance;
pub mod import;
pub mod query;
pub mod serve;

use std::sync::Arc;

use anyhow::Context;
use vigil_model::{PriceTable, ProjectId};
use vigil_store::{ProjectStore, SqliteSettings, SqliteStore};

use crate::config::Settings;

pub fn open_store(settings: &Settings) -> anyhow::Result<SqliteStore> {
    let mut s = SqliteSettings::new(&settings.data_dir);
    s.durability = settings.durability;
    s.max_pending_spans = settings.max_pending_spans;
    SqliteStore::open(&s)
        .with_context(|| format!("cannot open the store in `{}`", settings.data_dir.display()))
}

pub fn price_table(settings: &Settings) -> anyhow::Result<Arc<PriceTable>> {
    let mut t = PriceTable::builtin()?;
    t.extend(settings.prices.clone())?;
    Ok(Arc::new(t))
}

/// Governance for a one-shot command (audit appends go straight to the store).
pub fn governance(
    settings: &Settings,
    store: &SqliteStore,
) -> anyhow::Result<vigil_governance::Governance> {
    vigil_governance::Governance::direct(
        Arc::new(store.clone()),
        &settings.data_dir,
        settings.governance.clone(),
    )
    .map_err(|e| anyhow::anyhow!(e))
}

/// Records an administrative action taken from the command line in the project's audit chain.
pub async fn audit_cli(
    settings: &Settings,
    store: &SqliteStore,
    project: &ProjectId,
    action: &str,
    subject: &str,
    content: serde_json::Value,
) -> anyhow::Result<()> {
    let g = governance(settings, store)?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    g.audit
        .append(vigil_governance::audit::AuditEvent::new(
            project, actor, action, subject, content,
        ))
        .await
        .map_err(|e| anyhow::anyhow!("the action was done but could not be audited: {e}"))?;
    Ok(())
}

/// Finds a project by name or id; `None` means `default`.
pub async fn project_id(store: &SqliteStore, name: Option<&str>) -> anyhow::Result<ProjectId> {
    let name = name.unwrap_or("default");
    let p = store
        .get_project_by_name(name)
        .await?
        .with_context(|| format!("no project `{name}` (see `vigil projects list`)"))?;
    Ok(p.id)
}
