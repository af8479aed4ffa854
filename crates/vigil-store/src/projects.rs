//! Projects and API keys.

use async_trait::async_trait;
use serde::Serialize;
use vigil_model::ProjectId;

use crate::users::UserRow;
use crate::Result;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProjectRow {
    pub id: ProjectId,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send traces, call the gateway, ask the guard.
    Ingest,
    /// Read traces, metrics, approvals, the audit trail.
    Read,
    /// Approve or deny tool calls waiting for a human.
    Approve,
    /// Change guardrail policies, erase a user's data.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Approve => "approve",
            Scope::Admin => "admin",
        }
    }

    pub fn parse_list(s: &str) -> Vec<Scope> {
        s.split(',')
            .filter_map(|p| match p.trim() {
                "ingest" => Some(Scope::Ingest),
                "read" => Some(Scope::Read),
                "approve" => Some(Scope::Approve),
                "admin" => Some(Scope::Admin),
                _ => None,
            })
            .collect()
    }
}

/// What an authenticated key may do, and for which project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub project_id: ProjectId,
    pub name: String,
    pub display: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub revoked: bool,
}

impl ApiKeyInfo {
    pub fn allows(&self, scope: Scope) -> bool {
        !self.revoked && self.scopes.contains(&scope)
    }
}

/// A freshly minted key: the only time its secret exists outside the caller's hands.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub secret: String,
    pub info: ApiKeyInfo,
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    async fn create_project(&self, name: &str) -> Result<ProjectRow>;
    async fn list_projects(&self) -> Result<Vec<ProjectRow>>;
    async fn get_project_by_name(&self, name: &str) -> Result<Option<ProjectRow>>;
    async fn create_api_key(
        &self,
        project: &ProjectId,
        name: &str,
        scopes: &[Scope],
    ) -> Result<NewApiKey>;
    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyInfo>>;
    async fn revoke_api_key(&self, project: &ProjectId, key_id: &str) -> Result<()>;
    /// Looks a presented secret up by its hash; `None` for unknown or revoked keys.
    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKeyInfo>>;

    /// Creates a local UI user who may see `projects`. Fails if the name is taken.
    async fn create_user(
        &self,
        name: &str,
        password: &str,
        projects: &[ProjectId],
    ) -> Result<UserRow>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    /// Checks a password and opens a browser session: `(user, session token)`; `None` for an
    /// unknown user, a disabled one or a wrong password (indistinguishable, also in time).
    async fn login_user(&self, name: &str, password: &str) -> Result<Option<(UserRow, String)>>;
    /// The user of a live session token.
    async fn session_user(&self, token: &str) -> Result<Option<UserRow>>;
    async fn end_session(&self, token: &str) -> Result<()>;
}
