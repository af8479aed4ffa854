//! Who is looking: the projects the browser's keys open, and the one being viewed.
//!
//! Two ways in. A local user (`vigil users create`) logs in with name and password and gets a
//! session token (stored hashed, checked on every page) that opens the projects granted to them.
//! Or a project API key is stored in an HttpOnly, SameSite=Strict cookie and authenticated again on
//! every page through the API's `Authenticator`, so a revoked key stops working within seconds;
//! adding another project's key adds that project to the switcher. Either way a browser never sees
//! a project it holds no grant or key for.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use vigil_api::{AppState, Authenticator};
use vigil_model::ProjectId;
use vigil_store::{keys, Scope};

use crate::layout;

pub const KEYS_COOKIE: &str = "vigil_keys";
pub const PROJECT_COOKIE: &str = "vigil_project";
pub const SESSION_COOKIE: &str = "vigil_session";
/// A browser may hold keys to this many projects at once.
pub const MAX_KEYS: usize = 16;

pub struct Viewer {
    pub project: ProjectId,
    pub project_name: String,
    /// Every project this browser may see: (id, name).
    pub projects: Vec<(ProjectId, String)>,
    /// Auth is off (`--insecure-local`).
    pub insecure: bool,
    /// The local user signed in, if any (else API keys only).
    pub user: Option<String>,
    /// The projects granted to that user (the others in `projects` come from API keys).
    pub user_projects: Vec<ProjectId>,
}

impl Viewer {
    /// Who this browser may act as for `scope` in the viewed project (decide approvals, label,
    /// change evaluators), if anyone: a signed-in user granted the project (not one who only holds
    /// a key of it), or a key of the project with the scope.
    pub async fn acting_as(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Option<String> {
        if self.insecure {
            return Some("ui:local".into());
        }
        if let Some(u) = self
            .user
            .as_ref()
            .filter(|_| self.user_projects.contains(&self.project))
        {
            return Some(format!("user:{u}"));
        }
        for key in cookie_keys(headers) {
            if let Ok(c) = state.auth.authenticate(Some(&key), scope).await {
                if c.project_id == self.project {
                    return c.key.map(|k| format!("key:{}", k.id));
                }
            }
        }
        None
    }
}

/// Every page takes a `Viewer` argument: a browser without a valid login is sent to the login page
/// (and back here afterwards) before the handler runs.
impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let here = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.to_string(), |u| u.0.to_string());
        viewer(state, &parts.headers, &here).await
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The well-formed keys in the cookie, in the order they were added.
pub fn cookie_keys(headers: &HeaderMap) -> Vec<String> {
    cookie(headers, KEYS_COOKIE)
        .unwrap_or("")
        .split('.')
        .filter(|k| keys::is_well_formed(k))
        .take(MAX_KEYS)
        .map(str::to_string)
        .collect()
}

pub fn keys_cookie(keys: &[String]) -> String {
    if keys.is_empty() {
        return format!("{KEYS_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    }
    format!(
        "{KEYS_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000",
        keys.join(".")
    )
}

pub fn session_cookie(token: &str) -> String {
    if token.is_empty() {
        return format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    }
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        vigil_store::users::SESSION_TTL_SECONDS
    )
}

pub fn project_cookie(project: &ProjectId) -> String {
    format!(
        "{PROJECT_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000",
        project.as_str()
    )
}

/// Resolves the viewer, or answers with a redirect to the login page (keeping where they were
/// going) when the browser holds no valid key.
async fn viewer(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Viewer, Response> {
    let names = match state.store.list_projects().await {
        Ok(p) => p,
        Err(e) => {
            return Err(layout::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            ))
        }
    };
    let name_of = |id: &ProjectId| {
        names
            .iter()
            .find(|p| &p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| id.as_str().to_string())
    };
    if state.auth.is_insecure() {
        let caller = state
            .auth
            .authenticate(None, Scope::Read)
            .await
            .map_err(IntoResponse::into_response)?;
        return Ok(Viewer {
            project_name: name_of(&caller.project_id),
            projects: vec![(caller.project_id.clone(), name_of(&caller.project_id))],
            project: caller.project_id,
            insecure: true,
            user: None,
            user_projects: Vec::new(),
        });
    }
    let mut projects: Vec<(ProjectId, String)> = Vec::new();
    let mut user = None;
    let mut user_projects = Vec::new();
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        if let Ok(Some(u)) = state.store.session_user(token).await {
            for p in &u.projects {
                projects.push((p.clone(), name_of(p)));
            }
            user_projects = u.projects.clone();
            user = Some(u.name);
        }
    }
    for key in cookie_keys(headers) {
        if let Some(project) = project_of(&state.auth, &key).await {
            if !projects.iter().any(|(p, _)| *p == project) {
                projects.push((project.clone(), name_of(&project)));
            }
        }
    }
    let Some(first) = projects.first().cloned() else {
        return Err(Redirect::to(&format!("/login?next={}", url_encode(here))).into_response());
    };
    let wanted = cookie(headers, PROJECT_COOKIE).map(|p| ProjectId(p.to_string()));
    let (project, project_name) = wanted
        .and_then(|w| projects.iter().find(|(p, _)| *p == w).cloned())
        .unwrap_or(first);
    Ok(Viewer {
        project,
        project_name,
        projects,
        insecure: false,
        user,
        user_projects,
    })
}

pub async fn project_of(auth: &Authenticator, key: &str) -> Option<ProjectId> {
    auth.authenticate(Some(key), Scope::Read)
        .await
        .ok()
        .map(|c| c.project_id)
}

/// Only paths on this site may be returned to after login (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n.to_string(),
        _ => "/ui/traces".to_string(),
    }
}

pub fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_string())
        .unwrap_or_default()
}
