//! Who is looking: the projects the browser's keys open, and the one being viewed.
//!
//! Logging in stores the project API key in an HttpOnly, SameSite=Strict cookie, and every page
//! authenticates it again through the API's `Authenticator` (so a revoked key stops working within
//! seconds). Adding the key of another project adds that project to the switcher; a browser never
//! sees a project it holds no key for.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use vigil_api::{AppState, Authenticator};
use vigil_model::ProjectId;
use vigil_store::{keys, Scope};

use crate::layout;

pub const KEYS_COOKIE: &str = "vigil_keys";
pub const PROJECT_COOKIE: &str = "vigil_project";
/// A browser may hold keys to this many projects at once.
pub const MAX_KEYS: usize = 16;

pub struct Viewer {
    pub project: ProjectId,
    pub project_name: String,
    /// Every project this browser may see: (id, name).
    pub projects: Vec<(ProjectId, String)>,
    /// Auth is off (`--insecure-local`).
    pub insecure: bool,
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

pub fn project_cookie(project: &ProjectId) -> String {
    format!(
        "{PROJECT_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000",
        project.as_str()
    )
}

/// Resolves the viewer, or answers with a redirect to the login page (keeping where they were
/// going) when the browser holds no valid key.
pub async fn viewer(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Viewer, Response> {
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
        });
    }
    let mut projects: Vec<(ProjectId, String)> = Vec::new();
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
