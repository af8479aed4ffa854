//! Experiments: a dataset run through a model and prompt, scored by evaluators, and two runs
//! compared item by item. The comparison is paired (the same items in both runs): per evaluator,
//! the change in pass rate with a 95 % confidence interval and McNemar's exact test on the items
//! that changed verdict. A regression is a drop beyond a threshold that is also significant, so
//! an unchanged run never fails a CI gate and noise alone rarely does.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Value};
use vigil_model::{Message, Span, SpanKind};
use vigil_store::ExperimentResult;

use crate::{CompiledRule, Rule};

/// The verdict of each evaluator on one answer (evaluators that do not apply are left out: tool
/// and cost rules on a bare answer, and LLM judges, which run online only).
pub fn verdicts(
    rules: &[(String, CompiledRule)],
    input: &str,
    output: Option<&str>,
    latency_ms: f64,
) -> BTreeMap<String, bool> {
    let end = (latency_ms.max(0.0) * 1e6) as i64;
    let span = Span {
        kind: SpanKind::Llm,
        name: "experiment".into(),
        end_time: end,
        duration_ms: latency_ms,
        input_messages: vec![Message {
            role: "user".into(),
            content: Some(input.to_string()),
            ..Message::default()
        }],
        output_messages: output
            .map(|o| {
                vec![Message {
                    role: "assistant".into(),
                    content: Some(o.to_string()),
                    ..Message::default()
                }]
            })
            .unwrap_or_default(),
        ..Span::default()
    };
    rules
        .iter()
        .filter_map(|(name, rule)| {
            let content = matches!(
                rule.rule(),
                Rule::Regex { .. }
                    | Rule::Contains { .. }
                    | Rule::NotContains { .. }
                    | Rule::ValidJson { .. }
                    | Rule::JsonSchema { .. }
                    | Rule::NoPiiInOutput
                    | Rule::Refusal
            );
            // No answer at all (the call failed) fails what judges the answer.
            if output.is_none() {
                return content.then(|| (name.clone(), false));
            }
            rule.on_trace(std::slice::from_ref(&span))
                .map(|v| (name.clone(), v.passed))
        })
        .collect()
}

/// Pass counts per evaluator, errors and latency of one run.
pub fn summary(results: &[ExperimentResult]) -> Value {
    let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in results {
        for (name, passed) in &r.verdicts {
            let e = by.entry(name.as_str()).or_default();
            e.1 += 1;
            if *passed {
                e.0 += 1;
            }
        }
    }
    let mut lat: Vec<f64> = results.iter().filter_map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    json!({
        "items": results.len(),
        "errors": results.iter().filter(|r| r.error.is_some()).count(),
        "latency_p50_ms": lat.get(lat.len() / 2),
        "evaluators": by.into_iter().map(|(k, (p, n))| (k.to_string(), json!({"passed": p, "total": n, "pass_rate": p as f64 / n.max(1) as f64}))).collect::<serde_json::Map<_, _>>(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Delta {
    pub evaluator: String,
    /// Items scored by this evaluator in both runs.
    pub paired: u64,
    pub base_rate: f64,
    pub run_rate: f64,
    pub delta: f64,
    /// 95 % confidence interval of `delta` (paired).
    pub ci95: (f64, f64),
    /// Items passing in the base and failing in the run, and the other way round.
    pub lost: u64,
    pub gained: u64,
    /// McNemar's exact test, two-sided.
    pub p_value: f64,
    pub regressed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ItemDiff {
    pub item_id: i64,
    pub evaluator: String,
    pub base: bool,
    pub run: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Comparison {
    pub deltas: Vec<Delta>,
    /// Items whose verdict changed.
    pub changed: Vec<ItemDiff>,
    pub regressed: bool,
}

/// Two-sided exact binomial test of `b` against `c` (McNemar), p in [0, 1].
pub fn mcnemar_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum of C(n, i) / 2^n for i ≤ k, each term from the previous one in log space (linear in k,
    // no overflow for large n).
    let mut ln_term = -(n as f64) * std::f64::consts::LN_2; // C(n, 0) / 2^n
    let mut tail = ln_term.exp();
    for i in 1..=k {
        ln_term += ((n - i + 1) as f64).ln() - (i as f64).ln();
        tail += ln_term.exp();
    }
    (2.0 * tail).min(1.0)
}

/// Compares `run` with `base` item by item. A regression: the pass rate fell by more than
/// `threshold` and McNemar's p is below `alpha`.
pub fn compare(
    base: &[ExperimentResult],
    run: &[ExperimentResult],
    threshold: f64,
    alpha: f64,
) -> Comparison {
    let base_by: HashMap<i64, &ExperimentResult> = base.iter().map(|r| (r.item_id, r)).collect();
    // Per evaluator: (paired items, passes in base, passes in run).
    let mut counts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut lost_gained: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut changed = Vec::new();
    for r in run {
        let Some(b) = base_by.get(&r.item_id) else {
            continue;
        };
        for (name, now) in &r.verdicts {
            let Some(before) = b.verdicts.get(name) else {
                continue;
            };
            let c = counts.entry(name.clone()).or_default();
            c.0 += 1;
            c.1 += u64::from(*before);
            c.2 += u64::from(*now);
            let lg = lost_gained.entry(name.clone()).or_default();
            match (before, now) {
                (true, false) => lg.0 += 1,
                (false, true) => lg.1 += 1,
                _ => {}
            }
            if before != now {
                changed.push(ItemDiff {
                    item_id: r.item_id,
                    evaluator: name.clone(),
                    base: *before,
                    run: *now,
                });
            }
        }
    }
    let deltas: Vec<Delta> = counts
        .into_iter()
        .map(|(name, (n, bp, rp))| {
            let (lost, gained) = lost_gained.get(&name).copied().unwrap_or_default();
            let nf = n.max(1) as f64;
            let (base_rate, run_rate) = (bp as f64 / nf, rp as f64 / nf);
            let delta = run_rate - base_rate;
            // Paired difference of proportions: var = ((b + c) - (c - b)^2 / n) / n^2.
            let (b, c) = (lost as f64, gained as f64);
            let se = (((b + c) - (c - b).powi(2) / nf).max(0.0)).sqrt() / nf;
            let p_value = mcnemar_p(lost, gained);
            Delta {
                evaluator: name,
                paired: n,
                base_rate,
                run_rate,
                delta,
                ci95: (delta - 1.96 * se, delta + 1.96 * se),
                lost,
                gained,
                p_value,
                regressed: delta < -threshold && p_value < alpha,
            }
        })
        .collect();
    Comparison {
        regressed: deltas.iter().any(|d| d.regressed),
        deltas,
        changed,
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per evaluator, failed when it regressed.
pub fn junit(suite: &str, c: &Comparison) -> String {
    let failures = c.deltas.iter().filter(|d| d.regressed).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
        xml(suite),
        c.deltas.len()
    );
    for d in &c.deltas {
        out.push_str(&format!(
            "    <testcase classname=\"vigil.eval\" name=\"{}\">",
            xml(&d.evaluator)
        ));
        if d.regressed {
            out.push_str(&format!(
                "\n      <failure message=\"pass rate {:.1}% → {:.1}% ({:+.1} points, 95% CI {:+.1}..{:+.1}, McNemar p={:.4})\">{} items passed before and fail now</failure>\n    ",
                d.base_rate * 100.0,
                d.run_rate * 100.0,
                d.delta * 100.0,
                d.ci95.0 * 100.0,
                d.ci95.1 * 100.0,
                d.p_value,
                d.lost
            ));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(passes: &[bool]) -> Vec<ExperimentResult> {
        passes
            .iter()
            .enumerate()
            .map(|(i, p)| ExperimentResult {
                item_id: i as i64,
                output: Some("x".into()),
                error: None,
                latency_ms: Some(1.0),
                verdicts: [("e".to_string(), *p)].into_iter().collect(),
            })
            .collect()
    }

    #[test]
    fn mcnemar_matches_hand_computed_values() {
        // b = 0, c = 5: p = 2 * (1/32) = 0.0625.
        assert!((mcnemar_p(0, 5) - 0.0625).abs() < 1e-12);
        // b = 1, c = 9: p = 2 * (1 + 10) / 1024.
        assert!((mcnemar_p(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_p(0, 0), 1.0);
        assert_eq!(mcnemar_p(5, 5), 1.0);
    }

    #[test]
    fn an_unchanged_run_passes_and_a_real_drop_fails() {
        let base = results(&[true; 30]);
        let same = compare(&base, &base, 0.05, 0.05);
        assert!(!same.regressed && same.changed.is_empty());
        assert_eq!(same.deltas[0].p_value, 1.0);
        let mut worse = vec![true; 30];
        for w in worse.iter_mut().take(12) {
            *w = false;
        }
        let c = compare(&base, &results(&worse), 0.05, 0.05);
        assert!(c.regressed, "{c:?}");
        assert_eq!((c.deltas[0].lost, c.changed.len()), (12, 12));
        assert!((c.deltas[0].delta + 0.4).abs() < 1e-12);
        // One item flipping is within noise.
        let mut one = vec![true; 30];
        one[0] = false;
        assert!(!compare(&base, &results(&one), 0.0, 0.05).regressed);
        let xml = junit("suite", &c);
        assert!(
            xml.contains("<failure") && xml.contains("tests=\"1\" failures=\"1\""),
            "{xml}"
        );
    }
}
