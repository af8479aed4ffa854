//! What the API routes share when reading a request: the caller, the body, query-string values
//! (times, durations, lists).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::Json;
use vigil_model::parse_rfc3339_nanos;
use vigil_store::Scope;

use crate::auth::{Authenticator, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The caller of a route that needs `scope`, from its API key.
pub(crate) async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> ApiResult<Caller> {
    let key = Authenticator::key_from_headers(headers);
    state.auth.authenticate(key.as_deref(), scope).await
}

/// A JSON body, or a 400 that says what is wrong with it.
pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Query parameters, or a 400 that says which one is wrong.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub use vigil_model::now_unix_nanos as now_ns;

/// `90s`, `15m`, `24h`, `7d` → seconds.
pub fn parse_duration_secs(s: &str) -> Option<i64> {
    vigil_model::parse_duration_secs(s).and_then(|n| i64::try_from(n).ok())
}

/// A point in time: RFC 3339, Unix nanoseconds, or a duration meaning "that long ago" (`24h`).
pub fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Some(secs) = parse_duration_secs(s) {
        return Ok(now_ns() - secs.saturating_mul(1_000_000_000));
    }
    parse_rfc3339_nanos(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{name}` must be RFC 3339, Unix nanoseconds or a duration like `24h`, got `{s}`"
        ))
    })
}

pub fn opt_time(name: &str, s: &Option<String>) -> Result<Option<i64>, ApiError> {
    s.as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| parse_time(name, v))
        .transpose()
}

pub fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration_secs("24h"), Some(86_400));
        assert_eq!(parse_duration_secs("5m"), Some(300));
        assert_eq!(parse_duration_secs("h"), None);
        assert_eq!(parse_duration_secs("10x"), None);
        assert_eq!(
            parse_time("from", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000_000_000
        );
        assert!(parse_time("from", "yesterday").is_err());
        assert!(parse_time("from", "1h").unwrap() < now_ns());
    }
}
