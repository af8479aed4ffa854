//! One module per page. Shared here: the time-range picker every page uses.

pub mod annotate;
pub mod approvals;
pub mod dashboard;
pub mod login;
pub mod models;
pub mod quality;
pub mod sessions;
pub mod trace;
pub mod traces;

use maud::{html, Markup};
use serde::Deserialize;
use vigil_model::{now_unix_nanos, parse_duration_secs, parse_rfc3339_nanos};

/// The ranges the picker offers; `custom` uses `from`/`to`.
pub const RANGES: &[(&str, &str)] = &[
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("all", "All time"),
    ("custom", "Custom…"),
];

/// The time-range part of a page's query string (`range`, or `from`/`to` for a custom range).
#[derive(Deserialize, Default, Clone)]
pub struct RangeParams {
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl RangeParams {
    /// The range asked for, `default` if none; unknown input falls back to `default` with the reason.
    pub fn resolve(&self, default: &str) -> (TimeRange, Option<String>) {
        TimeRange::parse(
            self.range.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            default,
        )
    }
}

/// A resolved time range in Unix ns, and how it was asked for.
pub struct TimeRange {
    pub key: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// `from`/`to` as typed (custom ranges), for the form.
    pub from_text: String,
    pub to_text: String,
}

impl TimeRange {
    /// `range` = one of `RANGES`; a custom range reads `from`/`to` (RFC 3339 or the browser's
    /// `datetime-local`, taken as UTC). Unknown input falls back to `default`, with the reason.
    pub fn parse(
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        default: &str,
    ) -> (TimeRange, Option<String>) {
        let from_text = from.unwrap_or("").trim().to_string();
        let to_text = to.unwrap_or("").trim().to_string();
        let key = match range.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None if !from_text.is_empty() || !to_text.is_empty() => "custom".into(),
            None => default.to_string(),
        };
        let now = now_unix_nanos();
        let mut error = None;
        let (from, to) = match key.as_str() {
            "all" => (None, None),
            "custom" => {
                let mut parse = |name: &str, s: &str| -> Option<i64> {
                    if s.is_empty() {
                        return None;
                    }
                    let t = parse_local(s);
                    if t.is_none() {
                        error = Some(format!(
                            "`{name}` must be a date and time like 2026-11-23T14:00, got `{s}`"
                        ));
                    }
                    t
                };
                (parse("from", &from_text), parse("to", &to_text))
            }
            k => {
                let ago = |secs: u64| {
                    now - i64::try_from(secs)
                        .unwrap_or(i64::MAX / 2)
                        .saturating_mul(1_000_000_000)
                };
                match parse_duration_secs(k) {
                    Some(secs) => (Some(ago(secs)), None),
                    None => {
                        error = Some(format!("unknown time range `{k}`"));
                        (
                            Some(ago(parse_duration_secs(default).unwrap_or(86_400))),
                            None,
                        )
                    }
                }
            }
        };
        (
            TimeRange {
                key,
                from,
                to,
                from_text,
                to_text,
            },
            error,
        )
    }

    /// Bounds for charts: an open start becomes 30 days back, an open end now.
    pub fn bounds(&self) -> (i64, i64) {
        let to = self.to.unwrap_or_else(now_unix_nanos);
        let from = self.from.unwrap_or(to - 30 * 86_400_000_000_000);
        (from.min(to), to)
    }

    /// The `range`/`from`/`to` query pairs that reproduce this range.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        if self.key == "custom" {
            vec![
                ("range", "custom".into()),
                ("from", self.from_text.clone()),
                ("to", self.to_text.clone()),
            ]
        } else {
            vec![("range", self.key.clone())]
        }
    }

    /// The picker: a select plus from/to inputs shown for custom ranges.
    pub fn picker(&self) -> Markup {
        html! {
            span.range {
                select name="range" data-range aria-label="Time range" {
                    @for (k, label) in RANGES {
                        option value=(k) selected[*k == self.key] { (label) }
                    }
                }
                span.custom hidden[self.key != "custom"] {
                    input type="datetime-local" name="from" value=(self.from_text) aria-label="From (UTC)";
                    " – "
                    input type="datetime-local" name="to" value=(self.to_text) aria-label="To (UTC)";
                }
            }
        }
    }
}

/// RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` as sent by `datetime-local` inputs, read as UTC.
fn parse_local(s: &str) -> Option<i64> {
    if let Some(t) = parse_rfc3339_nanos(s) {
        return Some(t);
    }
    let with_secs = if s.len() == 16 {
        format!("{s}:00")
    } else {
        s.to_string()
    };
    parse_rfc3339_nanos(&format!("{with_secs}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_fall_back_with_a_reason() {
        let (r, e) = TimeRange::parse(Some("1h"), None, None, "24h");
        assert!(e.is_none() && r.from.is_some() && r.to.is_none());
        let (r, e) = TimeRange::parse(
            None,
            Some("2026-11-23T10:00"),
            Some("2026-11-23T11:00"),
            "24h",
        );
        assert!(e.is_none());
        assert_eq!(r.key, "custom");
        assert_eq!(r.to.unwrap() - r.from.unwrap(), 3_600_000_000_000);
        let (r, e) = TimeRange::parse(Some("bogus"), None, None, "24h");
        assert!(e.is_some() && r.from.is_some());
        let (_, e) = TimeRange::parse(Some("custom"), Some("yesterday"), None, "24h");
        assert!(e.unwrap().contains("yesterday"));
    }
}
