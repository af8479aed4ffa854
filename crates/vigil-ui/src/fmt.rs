//! How numbers, times and money read on a page.

use vigil_model::now_unix_nanos;

pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "—".into();
    }
    if ms == 0.0 {
        "0".into()
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        format!(
            "{:.0} min {:.0} s",
            (ms / 60_000.0).floor(),
            (ms % 60_000.0) / 1000.0
        )
    } else {
        format!("{:.1} h", ms / 3_600_000.0)
    }
}

/// Money: `None` is "unpriced", never "$0".
pub fn cost(c: Option<f64>) -> String {
    match c {
        None => "—".into(),
        Some(c) => usd(c),
    }
}

pub fn usd(c: f64) -> String {
    if c == 0.0 {
        "$0".into()
    } else if c.abs() < 1.0 {
        format!("${c:.4}")
    } else if c.abs() < 100.0 {
        format!("${c:.2}")
    } else {
        format!("${}", count(c.round() as i64))
    }
}

/// 1234 → "1,234"; 1234567 → "1.23M".
pub fn count(n: i64) -> String {
    let a = n.unsigned_abs();
    if a >= 10_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if a >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else {
        let s = a.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    }
}

pub fn tokens(n: i64) -> String {
    if n == 0 {
        "—".into()
    } else if n >= 100_000 {
        format!("{:.0}k", n as f64 / 1000.0)
    } else if n >= 10_000 {
        format!("{:.1}k", n as f64 / 1000.0)
    } else {
        count(n)
    }
}

pub fn percent(r: f64) -> String {
    if !r.is_finite() {
        "—".into()
    } else if r == 0.0 {
        "0%".into()
    } else if r < 0.001 {
        "<0.1%".into()
    } else if r < 0.1 {
        format!("{:.1}%", r * 100.0)
    } else {
        format!("{:.0}%", r * 100.0)
    }
}

/// UTC wall time, to the second.
pub fn time(ns: i64) -> String {
    let s = vigil_model::format_rfc3339_nanos(ns);
    // 2026-11-23T22:15:11.284562653Z → 2026-11-23 22:15:11
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

pub fn ago(ns: i64) -> String {
    let secs = (now_unix_nanos() - ns) / 1_000_000_000;
    match secs {
        s if s < 0 => "just now".into(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// How long until `ns` (a deadline): `in 9 min`, or `now` once passed.
pub fn until(ns: i64) -> String {
    let secs = (ns - now_unix_nanos()) / 1_000_000_000;
    match secs {
        s if s <= 0 => "now".into(),
        s if s < 60 => format!("in {s} s"),
        s if s < 3600 => format!("in {} min", s / 60 + 1),
        s => format!("in {} h", s / 3600),
    }
}

/// A JSON value as readable text: strings as they are, everything else pretty-printed.
pub fn json_pretty(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(inner @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
                serde_json::to_string_pretty(&inner).unwrap_or_else(|_| s.clone())
            }
            _ => s.clone(),
        },
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567), "1.23M");
        assert_eq!(count(12_345), "12,345");
        assert_eq!(count(-1234), "-1,234");
        assert_eq!(cost(None), "—");
        assert_eq!(usd(0.00123), "$0.0012");
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(duration_ms(845.2), "845 ms");
        assert_eq!(duration_ms(2836.0), "2.84 s");
        assert_eq!(percent(0.0523), "5.2%");
        assert_eq!(tokens(3267), "3,267");
        assert_eq!(
            json_pretty(&serde_json::json!("{\"a\":1}")),
            "{\n  \"a\": 1\n}"
        );
    }
}
