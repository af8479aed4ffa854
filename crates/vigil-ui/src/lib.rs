//! The web UI, served by `vigil serve` on the API port.
//!
//! Pages are rendered on the server from the same store the API reads: no second copy of the data,
//! no JavaScript build step, nothing fetched from a CDN. `assets/app.js` (compiled into the binary
//! with the stylesheet) adds keyboard navigation, span selection without a reload, auto-refresh and
//! the theme switch; every page works without it. Everything interpolated into a page goes through
//! maud's escaping, and the Content-Security-Policy forbids inline scripts, so span content such as
//! `<script>` is shown, never run.

mod assets;
mod charts;
mod fmt;
mod layout;
mod pages;
mod viewer;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use vigil_api::AppState;

/// Every UI route, for documentation and tests.
pub const UI_ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/login"),
    ("post", "/login"),
    ("post", "/logout"),
    ("get", "/ui/project"),
    ("get", "/ui/dashboard"),
    ("get", "/ui/traces"),
    ("get", "/ui/traces/{trace_id}"),
    ("get", "/ui/sessions"),
    ("get", "/ui/sessions/{session_id}"),
    ("get", "/ui/models"),
    ("get", "/ui/quality"),
    ("post", "/ui/evaluators"),
    ("post", "/ui/datasets/add"),
    ("get", "/ui/annotate"),
    ("post", "/ui/annotate"),
    ("get", "/ui/approvals"),
    ("post", "/ui/approvals/{approval_id}/approve"),
    ("post", "/ui/approvals/{approval_id}/deny"),
    ("get", "/ui/assets/{name}"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/traces") }))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/ui/project", get(pages::login::switch_project))
        .route("/ui/dashboard", get(pages::dashboard::show))
        .route("/ui/traces", get(pages::traces::list))
        .route("/ui/traces/{trace_id}", get(pages::trace::show))
        .route("/ui/sessions", get(pages::sessions::list))
        .route("/ui/sessions/{session_id}", get(pages::sessions::show))
        .route("/ui/models", get(pages::models::show))
        .route("/ui/quality", get(pages::quality::show))
        .route("/ui/evaluators", post(pages::quality::save_evaluator))
        .route("/ui/datasets/add", post(pages::quality::add_to_dataset))
        .route(
            "/ui/annotate",
            get(pages::annotate::show).post(pages::annotate::submit),
        )
        .route("/ui/approvals", get(pages::approvals::list))
        .route(
            "/ui/approvals/{approval_id}/approve",
            post(pages::approvals::approve),
        )
        .route(
            "/ui/approvals/{approval_id}/deny",
            post(pages::approvals::deny),
        )
        .route("/ui/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every UI response: no inline or foreign scripts, no framing, no sniffing, and no
/// caching of pages that show a project's data.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut res = next.run(req).await.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
