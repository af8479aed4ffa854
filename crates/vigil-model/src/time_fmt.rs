//! RFC 3339 timestamps with nanosecond precision, the form every API field uses.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn format_rfc3339_nanos(unix_nanos: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_nanos.to_string())
}

/// Parses RFC 3339 (`2026-11-23T10:00:00Z`) or a plain integer of Unix nanoseconds.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// `90s`, `15m`, `24h`, `7d`, `2w` → seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The wall clock as Unix nanoseconds (0 before 1970, saturating far in the future).
pub fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Serde for Unix-nanosecond fields as RFC 3339 text; reading also accepts a plain integer.
/// Use as `#[serde(with = "rfc3339")]`.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    /// RFC 3339 in JSON; plain nanoseconds in binary formats (the store's).
    pub fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&super::format_rfc3339_nanos(*n))
        } else {
            s.serialize_i64(*n)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d);
        }
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| serde::de::Error::custom("time out of range")),
            Value::String(s) => super::parse_rfc3339_nanos(&s)
                .ok_or_else(|| serde::de::Error::custom("invalid timestamp")),
            _ => Err(serde::de::Error::custom("invalid timestamp")),
        }
    }
}

/// `rfc3339` for optional fields (serialising only).
pub mod rfc3339_opt {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(n: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => super::rfc3339::serialize(n, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nanoseconds() {
        let n = 1_795_386_941_801_850_575;
        let s = format_rfc3339_nanos(n);
        assert_eq!(s, "2026-11-22T22:35:41.801850575Z");
        assert_eq!(parse_rfc3339_nanos(&s), Some(n));
        assert_eq!(parse_rfc3339_nanos("12"), Some(12));
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
        assert_eq!(parse_duration_secs("24h"), Some(86_400));
        assert_eq!(parse_duration_secs("30"), None);
        assert_eq!(parse_duration_secs("h"), None);
    }
}
