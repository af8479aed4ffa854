//! Logging in with a project API key, adding another project's key, switching, logging out.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use vigil_api::AppState;
use vigil_model::ProjectId;

use crate::layout;
use crate::viewer::{self, cookie_keys, keys_cookie, project_cookie, safe_next, MAX_KEYS};

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    add: Option<String>,
}

pub async fn form(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if state.auth.is_insecure() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    login_page(q.next.as_deref(), q.add.is_some(), None, StatusCode::OK)
}

fn login_page(
    next: Option<&str>,
    adding: bool,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    layout::bare(
        "Log in",
        status,
        html! {
            div.login {
                h1 { span.logo { "◉" } " Vigil" }
                p.muted {
                    @if adding { "Add another project: paste its API key." }
                    @else { "Paste a project API key. " "It was printed once when the project was created; " code { "vigil keys create" } " makes another." }
                }
                @if let Some(e) = error { (layout::alert(e)) }
                form method="post" action="/login" {
                    label for="key" { "API key" }
                    input #key type="password" name="key" placeholder="vk_…" autocomplete="off" autofocus required;
                    input type="hidden" name="next" value=(safe_next(next));
                    button.primary type="submit" { @if adding { "Add project" } @else { "Log in" } }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let key = f.key.trim().to_string();
    let Some(project) = viewer::project_of(&state.auth, &key).await else {
        return login_page(
            f.next.as_deref(),
            false,
            Some("That key was not accepted: it is unknown, revoked, or lacks the read scope."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let mut keys = cookie_keys(&headers);
    keys.retain(|k| *k != key);
    keys.push(key);
    if keys.len() > MAX_KEYS {
        keys.remove(0);
    }
    let mut res = Redirect::to(&safe_next(f.next.as_deref())).into_response();
    append_cookie(&mut res, &keys_cookie(&keys));
    append_cookie(&mut res, &project_cookie(&project));
    res
}

pub async fn logout() -> Response {
    let mut res = Redirect::to("/login").into_response();
    append_cookie(&mut res, &keys_cookie(&[]));
    append_cookie(
        &mut res,
        &format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            viewer::PROJECT_COOKIE
        ),
    );
    res
}

#[derive(Deserialize)]
pub struct SwitchQuery {
    id: String,
}

/// Switches the viewed project, if the browser holds a key for it.
pub async fn switch_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SwitchQuery>,
) -> Response {
    let v = match viewer::viewer(&state, &headers, "/ui/traces").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let wanted = ProjectId(q.id);
    if !v.projects.iter().any(|(p, _)| *p == wanted) {
        return layout::error_page(StatusCode::NOT_FOUND, "no such project");
    }
    let mut res = Redirect::to("/ui/traces").into_response();
    append_cookie(&mut res, &project_cookie(&wanted));
    res
}

fn append_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = cookie.parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
