//! What a Head of AI reads: candidate failure modes proposed from failing traces, and the quality
//! summary (active failure modes over time, eval coverage, the worst failure mode's rate,
//! regression-free deployments, evaluator alignment over time).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use vigil_model::{format_rfc3339_nanos, ProjectId, TraceId};
use vigil_store::{FailureModeRow, Store};

use crate::alignment::{from_verdicts, Alignment};
use crate::annotation::MCC_THRESHOLD;
use crate::failure_modes::MIN_SESSIONS;

const DAY_NS: i64 = 86_400_000_000_000;

/// A group of failing traces that look like one problem.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub evaluator: String,
    /// The failure as its traces share it (numbers and ids stripped).
    pub signature: String,
    pub traces: usize,
    pub examples: Vec<TraceId>,
    pub suggested_name: String,
}

/// A failure reason with what varies from trace to trace (numbers, ids, quoted values) taken out.
pub fn signature(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_token = false;
    for word in reason.split_whitespace() {
        let variable = word.chars().any(|c| c.is_ascii_digit())
            || (word.len() >= 12 && word.chars().all(|c| c.is_ascii_hexdigit()));
        if !out.is_empty() {
            out.push(' ');
        }
        if variable {
            if !in_token {
                out.push('#');
            }
            in_token = true;
        } else {
            out.push_str(&word.to_lowercase());
            in_token = false;
        }
    }
    out.chars().take(160).collect()
}

fn words(s: &str) -> HashSet<&str> {
    s.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| w.len() > 2)
        .collect()
}

fn jaccard(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / a.union(&b).count().max(1) as f64
}

/// Clusters failing verdicts: the same evaluator with the same signature (the same tool and error,
/// the same rule failing the same way), then signatures of one evaluator whose words overlap by
/// 60 % or more. Clusters of one trace are not proposed.
pub fn candidates(
    failing: &[(TraceId, String, String)],
    known: &[FailureModeRow],
) -> Vec<Candidate> {
    let mut groups: BTreeMap<(String, String), Vec<TraceId>> = BTreeMap::new();
    for (trace, evaluator, reason) in failing {
        groups
            .entry((evaluator.clone(), signature(reason)))
            .or_default()
            .push(*trace);
    }
    let mut merged: Vec<(String, String, Vec<TraceId>)> = Vec::new();
    for ((evaluator, sig), traces) in groups {
        match merged
            .iter_mut()
            .find(|(e, s, _)| *e == evaluator && jaccard(s, &sig) >= 0.6)
        {
            Some((_, _, ts)) => ts.extend(traces),
            None => merged.push((evaluator, sig, traces)),
        }
    }
    let covered: HashSet<&str> = known
        .iter()
        .filter_map(|f| f.evaluator.as_deref())
        .collect();
    let mut out: Vec<Candidate> = merged
        .into_iter()
        .map(|(evaluator, signature, mut traces)| {
            traces.sort();
            traces.dedup();
            let name: String = signature
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() > 2 && *w != "#")
                .take(4)
                .collect::<Vec<_>>()
                .join("-");
            Candidate {
                suggested_name: format!(
                    "{evaluator}: {}",
                    if name.is_empty() { "failure" } else { &name }
                ),
                examples: traces.iter().take(5).copied().collect(),
                traces: traces.len(),
                evaluator,
                signature,
            }
        })
        .filter(|c| c.traces >= 2)
        .collect();
    // Failures no failure mode tracks yet come first, then the biggest.
    out.sort_by(|a, b| {
        covered
            .contains(a.evaluator.as_str())
            .cmp(&covered.contains(b.evaluator.as_str()))
            .then(b.traces.cmp(&a.traces))
    });
    out
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        _ => 1,
    }
}

/// Statuses in which a failure mode still happens.
fn active(status: &str) -> bool {
    status != "verified"
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayPoint {
    pub day: String,
    pub value: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvaluatorAlignment {
    pub evaluator: String,
    pub now: Alignment,
    /// MCC as of the end of each day (labels given up to then).
    pub mcc_by_day: Vec<DayPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub active_failure_modes: usize,
    pub by_status: BTreeMap<String, usize>,
    pub active_by_day: Vec<DayPoint>,
    /// Share of active failure modes whose evaluator agrees with humans (MCC ≥ threshold).
    pub eval_coverage: Option<f64>,
    pub worst: Option<Worst>,
    pub deployments: usize,
    pub regression_free_deployments: usize,
    pub regression_free_rate: Option<f64>,
    pub alignment: Vec<EvaluatorAlignment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Worst {
    pub failure_mode: String,
    pub severity: String,
    pub status: String,
    pub per_1000_sessions_24h: Option<f64>,
    pub per_1000_sessions_by_day: Vec<DayPoint>,
}

fn day_of(ns: i64) -> String {
    format_rfc3339_nanos(ns).chars().take(10).collect()
}

/// The quality summary over the last `days` days.
pub async fn summary(
    store: &dyn Store,
    project: &ProjectId,
    now: i64,
    days: i64,
) -> Result<Summary, vigil_store::Error> {
    let modes = store.list_failure_modes(Some(project)).await?;
    let from = now - days * DAY_NS;
    let day_ends: Vec<i64> = (0..days).rev().map(|d| now - d * DAY_NS).collect();
    // Replay each failure mode's history to know whether it was active at the end of each day.
    let mut histories: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for f in &modes {
        let events = store.failure_mode_events(project, &f.id).await?;
        let mut h = vec![(f.created_ns, "open".to_string())];
        h.extend(events.into_iter().map(|e| (e.time_ns, e.to_status)));
        histories.insert(f.id.clone(), h);
    }
    let active_by_day = day_ends
        .iter()
        .map(|end| DayPoint {
            day: day_of(*end),
            value: Some(
                histories
                    .values()
                    .filter(|h| {
                        h.iter()
                            .rev()
                            .find(|(t, _)| t <= end)
                            .is_some_and(|(_, s)| active(s))
                    })
                    .count() as f64,
            ),
        })
        .collect();
    let mut by_status = BTreeMap::new();
    for f in &modes {
        *by_status.entry(f.status.clone()).or_insert(0) += 1;
    }
    // Alignment per evaluator, now and as of each day.
    let mut aligned_names = HashSet::new();
    let mut alignment_rows = Vec::new();
    for e in store.list_evaluators(Some(project)).await? {
        let pairs = store.score_pairs_timed(project, &e.name, &e.name).await?;
        let now_a = from_verdicts(pairs.iter().map(|(e, h, _)| (*e, *h)));
        if now_a.mcc.is_some_and(|m| m >= MCC_THRESHOLD) {
            aligned_names.insert(e.name.clone());
        }
        let mcc_by_day = day_ends
            .iter()
            .map(|end| DayPoint {
                day: day_of(*end),
                value: from_verdicts(
                    pairs
                        .iter()
                        .filter(|(_, _, t)| t <= end)
                        .map(|(e, h, _)| (*e, *h)),
                )
                .mcc,
            })
            .collect();
        alignment_rows.push(EvaluatorAlignment {
            evaluator: e.name,
            now: now_a,
            mcc_by_day,
        });
    }
    let active_modes: Vec<&FailureModeRow> = modes.iter().filter(|f| active(&f.status)).collect();
    let eval_coverage = (!active_modes.is_empty()).then(|| {
        active_modes
            .iter()
            .filter(|f| {
                f.evaluator
                    .as_ref()
                    .is_some_and(|e| aligned_names.contains(e))
            })
            .count() as f64
            / active_modes.len() as f64
    });
    let worst_mode = active_modes
        .iter()
        .filter(|f| f.evaluator.is_some())
        .max_by_key(|f| (severity_rank(&f.severity), f.updated_ns));
    let worst = match worst_mode {
        Some(f) => {
            let e = f.evaluator.as_deref().unwrap_or_default();
            let last = store
                .failure_rate(project, e, now - DAY_NS, now, None, None)
                .await?;
            let by_day = store.failure_rate_by_day(project, e, from, now).await?;
            let by: HashMap<String, Option<f64>> = by_day
                .into_iter()
                .map(|(d, r)| (d, r.per_thousand()))
                .collect();
            Some(Worst {
                failure_mode: f.name.clone(),
                severity: f.severity.clone(),
                status: f.status.clone(),
                per_1000_sessions_24h: last.per_thousand(),
                per_1000_sessions_by_day: day_ends
                    .iter()
                    .map(|end| {
                        let d = day_of(*end);
                        DayPoint {
                            value: by.get(&d).copied().flatten(),
                            day: d,
                        }
                    })
                    .collect(),
            })
        }
        None => None,
    };
    // A deployment regressed when, on its version, a tracked failure mode's rate rose by half or
    // more over the previous version's (each measured on at least MIN_SESSIONS sessions).
    let deployments = store.deployments(project).await?;
    let tracked: Vec<&str> = modes
        .iter()
        .filter_map(|f| f.evaluator.as_deref())
        .collect();
    let mut regression_free = 0;
    let mut judged = 0;
    for pair in deployments.windows(2) {
        let (prev, cur) = (&pair[0].0, &pair[1].0);
        let mut regressed = false;
        let mut measured = false;
        for e in &tracked {
            let a = store
                .failure_rate(project, e, 0, now, Some(prev), None)
                .await?;
            let b = store
                .failure_rate(project, e, 0, now, Some(cur), None)
                .await?;
            if a.sessions >= MIN_SESSIONS && b.sessions >= MIN_SESSIONS {
                measured = true;
                let (ra, rb) = (
                    a.per_thousand().unwrap_or(0.0),
                    b.per_thousand().unwrap_or(0.0),
                );
                if rb > ra * 1.5 && rb - ra >= 10.0 {
                    regressed = true;
                }
            }
        }
        if measured {
            judged += 1;
            if !regressed {
                regression_free += 1;
            }
        }
    }
    Ok(Summary {
        active_failure_modes: active_modes.len(),
        by_status,
        active_by_day,
        eval_coverage,
        worst,
        deployments: judged,
        regression_free_deployments: regression_free,
        regression_free_rate: (judged > 0).then(|| regression_free as f64 / judged as f64),
        alignment: alignment_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_strip_what_varies() {
        assert_eq!(
            signature("execute_tool lookup_order: tool returned an HTTP 502 for order A-1001"),
            "execute_tool lookup_order: tool returned an http # for order #"
        );
    }

    #[test]
    fn failing_traces_cluster_by_evaluator_and_signature() {
        let t = |i: u8| TraceId([i; 16]);
        let failing = vec![
            (
                t(1),
                "tools".to_string(),
                "lookup_order: empty result at 10:01".to_string(),
            ),
            (
                t(2),
                "tools".to_string(),
                "lookup_order: empty result at 11:02".to_string(),
            ),
            (
                t(3),
                "tools".to_string(),
                "lookup_order: empty result returned at 12:03".to_string(),
            ),
            (
                t(4),
                "tools".to_string(),
                "refund: HTTP 502 Bad Gateway".to_string(),
            ),
            (t(5), "json".to_string(), "not valid JSON: EOF".to_string()),
            (t(6), "json".to_string(), "not valid JSON: EOF".to_string()),
        ];
        let c = candidates(&failing, &[]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].evaluator.as_str(), c[0].traces), ("tools", 3));
        assert_eq!((c[1].evaluator.as_str(), c[1].traces), ("json", 2));
        assert!(
            c[0].suggested_name.starts_with("tools: lookup-order-empty"),
            "{}",
            c[0].suggested_name
        );
    }
}
