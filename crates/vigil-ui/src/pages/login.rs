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
use crate::viewer::{self, cookie_keys, keys_cookie, project_cookie, safe_next, Viewer, MAX_KEYS};

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
                @if let Some(e) = error { (layout::alert(e)) }
                @if !adding {
                    form method="post" action="/login" {
                        h3 { "User" }
                        label for="user" { "Name" }
                        input #user type="text" name="user" autocomplete="username" autofocus;
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password";
                        input type="hidden" name="next" value=(safe_next(next));
                        button.primary type="submit" { "Log in" }
                        p.muted.small { "Users are created with " code { "vigil users create NAME --project default" } "." }
                    }
                    div.or { "or" }
                }
                form method="post" action="/login" {
                    h3 { "Project API key" }
                    p.muted.small {
                        @if adding { "Add another project: paste its API key." }
                        @else { "The key printed when the project was created; " code { "vigil keys create" } " makes another." }
                    }
                    input #key type="password" name="key" placeholder="vk_…" autocomplete="off" aria-label="API key";
                    input type="hidden" name="next" value=(safe_next(next));
                    button.primary type="submit" { @if adding { "Add project" } @else { "Log in with key" } }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: Option<String>,
    user: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = f.next.as_deref();
    let fail = |msg: &str| login_page(next, false, Some(msg), StatusCode::UNAUTHORIZED);
    if let Some(name) = f.user.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        let password = f.password.unwrap_or_default();
        return match state.store.login_user(name, &password).await {
            Ok(Some((user, token))) => {
                for p in &user.projects {
                    audit(
                        &state,
                        p,
                        &format!("user:{}", user.name),
                        "auth.login",
                        "web UI login",
                    )
                    .await;
                }
                let mut res = Redirect::to(&safe_next(next)).into_response();
                append_cookie(&mut res, &viewer::session_cookie(&token));
                if let Some(p) = user.projects.first() {
                    append_cookie(&mut res, &project_cookie(p));
                }
                res
            }
            Ok(None) => {
                // A failed login for a real user goes into that user's projects' audit trail; an
                // unknown name has no project to record it in.
                if let Ok(users) = state.store.list_users().await {
                    if let Some(u) = users.iter().find(|u| u.name == name) {
                        for p in &u.projects {
                            audit(
                                &state,
                                p,
                                &format!("user:{}", u.name),
                                "auth.login_failed",
                                "wrong password",
                            )
                            .await;
                        }
                    }
                }
                fail("Wrong name or password.")
            }
            Err(e) => layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
    }
    let key = f.key.unwrap_or_default().trim().to_string();
    let Some(project) = viewer::project_of(&state.auth, &key).await else {
        return fail("That key was not accepted: it is unknown, revoked, or lacks the read scope.");
    };
    audit(
        &state,
        &project,
        "key",
        "auth.login",
        "web UI login with an API key",
    )
    .await;
    let mut keys = cookie_keys(&headers);
    keys.retain(|k| *k != key);
    keys.push(key);
    if keys.len() > MAX_KEYS {
        keys.remove(0);
    }
    let mut res = Redirect::to(&safe_next(next)).into_response();
    append_cookie(&mut res, &keys_cookie(&keys));
    append_cookie(&mut res, &project_cookie(&project));
    res
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = viewer::cookie(&headers, viewer::SESSION_COOKIE) {
        if let Ok(Some(user)) = state.store.session_user(token).await {
            for p in &user.projects {
                audit(
                    &state,
                    p,
                    &format!("user:{}", user.name),
                    "auth.logout",
                    "web UI logout",
                )
                .await;
            }
        }
        if let Err(e) = state.store.end_session(token).await {
            tracing::warn!(error = %e, "could not end a UI session");
        }
    }
    let mut res = Redirect::to("/login").into_response();
    append_cookie(&mut res, &keys_cookie(&[]));
    append_cookie(&mut res, &viewer::session_cookie(""));
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
pub async fn switch_project(v: Viewer, Query(q): Query<SwitchQuery>) -> Response {
    let wanted = ProjectId(q.id);
    if !v.projects.iter().any(|(p, _)| *p == wanted) {
        return layout::error_page(StatusCode::NOT_FOUND, "no such project");
    }
    let mut res = Redirect::to("/ui/traces").into_response();
    append_cookie(&mut res, &project_cookie(&wanted));
    res
}

/// Access events go into the project's audit chain (queued; a login never waits on the disk).
async fn audit(state: &AppState, project: &ProjectId, actor: &str, action: &str, what: &str) {
    state
        .governance
        .audit
        .record(vigil_governance::audit::AuditEvent::new(
            project,
            actor,
            action,
            what,
            serde_json::json!({"channel": "ui"}),
        ))
        .await;
}

fn append_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = cookie.parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
