//! Log-scale latency histograms for the per-minute rollups, so that p50/p95/p99 over any range
//! are computed from a few thousand rows instead of millions of spans.
//!
//! Bucket `i` holds latencies up to `2^(i/8) / 100` ms: 8 buckets per doubling (≈9 % wide), from
//! 10 µs to beyond a day. A percentile is reported as the bucket's geometric midpoint, so it is
//! within ±4.5 % of the exact value.

use std::collections::BTreeMap;

use crate::query::MetricsPoint;

const PER_DOUBLING: f64 = 8.0;
const MAX_BUCKET: u32 = 400;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
}

impl Histogram {
    pub fn bucket_of(ms: f64) -> u32 {
        if !ms.is_finite() || ms <= 0.01 {
            return 0;
        }
        ((ms * 100.0).log2() * PER_DOUBLING)
            .ceil()
            .clamp(0.0, f64::from(MAX_BUCKET)) as u32
    }

    fn value_of(bucket: u32) -> f64 {
        if bucket == 0 {
            return 0.01;
        }
        2f64.powf((f64::from(bucket) - 0.5) / PER_DOUBLING) / 100.0
    }

    pub fn record(&mut self, ms: f64) {
        *self.buckets.entry(Self::bucket_of(ms)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, c) in &other.buckets {
            *self.buckets.entry(*b).or_default() += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    pub fn percentile(&self, p: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some((Self::value_of(*b) * 1000.0).round() / 1000.0);
            }
        }
        None
    }

    /// Compact text form stored in the rollup row: `bucket:count,…`.
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .buckets
            .iter()
            .map(|(b, c)| format!("{b}:{c}"))
            .collect();
        parts.join(",")
    }

    pub fn decode(s: &str) -> Self {
        let buckets = s
            .split(',')
            .filter_map(|p| {
                let (b, c) = p.split_once(':')?;
                Some((b.parse().ok()?, c.parse().ok()?))
            })
            .collect();
        Histogram { buckets }
    }
}

/// Aggregates of a set of spans: one rollup row, or any merge of rows (a metrics bucket).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollupTotals {
    pub count: i64,
    pub errors: i64,
    pub flagged: i64,
    pub input: i64,
    pub output: i64,
    pub cost: f64,
    pub priced: i64,
    pub unpriced: i64,
    pub hist: Histogram,
}

impl RollupTotals {
    pub fn add(&mut self, o: &RollupTotals) {
        self.count += o.count;
        self.errors += o.errors;
        self.flagged += o.flagged;
        self.input += o.input;
        self.output += o.output;
        self.cost += o.cost;
        self.priced += o.priced;
        self.unpriced += o.unpriced;
        self.hist.merge(&o.hist);
    }

    /// As an API metrics point; cost is `None` when no span of it had a price.
    pub fn point(&self, bucket_start: Option<i64>, group: Option<String>) -> MetricsPoint {
        let rate = |n: i64| {
            if self.count > 0 {
                n as f64 / self.count as f64
            } else {
                0.0
            }
        };
        MetricsPoint {
            bucket_start,
            group,
            count: self.count,
            error_count: self.errors,
            error_rate: rate(self.errors),
            flagged_count: self.flagged,
            flagged_rate: rate(self.flagged),
            input_tokens: self.input,
            output_tokens: self.output,
            cost_usd: (self.priced > 0).then_some(self.cost),
            unpriced_count: self.unpriced,
            latency_p50_ms: self.hist.percentile(50.0),
            latency_p95_ms: self.hist.percentile(95.0),
            latency_p99_ms: self.hist.percentile(99.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_five_percent() {
        let mut h = Histogram::default();
        for i in 1..=1000 {
            h.record(f64::from(i));
        }
        for (p, exact) in [(50.0, 500.0), (95.0, 950.0), (99.0, 990.0)] {
            let got = h.percentile(p).unwrap();
            assert!((got - exact).abs() / exact < 0.05, "p{p}: {got} vs {exact}");
        }
        let round = Histogram::decode(&h.encode());
        assert_eq!(round, h);
        assert_eq!(Histogram::default().percentile(50.0), None);
        assert_eq!(Histogram::bucket_of(f64::NAN), 0);
    }
}
