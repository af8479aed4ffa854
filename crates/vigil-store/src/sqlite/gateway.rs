//! Gateway keys, spend and events on SQLite: writes through the single writer, reads from the pool.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use vigil_model::ProjectId;

use super::writer::time_now_ns;
use super::SqliteStore;
use crate::gateway::{
    self, GatewayEvent, GatewayKeyInfo, GatewayKeySpec, GatewayStore, SpendDelta,
};
use crate::{keys, Error, Result};

const COLUMNS: &str =
    "id, project_id, display, name, team, user_id, models, rpm, tpm, budget_usd, budget_period, created_at, revoked_at";

fn key_row(r: &Row) -> rusqlite::Result<GatewayKeyInfo> {
    let models: String = r.get(6)?;
    let revoked: Option<i64> = r.get(12)?;
    Ok(GatewayKeyInfo {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        display: r.get(2)?,
        spec: GatewayKeySpec {
            name: r.get(3)?,
            team: r.get(4)?,
            user: r.get(5)?,
            models: serde_json::from_str(&models).unwrap_or_default(),
            rpm: r.get(7)?,
            tpm: r.get::<_, Option<i64>>(8)?.map(|t| t.max(0) as u64),
            budget_usd: r.get(9)?,
            budget_period: r.get(10)?,
        },
        created_at: r.get(11)?,
        revoked: revoked.is_some(),
    })
}

#[async_trait]
impl GatewayStore for SqliteStore {
    async fn create_gateway_key(
        &self,
        project: &ProjectId,
        spec: GatewayKeySpec,
    ) -> Result<(String, GatewayKeyInfo)> {
        if spec.name.trim().is_empty() {
            return Err(Error::InvalidQuery("a gateway key needs a name".into()));
        }
        if !matches!(spec.budget_period.as_str(), "total" | "month") {
            return Err(Error::InvalidQuery(
                "`budget_period` is `total` or `month`".into(),
            ));
        }
        let secret = gateway::generate_key();
        let hash = keys::hash(&secret);
        let display = format!(
            "{}…{}",
            gateway::GATEWAY_KEY_PREFIX,
            &secret[secret.len() - 4..]
        );
        let project = project.clone();
        let info = self
            .inner
            .writer
            .exec(move |conn| {
                let id = format!("gkid_{}", hex::encode(rand::random::<[u8; 6]>()));
                let now = time_now_ns();
                let models = serde_json::to_string(&spec.models).map_err(|e| Error::Corrupt(e.to_string()))?;
                conn.execute(
                    "INSERT INTO gateway_keys (id, project_id, key_hash, display, name, team, user_id, models, rpm, tpm,
                        budget_usd, budget_period, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![id, project.as_str(), hash, display, spec.name, spec.team, spec.user, models, spec.rpm,
                        spec.tpm.map(|t| t as i64), spec.budget_usd, spec.budget_period, now],
                )?;
                Ok(GatewayKeyInfo { id, project_id: project, display, spec, created_at: now, revoked: false })
            })
            .await?;
        Ok((secret, info))
    }

    async fn list_gateway_keys(&self, project: &ProjectId) -> Result<Vec<GatewayKeyInfo>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM gateway_keys WHERE project_id = ?1 ORDER BY created_at"
            ))?;
            let rows = stmt.query_map([p.as_str()], key_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_gateway_key(&self, project: &ProjectId, id: &str) -> Result<()> {
        let (p, id) = (project.clone(), id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let n = conn.execute(
                    "UPDATE gateway_keys SET revoked_at = ?1 WHERE project_id = ?2 AND id = ?3 AND revoked_at IS NULL",
                    params![time_now_ns(), p.as_str(), id],
                )?;
                if n == 0 {
                    return Err(Error::NotFound(format!("gateway key {id}")));
                }
                Ok(())
            })
            .await
    }

    async fn gateway_key(&self, secret: &str) -> Result<Option<GatewayKeyInfo>> {
        if !gateway::is_gateway_key(secret) {
            return Ok(None);
        }
        let hash = keys::hash(secret);
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM gateway_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([hash], key_row)
            .optional()?)
        })
        .await
    }

    async fn add_spend(&self, deltas: Vec<SpendDelta>) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO gateway_spend (project_id, scope, subject, period, cost_usd) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (project_id, scope, subject, period) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                    )?;
                    for d in &deltas {
                        stmt.execute(params![d.project.as_str(), d.scope, d.subject, d.period, d.cost_usd])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn load_spend(&self) -> Result<Vec<SpendDelta>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT project_id, scope, subject, period, cost_usd FROM gateway_spend",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SpendDelta {
                    project: ProjectId(r.get(0)?),
                    scope: r.get(1)?,
                    subject: r.get(2)?,
                    period: r.get(3)?,
                    cost_usd: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn record_gateway_event(&self, e: GatewayEvent) -> Result<()> {
        self.inner
            .writer
            .exec(move |conn| {
                conn.execute(
                    "INSERT INTO gateway_events (project_id, time_ns, kind, subject, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![e.project_id.as_str(), e.time, e.kind, e.subject, e.payload.to_string()],
                )?;
                Ok(())
            })
            .await
    }

    async fn gateway_events(&self, project: &ProjectId, since: i64) -> Result<Vec<GatewayEvent>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT time_ns, kind, subject, payload FROM gateway_events WHERE project_id = ?1 AND time_ns >= ?2 ORDER BY time_ns",
            )?;
            let rows = stmt.query_map(params![p.as_str(), since], |r| {
                let payload: String = r.get(3)?;
                Ok(GatewayEvent {
                    project_id: p.clone(),
                    time: r.get(0)?,
                    kind: r.get(1)?,
                    subject: r.get(2)?,
                    payload: serde_json::from_str(&payload).unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}
