//! What the LLM gateway keeps: virtual keys (hashed), spend per scope and period, and events such as
//! budget thresholds crossed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vigil_model::ProjectId;

use crate::Result;

pub const GATEWAY_KEY_PREFIX: &str = "gk_";

/// A virtual key's grants and limits. `None` limits are unlimited; empty `models` allows every model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct GatewayKeySpec {
    pub name: String,
    pub team: Option<String>,
    pub user: Option<String>,
    pub models: Vec<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    /// `total` or `month`.
    pub budget_period: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GatewayKeyInfo {
    pub id: String,
    pub project_id: ProjectId,
    pub display: String,
    #[serde(flatten)]
    pub spec: GatewayKeySpec,
    pub created_at: i64,
    pub revoked: bool,
}

/// One amount of spend to add.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendDelta {
    pub project: ProjectId,
    pub scope: String,
    pub subject: String,
    pub period: String,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GatewayEvent {
    pub project_id: ProjectId,
    #[serde(with = "vigil_model::rfc3339")]
    pub time: i64,
    pub kind: String,
    pub subject: String,
    pub payload: serde_json::Value,
}

pub fn generate_key() -> String {
    let k = crate::keys::generate();
    format!(
        "{GATEWAY_KEY_PREFIX}{}",
        &k[crate::keys::KEY_PREFIX.len()..]
    )
}

pub fn is_gateway_key(k: &str) -> bool {
    k.len() == GATEWAY_KEY_PREFIX.len() + 40
        && k.starts_with(GATEWAY_KEY_PREFIX)
        && k[GATEWAY_KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Issues a key; the secret is returned this once.
    async fn create_gateway_key(
        &self,
        project: &ProjectId,
        spec: GatewayKeySpec,
    ) -> Result<(String, GatewayKeyInfo)>;
    async fn list_gateway_keys(&self, project: &ProjectId) -> Result<Vec<GatewayKeyInfo>>;
    async fn revoke_gateway_key(&self, project: &ProjectId, id: &str) -> Result<()>;
    /// The live key with this secret, looked up by hash.
    async fn gateway_key(&self, secret: &str) -> Result<Option<GatewayKeyInfo>>;
    async fn add_spend(&self, deltas: Vec<SpendDelta>) -> Result<()>;
    /// All recorded spend: (project, scope, subject, period, USD).
    async fn load_spend(&self) -> Result<Vec<SpendDelta>>;
    async fn record_gateway_event(&self, event: GatewayEvent) -> Result<()>;
    async fn gateway_events(&self, project: &ProjectId, since: i64) -> Result<Vec<GatewayEvent>>;
}
