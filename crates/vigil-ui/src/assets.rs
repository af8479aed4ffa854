//! The stylesheet and script, compiled into the binary. Their URLs carry a hash of their content,
//! so browsers may cache them for good and still never run a stale copy after an upgrade.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

fn versioned(name: &str, body: &str) -> String {
    // FNV-1a: a content fingerprint, not a security measure.
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("/ui/assets/{name}?v={:012x}", hash & 0xffff_ffff_ffff)
}

pub fn css_path() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| versioned("app.css", CSS))
}

pub fn js_path() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| versioned("app.js", JS))
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
