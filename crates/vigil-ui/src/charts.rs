//! Line charts drawn on the server as SVG. Colours come from CSS variables (`--s0`…`--s7`,
//! `--grid`, `--muted`), so the same markup reads in light and dark mode; each point carries a
//! `<title>` so hovering shows its value without any script.

use maud::{html, Markup};

pub struct Series {
    pub name: String,
    /// (bucket start in Unix ns, value); `None` leaves a gap (no data, not zero).
    pub points: Vec<(i64, Option<f64>)>,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// Draws `series` over `[from, to]`. `fmt` formats axis labels and tooltips.
pub fn line_chart(
    title: &str,
    series: &[Series],
    from: i64,
    to: i64,
    fmt: fn(f64) -> String,
) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .fold(0.0f64, f64::max);
    let has_data = series
        .iter()
        .any(|s| s.points.iter().any(|p| p.1.is_some()));
    let y_max = nice_max(max);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / y_max) * (H - TOP - BOTTOM);
    html! {
        figure.chart data-chart=(title) data-series=(series.len()) {
            figcaption { (title) }
            @if !has_data {
                div.nodata { "No data in this range" }
            } @else {
                svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                    @for i in 0..=4 {
                        @let v = y_max * f64::from(i) / 4.0;
                        line.grid x1=(LEFT) x2=(W - RIGHT) y1=(y(v)) y2=(y(v)) {}
                        text.axis x=(LEFT - 6.0) y=(y(v) + 4.0) text-anchor="end" { (fmt(v)) }
                    }
                    @for i in 0..=3 {
                        @let t = from + ((to - from) as f64 * f64::from(i) / 3.0) as i64;
                        text.axis x=(x(t)) y=(H - 6.0) text-anchor=(match i { 0 => "start", 3 => "end", _ => "middle" }) { (axis_time(t, to - from)) }
                    }
                    @for (i, s) in series.iter().enumerate() {
                        @let class = format!("line s{}", i % 8);
                        @for run in runs(&s.points) {
                            polyline class=(class) points=(run.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect::<Vec<_>>().join(" ")) {}
                        }
                        @for (t, v) in s.points.iter().filter_map(|(t, v)| v.map(|v| (*t, v))) {
                            circle class={ "pt s" (i % 8) } cx=(format!("{:.1}", x(t))) cy=(format!("{:.1}", y(v))) r="2.5" {
                                title { (s.name) " · " (crate::fmt::time(t)) " · " (fmt(v)) }
                            }
                        }
                    }
                }
                @if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
                    ul.legend {
                        @for (i, s) in series.iter().enumerate() {
                            li { span class={ "swatch s" (i % 8) } {} (s.name) }
                        }
                    }
                }
            }
        }
    }
}

/// Consecutive non-gap points, each drawn as one polyline.
fn runs(points: &[(i64, Option<f64>)]) -> Vec<Vec<(i64, f64)>> {
    let mut out = vec![Vec::new()];
    for (t, v) in points {
        match v {
            Some(v) => {
                if let Some(last) = out.last_mut() {
                    last.push((*t, *v));
                }
            }
            None => out.push(Vec::new()),
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// A round axis maximum above `v` (1, 2, 2.5 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn axis_time(ns: i64, range_ns: i64) -> String {
    let s = crate::fmt::time(ns);
    if range_ns > 2 * 86_400_000_000_000 {
        s.get(5..10).unwrap_or(&s).to_string()
    } else {
        s.get(11..16).unwrap_or(&s).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round_and_gaps_split_lines() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(0.021), 0.025);
        assert_eq!(nice_max(180.0), 200.0);
        let r = runs(&[(1, Some(1.0)), (2, None), (3, Some(2.0)), (4, Some(3.0))]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].len(), 2);
    }

    #[test]
    fn charts_escape_series_names_and_say_when_empty() {
        let s = Series {
            name: "<script>alert(1)</script>".into(),
            points: vec![(0, Some(1.0)), (10, Some(2.0))],
        };
        let out = line_chart("t", &[s], 0, 10, |v| format!("{v}")).into_string();
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;"));
        let empty = line_chart("t", &[], 0, 10, |v| format!("{v}")).into_string();
        assert!(empty.contains("No data"));
    }
}
