//! Annotation: a queue of recent traces ranked by risk (not sampled at random), and the labels
//! humans give them. A label is `good` or `bad`, optionally with a failure mode and a comment; it
//! also becomes the human verdict that evaluators are aligned against.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use vigil_model::{now_unix_nanos, ProjectId, TraceId};
use vigil_store::{FailureModeSpec, ScoreRow, ScoreSource, Store};

use crate::alignment::{cohens_kappa, from_verdicts};

/// Below this MCC an evaluator is not trusted: traces it failed get extra weight in the queue, so
/// humans label more of them.
pub const MCC_THRESHOLD: f64 = 0.5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueItem {
    pub trace_id: TraceId,
    pub risk: f64,
    /// Why it is in the queue, most important first.
    pub reasons: Vec<String>,
    pub start_ns: i64,
    pub root_name: String,
    pub duration_ms: f64,
    pub cost_usd: Option<f64>,
    pub status: String,
    pub session_id: Option<String>,
}

fn p95(mut xs: Vec<f64>) -> Option<f64> {
    if xs.len() < 20 {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() * 95 / 100).copied()
}

/// Evaluators whose agreement with humans is too low to trust (or unknown after a few labels).
pub async fn weak_evaluators(
    store: &dyn Store,
    project: &ProjectId,
) -> Result<HashSet<String>, vigil_store::Error> {
    let mut weak = HashSet::new();
    for e in store.list_evaluators(Some(project)).await? {
        let pairs = store.score_pairs(project, &e.name, &e.name).await?;
        let a = from_verdicts(pairs);
        if a.n >= 5 && a.mcc.is_none_or(|m| m < MCC_THRESHOLD) {
            weak.insert(e.name);
        }
    }
    Ok(weak)
}

/// The next traces for `annotator` to label, riskiest first.
pub async fn queue(
    store: &dyn Store,
    project: &ProjectId,
    annotator: &str,
    since_ns: i64,
    limit: usize,
) -> Result<Vec<QueueItem>, vigil_store::Error> {
    let candidates = store.annotation_candidates(project, since_ns, 2000).await?;
    let done: HashSet<TraceId> = store
        .annotations(project)
        .await?
        .into_iter()
        .filter(|(_, who, _)| who == annotator)
        .map(|(t, _, _)| t)
        .collect();
    let weak = weak_evaluators(store, project).await?;
    let cost_p95 = p95(candidates.iter().filter_map(|c| c.cost_usd).collect());
    let slow_p95 = p95(candidates.iter().map(|c| c.duration_ms).collect());
    let mut items: Vec<QueueItem> = candidates
        .into_iter()
        .filter(|c| !done.contains(&c.trace_id))
        .map(|c| {
            let mut risk = 0.0;
            let mut reasons: Vec<(f64, String)> = Vec::new();
            let mut add = |w: f64, why: String| {
                risk += w;
                reasons.push((w, why));
            };
            if c.negative_feedback > 0 {
                add(
                    4.0 * c.negative_feedback as f64,
                    "negative feedback from the user".into(),
                );
            }
            for e in &c.failing_evaluators {
                add(3.0, format!("evaluator `{e}` failed it"));
                if weak.contains(e) {
                    add(
                        2.0,
                        format!(
                            "`{e}` disagrees with humans too often (MCC below {MCC_THRESHOLD})"
                        ),
                    );
                }
            }
            if c.uncertain_judgements > 0 {
                add(
                    2.0,
                    "low judge confidence (an LLM judge scored it near the middle)".into(),
                );
            }
            if c.status == "error" {
                add(3.0, "a step errored".into());
            }
            if c.flags != 0 {
                add(
                    3.0,
                    "flagged: a tool failed quietly or a model called an undeclared tool".into(),
                );
            }
            if let (Some(p), Some(cost)) = (cost_p95, c.cost_usd) {
                if cost > p {
                    add(2.0, "cost outlier (above the 95th percentile)".into());
                }
            }
            if slow_p95.is_some_and(|p| c.duration_ms > p) {
                add(2.0, "latency outlier (above the 95th percentile)".into());
            }
            reasons.sort_by(|a, b| b.0.total_cmp(&a.0));
            QueueItem {
                trace_id: c.trace_id,
                risk,
                reasons: reasons.into_iter().map(|(_, r)| r).collect(),
                start_ns: c.start_ns,
                root_name: c.root_name,
                duration_ms: c.duration_ms,
                cost_usd: c.cost_usd,
                status: c.status,
                session_id: c.session_id,
            }
        })
        .collect();
    items.sort_by(|a, b| b.risk.total_cmp(&a.risk).then(b.start_ns.cmp(&a.start_ns)));
    items.truncate(limit);
    Ok(items)
}

/// A label, as given.
#[derive(Clone, Debug)]
pub struct Label {
    pub trace_id: TraceId,
    pub annotator: String,
    pub good: bool,
    /// An existing failure mode (id or name), or the name of a new one.
    pub failure_mode: Option<String>,
    /// Already redacted.
    pub comment: Option<String>,
}

/// Records a label: the annotation itself, the failure-mode example, and the human verdict for
/// each evaluator it speaks to. Returns the failure mode's id when there is one.
pub async fn annotate(
    store: &dyn Store,
    project: &ProjectId,
    label: Label,
) -> Result<Option<String>, vigil_store::Error> {
    let now = now_unix_nanos();
    let human = |name: &str, passed: bool, reason: Option<String>| ScoreRow {
        id: 0,
        project_id: project.clone(),
        trace_id: Some(label.trace_id),
        span_id: None,
        session_id: None,
        name: name.to_string(),
        value: Some(if passed { 1.0 } else { 0.0 }),
        passed: Some(passed),
        label: Some(if passed { "good" } else { "bad" }.into()),
        reason,
        source: ScoreSource::Human,
        source_id: Some(label.annotator.clone()),
        created_ns: now,
        cost_usd: None,
    };
    store
        .insert_score(human("annotation", label.good, label.comment.clone()))
        .await?;
    let mut mode_id = None;
    if let Some(fm) = label
        .failure_mode
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        let modes = store.list_failure_modes(Some(project)).await?;
        let found = modes.into_iter().find(|m| m.id == fm || m.name == fm);
        let mode = match found {
            Some(m) => m,
            None => {
                store
                    .put_failure_mode(
                        project,
                        FailureModeSpec {
                            name: fm.to_string(),
                            definition: label.comment.clone().unwrap_or_else(|| fm.to_string()),
                            severity: "medium".into(),
                            evaluator: None,
                        },
                    )
                    .await?
            }
        };
        store
            .add_failure_mode_example(project, &mode.id, label.trace_id, ScoreSource::Human)
            .await?;
        if let Some(e) = &mode.evaluator {
            store
                .insert_score(human(e, false, label.comment.clone()))
                .await?;
        }
        mode_id = Some(mode.id);
    } else if label.good {
        // A good trace: every evaluator that judged it should have passed it.
        let judged: HashSet<String> = store
            .list_scores(project, Some(label.trace_id), None, 200)
            .await?
            .into_iter()
            .filter(|s| s.source == ScoreSource::Evaluator && s.span_id.is_none())
            .map(|s| s.name)
            .collect();
        for name in judged {
            store.insert_score(human(&name, true, None)).await?;
        }
    }
    Ok(mode_id)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    pub annotators: Vec<String>,
    /// Traces labelled by at least two annotators.
    pub shared_traces: usize,
    /// Cohen's kappa over every pair of annotators on their shared traces (pairs pooled).
    pub kappa: Option<f64>,
    /// Share of pairs that agree.
    pub raw_agreement: Option<f64>,
}

/// Agreement between annotators on the traces they both labelled (the latest label of each).
pub fn agreement(labels: &[(TraceId, String, bool)]) -> Agreement {
    let mut latest: HashMap<(TraceId, &str), bool> = HashMap::new();
    for (t, who, good) in labels {
        latest.insert((*t, who.as_str()), *good);
    }
    let mut by_trace: HashMap<TraceId, Vec<(&str, bool)>> = HashMap::new();
    for ((t, who), good) in &latest {
        by_trace.entry(*t).or_default().push((who, *good));
    }
    let mut pairs = Vec::new();
    let mut shared = 0;
    for labels in by_trace.values_mut() {
        if labels.len() < 2 {
            continue;
        }
        shared += 1;
        labels.sort_by(|a, b| a.0.cmp(b.0));
        for i in 0..labels.len() {
            for j in i + 1..labels.len() {
                pairs.push((labels[i].1, labels[j].1));
            }
        }
    }
    let mut annotators: Vec<String> = latest
        .keys()
        .map(|(_, w)| w.to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    annotators.sort();
    Agreement {
        annotators,
        shared_traces: shared,
        kappa: cohens_kappa(&pairs),
        raw_agreement: (!pairs.is_empty())
            .then(|| pairs.iter().filter(|(a, b)| a == b).count() as f64 / pairs.len() as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_pairs_the_latest_labels_per_trace() {
        let t = |i: u8| TraceId([i; 16]);
        let labels = vec![
            (t(1), "ann".to_string(), true),
            (t(1), "bob".to_string(), true),
            (t(2), "ann".to_string(), false),
            (t(2), "bob".to_string(), true),
            (t(2), "bob".to_string(), false), // bob changed his mind
            (t(3), "ann".to_string(), true),  // only one annotator
        ];
        let a = agreement(&labels);
        assert_eq!(a.annotators, ["ann", "bob"]);
        assert_eq!(a.shared_traces, 2);
        assert_eq!(a.raw_agreement, Some(1.0));
        assert_eq!(a.kappa, Some(1.0));
    }
}
