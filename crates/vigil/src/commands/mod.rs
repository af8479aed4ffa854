//! One module per command group.

pub mod admin;
pub mod bench;
pub mod demo;
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

/// Finds a project by name or id; `None` means `default`.
pub async fn project_id(store: &SqliteStore, name: Option<&str>) -> anyhow::Result<ProjectId> {
    let name = name.unwrap_or("default");
    let p = store
        .get_project_by_name(name)
        .await?
        .with_context(|| format!("no project `{name}` (see `vigil projects list`)"))?;
    Ok(p.id)
}
