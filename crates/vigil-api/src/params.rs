//! Parsing of query-string values shared by the API routes: times, durations, lists.

use vigil_model::parse_rfc3339_nanos;

use crate::error::ApiError;

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
