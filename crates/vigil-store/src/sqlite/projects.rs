//! Projects and API keys on SQLite. Writes go through the single writer; lookups use the pool.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use vigil_model::ProjectId;

use super::writer::time_now_ns;
use super::SqliteStore;
use crate::keys;
use crate::projects::{ApiKeyInfo, NewApiKey, ProjectRow, ProjectStore, Scope};
use crate::users::{self, UserRow};
use crate::{Error, Result};

fn key_row(r: &Row) -> rusqlite::Result<ApiKeyInfo> {
    let scopes: String = r.get(4)?;
    let revoked: Option<i64> = r.get(6)?;
    Ok(ApiKeyInfo {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        name: r.get(2)?,
        display: r.get(3)?,
        scopes: Scope::parse_list(&scopes),
        created_at: r.get(5)?,
        revoked: revoked.is_some(),
    })
}

const KEY_COLUMNS: &str = "id, project_id, name, display, scopes, created_at, revoked_at";

fn random_id(prefix: &str) -> String {
    let bytes: [u8; 6] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

#[async_trait]
impl ProjectStore for SqliteStore {
    async fn create_project(&self, name: &str) -> Result<ProjectRow> {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::InvalidQuery(
                "project name must be 1 to 100 characters".into(),
            ));
        }
        self.inner
            .writer
            .exec(move |conn| {
                let exists: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM projects WHERE name = ?1)",
                    [&name],
                    |r| r.get(0),
                )?;
                if exists {
                    return Err(Error::AlreadyExists { name });
                }
                let any: bool =
                    conn.query_row("SELECT EXISTS (SELECT 1 FROM projects)", [], |r| r.get(0))?;
                // The first project is `default`, so single-project installs have a readable id.
                let id = if !any && name == "default" {
                    "default".to_string()
                } else {
                    random_id("p_")
                };
                let created_at = time_now_ns();
                conn.execute(
                    "INSERT INTO projects (id, name, created_at) VALUES (?1, ?2, ?3)",
                    params![id, name, created_at],
                )?;
                Ok(ProjectRow {
                    id: ProjectId(id),
                    name,
                    created_at,
                })
            })
            .await
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRow>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, name, created_at FROM projects ORDER BY created_at")?;
            let rows = stmt.query_map([], |r| {
                Ok(ProjectRow {
                    id: ProjectId(r.get(0)?),
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn get_project_by_name(&self, name: &str) -> Result<Option<ProjectRow>> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, name, created_at FROM projects WHERE name = ?1 OR id = ?1",
            )?
            .query_row([&name], |r| {
                Ok(ProjectRow {
                    id: ProjectId(r.get(0)?),
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn create_api_key(
        &self,
        project: &ProjectId,
        name: &str,
        scopes: &[Scope],
    ) -> Result<NewApiKey> {
        let project = project.clone();
        let name = name.to_string();
        let scopes = scopes.to_vec();
        self.inner
            .writer
            .exec(move |conn| {
                let exists: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM projects WHERE id = ?1)", [project.as_str()], |r| r.get(0))?;
                if !exists {
                    return Err(Error::NotFound(project.0.clone()));
                }
                let secret = keys::generate();
                let info = ApiKeyInfo {
                    id: random_id("key_"),
                    project_id: project.clone(),
                    name,
                    display: keys::display(&secret),
                    scopes: scopes.clone(),
                    created_at: time_now_ns(),
                    revoked: false,
                };
                let scope_list: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                conn.execute(
                    "INSERT INTO api_keys (id, project_id, name, key_hash, display, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![info.id, project.as_str(), info.name, keys::hash(&secret), info.display, scope_list.join(","), info.created_at],
                )?;
                Ok(NewApiKey { secret, info })
            })
            .await
    }

    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyInfo>> {
        let project = project.clone();
        self.read(move |c| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = ?1 ORDER BY created_at"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([project.as_str()], key_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_api_key(&self, project: &ProjectId, key_id: &str) -> Result<()> {
        let (project, key_id) = (project.clone(), key_id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let n = conn.execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND project_id = ?3 AND revoked_at IS NULL",
                    params![time_now_ns(), key_id, project.as_str()],
                )?;
                if n == 0 {
                    return Err(Error::NotFound(key_id));
                }
                Ok(())
            })
            .await
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKeyInfo>> {
        if !keys::is_well_formed(secret) {
            return Ok(None);
        }
        let hash = keys::hash(secret);
        self.read(move |c| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row([hash], key_row)
                .optional()?)
        })
        .await
    }

    async fn create_user(
        &self,
        name: &str,
        password: &str,
        projects: &[ProjectId],
    ) -> Result<UserRow> {
        let name = name.trim().to_string();
        users::validate(&name, password)?;
        if projects.is_empty() {
            return Err(Error::InvalidQuery(
                "a user needs at least one project".into(),
            ));
        }
        let password = password.to_string();
        // Argon2 is deliberately slow: hash off the writer thread.
        let hash = tokio::task::spawn_blocking(move || users::hash_password(&password))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let projects = projects.to_vec();
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)",
                    [&name],
                    |r| r.get(0),
                )?;
                if taken {
                    return Err(Error::AlreadyExists { name });
                }
                for p in &projects {
                    let exists: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM projects WHERE id = ?1)",
                        [p.as_str()],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        return Err(Error::NotFound(format!("project {}", p.as_str())));
                    }
                }
                let id = random_id("u_");
                let now = time_now_ns();
                tx.execute(
                    "INSERT INTO users (id, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, hash, now],
                )?;
                for p in &projects {
                    tx.execute(
                        "INSERT INTO user_projects (user_id, project_id) VALUES (?1, ?2)",
                        params![id, p.as_str()],
                    )?;
                }
                tx.commit()?;
                Ok(UserRow {
                    id,
                    name,
                    projects,
                    created_at: now,
                })
            })
            .await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, created_at FROM users WHERE disabled_at IS NULL ORDER BY name",
            )?;
            let rows: Vec<(String, String, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(id, name, created_at)| {
                    Ok(UserRow {
                        projects: user_projects(c, &id)?,
                        id,
                        name,
                        created_at,
                    })
                })
                .collect()
        })
        .await
    }

    async fn login_user(&self, name: &str, password: &str) -> Result<Option<(UserRow, String)>> {
        let lookup = name.trim().to_string();
        let found = self
            .read(move |c| {
                let row: Option<(String, String, String, i64)> = c
                    .prepare_cached(
                        "SELECT id, name, password_hash, created_at FROM users WHERE name = ?1 AND disabled_at IS NULL",
                    )?
                    .query_row([&lookup], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()?;
                Ok(match row {
                    Some((id, name, hash, created_at)) => Some((
                        UserRow {
                            projects: user_projects(c, &id)?,
                            id,
                            name,
                            created_at,
                        },
                        hash,
                    )),
                    None => None,
                })
            })
            .await?;
        let password = password.to_string();
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), h),
            None => (None, users::dummy_hash().to_string()),
        };
        let ok = tokio::task::spawn_blocking(move || users::verify_password(&password, &hash))
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let Some(user) = user.filter(|_| ok) else {
            return Ok(None);
        };
        let token = users::new_session_token();
        let hash = keys::hash(&token);
        let user_id = user.id.clone();
        self.inner
            .writer
            .exec(move |conn| {
                let now = time_now_ns();
                conn.execute("DELETE FROM ui_sessions WHERE expires_at < ?1", [now])?;
                conn.execute(
                    "INSERT INTO ui_sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, user_id, now, now + users::SESSION_TTL_SECONDS * 1_000_000_000],
                )?;
                Ok(())
            })
            .await?;
        Ok(Some((user, token)))
    }

    async fn session_user(&self, token: &str) -> Result<Option<UserRow>> {
        if !users::is_session_token(token) {
            return Ok(None);
        }
        let hash = keys::hash(token);
        self.read(move |c| {
            let row: Option<(String, String, i64)> = c
                .prepare_cached(
                    "SELECT u.id, u.name, u.created_at FROM ui_sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.disabled_at IS NULL",
                )?
                .query_row(params![hash, time_now_ns()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            row.map(|(id, name, created_at)| {
                Ok(UserRow {
                    projects: user_projects(c, &id)?,
                    id,
                    name,
                    created_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn end_session(&self, token: &str) -> Result<()> {
        let hash = keys::hash(token);
        self.inner
            .writer
            .exec(move |conn| {
                conn.execute("DELETE FROM ui_sessions WHERE token_hash = ?1", [hash])?;
                Ok(())
            })
            .await
    }
}

fn user_projects(c: &rusqlite::Connection, user_id: &str) -> Result<Vec<ProjectId>> {
    let mut stmt = c.prepare_cached(
        "SELECT project_id FROM user_projects WHERE user_id = ?1 ORDER BY project_id",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok(ProjectId(r.get(0)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
