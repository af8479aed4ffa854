//! Passing verdicts given at ingest, stored with the spans they judge (migration 0014): verdicts
//! on spans, and on traces an export carried whole.
//!
//! A rule passes most of what it judges, and a row of `scores` per passing verdict (with its three
//! indexes) was most of what judging at ingest cost the single writer. Each chunk carries its
//! passing verdicts in one small blob instead, and its trace's row names the evaluators that passed
//! any of them (`traces.passed_by`). Failing verdicts stay rows: they are what the annotation
//! queue and the failure clusters read. Verdicts the queue gives (session-scoped
//! evaluators, judges, traces re-read because a chunk was not judged at ingest) stay rows too, and
//! a row given by the queue on a trace supersedes what ingest said of it.
//!
//! Readers put the two back together: a trace's scores (rows and its chunks' blobs, a verdict
//! given both at ingest and by the queue listed once), the latest scores by name (traces whose
//! `passed_by` names the evaluator), failure rates (whose denominators count the sessions the
//! evaluator judged, passed or not) and alignment (an evaluator's verdict on a trace a human
//! labelled). A stored verdict reads back as the row it would have been,
//! with `id` 0.

use serde::{Deserialize, Serialize};
use vigil_model::{ProjectId, SpanId, TraceId};

use super::body;
use crate::quality::{ScoreRow, ScoreSource};
use crate::Result;

/// SQL: `traces.passed_by` of `t` names the evaluator `?2` (names are newline-separated).
macro_rules! passed_by_evaluator {
    () => {
        "instr(char(10) || t.passed_by || char(10), char(10) || ?2 || char(10)) > 0"
    };
}
pub(super) use passed_by_evaluator;

/// Whether a verdict can be stored with its spans: a passing rule verdict on one span or on the
/// whole trace, shaped as a rule gives it (so it reads back identical). Anything else stays a row.
pub(super) fn compact(s: &ScoreRow) -> bool {
    s.source == ScoreSource::Evaluator
        && s.passed == Some(true)
        && s.value == Some(1.0)
        && s.label.as_deref() == Some("pass")
        && s.cost_usd.is_none()
        && s.trace_id.is_some()
        && s.source_id.is_some()
        && !s.name.is_empty()
        && !s.name.contains('\n')
}

/// The verdicts of one evaluator in one chunk: what a row would repeat, once.
#[derive(Serialize, Deserialize)]
struct Group {
    source_id: String,
    name: String,
    created_ns: i64,
    session_id: Option<String>,
    /// Each judged span (none: the trace as a whole) with the verdict's reason. Blobs written
    /// before trace verdicts were stored here hold only spans, which read back as `Some`.
    spans: Vec<(Option<SpanId>, Option<String>)>,
}

/// A chunk's passing verdicts in their stored form.
pub(super) struct ChunkPasses {
    pub blob: Vec<u8>,
    /// The names of their evaluators, sorted, newline-separated (for `traces.passed_by`).
    pub names: String,
}

/// Stores `verdicts` (each `compact`) as one blob; a span judged twice by the same evaluator in
/// one request (a repeated span) keeps its first verdict, as the rows' unique index did.
pub(super) fn encode(verdicts: Vec<ScoreRow>) -> Result<Option<ChunkPasses>> {
    let mut groups: Vec<Group> = Vec::new();
    for s in verdicts {
        let (Some(source_id), span) = (s.source_id, s.span_id) else {
            continue;
        };
        let at = groups
            .iter()
            .position(|g| g.source_id == source_id && g.name == s.name);
        match at {
            Some(i) if groups[i].spans.iter().any(|(id, _)| *id == span) => {}
            Some(i) => groups[i].spans.push((span, s.reason)),
            None => groups.push(Group {
                source_id,
                name: s.name,
                created_ns: s.created_ns,
                session_id: s.session_id,
                spans: vec![(span, s.reason)],
            }),
        }
    }
    stored_form(groups)
}

/// The verdicts of a stored blob as rows, optionally only those of the evaluator `name`.
pub(super) fn expand(
    blob: &[u8],
    project: &ProjectId,
    trace: TraceId,
    name: Option<&str>,
    out: &mut Vec<ScoreRow>,
) -> Result<()> {
    let groups: Vec<Group> = body::decode(blob)?;
    for g in groups
        .into_iter()
        .filter(|g| name.is_none_or(|n| n == g.name))
    {
        for (span, reason) in g.spans {
            out.push(ScoreRow {
                id: 0,
                project_id: project.clone(),
                trace_id: Some(trace),
                span_id: span,
                session_id: g.session_id.clone(),
                name: g.name.clone(),
                value: Some(1.0),
                passed: Some(true),
                label: Some("pass".into()),
                reason,
                source: ScoreSource::Evaluator,
                source_id: Some(g.source_id.clone()),
                created_ns: g.created_ns,
                cost_usd: None,
            });
        }
    }
    Ok(())
}

/// Groups in their stored form (none when there are none).
fn stored_form(groups: Vec<Group>) -> Result<Option<ChunkPasses>> {
    if groups.is_empty() {
        return Ok(None);
    }
    let mut names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(Some(ChunkPasses {
        names: names.join("\n"),
        blob: body::encode_small(&groups)?,
    }))
}

/// `stored` without its verdicts on the whole trace (for a chunk whose export turned out not to be
/// all of its trace; rare, so decoding it again costs nothing that matters).
pub(super) fn without_trace_verdicts(stored: &ChunkPasses) -> Result<Option<ChunkPasses>> {
    let mut groups: Vec<Group> = body::decode(&stored.blob)?;
    for g in &mut groups {
        g.spans.retain(|(span, _)| span.is_some());
    }
    groups.retain(|g| !g.spans.is_empty());
    stored_form(groups)
}

/// `old` and `new` names (newline-separated) together, sorted, each once.
pub(super) fn union_names(old: Option<&str>, new: &str) -> String {
    let mut names: Vec<&str> = old
        .unwrap_or_default()
        .split('\n')
        .chain(new.split('\n'))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join("\n")
}

/// Rows and stored verdicts as one list, newest first, at most `limit`: a verdict given at ingest
/// and again by the queue (which re-judges a trace when a chunk of it was not judged at ingest)
/// is listed once, as its row.
pub(super) fn merge(rows: Vec<ScoreRow>, stored: Vec<ScoreRow>, limit: usize) -> Vec<ScoreRow> {
    let key = |s: &ScoreRow| -> (Option<String>, String, Option<TraceId>, Option<SpanId>) {
        (s.source_id.clone(), s.name.clone(), s.trace_id, s.span_id)
    };
    let mut seen: std::collections::HashSet<_> = rows
        .iter()
        .filter(|s| s.source == ScoreSource::Evaluator)
        .map(key)
        .collect();
    let mut all = rows;
    for s in stored {
        if seen.insert(key(&s)) {
            all.push(s);
        }
    }
    all.sort_by(|a, b| b.created_ns.cmp(&a.created_ns).then(b.id.cmp(&a.id)));
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(name: &str, span: u8, passed: bool) -> ScoreRow {
        ScoreRow {
            id: 0,
            project_id: ProjectId("p".into()),
            trace_id: Some(TraceId::from_bytes(&[1; 16]).unwrap()),
            span_id: Some(SpanId::from_bytes(&[span; 8]).unwrap()),
            session_id: Some("s".into()),
            name: name.into(),
            value: Some(if passed { 1.0 } else { 0.0 }),
            passed: Some(passed),
            label: Some(if passed { "pass" } else { "fail" }.into()),
            reason: Some(format!("reason {span}")),
            source: ScoreSource::Evaluator,
            source_id: Some(format!("id-{name}")),
            created_ns: 7,
            cost_usd: None,
        }
    }

    #[test]
    fn stored_verdicts_read_back_as_the_rows_they_replace() {
        let given = vec![
            verdict("b", 1, true),
            verdict("a", 1, true),
            verdict("b", 2, true),
        ];
        assert!(given.iter().all(compact));
        assert!(!compact(&verdict("a", 1, false)));
        let mut repeated = given.clone();
        repeated.push(verdict("b", 2, true));
        let stored = encode(repeated).unwrap().unwrap();
        assert_eq!(stored.names, "a\nb");
        let (project, trace) = (ProjectId("p".into()), given[0].trace_id.unwrap());
        let mut back = Vec::new();
        expand(&stored.blob, &project, trace, None, &mut back).unwrap();
        let mut want = given.clone();
        want.sort_by_key(|s| (s.name.clone(), s.span_id));
        back.sort_by_key(|s| (s.name.clone(), s.span_id));
        assert_eq!(back, want);
        let mut only_a = Vec::new();
        expand(&stored.blob, &project, trace, Some("a"), &mut only_a).unwrap();
        assert_eq!(only_a, vec![given[1].clone()]);
    }

    #[test]
    fn trace_verdicts_and_blobs_from_before_them_read_back() {
        let mut whole = verdict("t", 1, true);
        whole.span_id = None;
        assert!(compact(&whole));
        let stored = encode(vec![whole.clone(), verdict("a", 2, true)])
            .unwrap()
            .unwrap();
        let (project, trace) = (ProjectId("p".into()), whole.trace_id.unwrap());
        let mut back = Vec::new();
        expand(&stored.blob, &project, trace, Some("t"), &mut back).unwrap();
        assert_eq!(back, vec![whole]);
        // The layout before trace verdicts: a span id where there is now an optional one.
        #[derive(Serialize)]
        struct Before {
            source_id: String,
            name: String,
            created_ns: i64,
            session_id: Option<String>,
            spans: Vec<(SpanId, Option<String>)>,
        }
        let old = verdict("a", 3, true);
        let blob = body::encode_small(&vec![Before {
            source_id: old.source_id.clone().unwrap(),
            name: "a".into(),
            created_ns: old.created_ns,
            session_id: old.session_id.clone(),
            spans: vec![(old.span_id.unwrap(), old.reason.clone())],
        }])
        .unwrap();
        let mut back = Vec::new();
        expand(&blob, &project, trace, None, &mut back).unwrap();
        assert_eq!(back, vec![old]);
    }

    #[test]
    fn a_verdict_given_twice_is_listed_once_and_the_newest_first() {
        let mut row = verdict("a", 1, true);
        row.id = 9;
        let mut later = verdict("a", 2, true);
        later.created_ns = 8;
        let merged = merge(
            vec![row.clone()],
            vec![verdict("a", 1, true), later.clone()],
            10,
        );
        assert_eq!(merged, vec![later.clone(), row]);
        assert_eq!(
            merge(vec![], vec![verdict("a", 1, true), later.clone()], 1),
            vec![later]
        );
    }

    #[test]
    fn names_are_kept_once_in_order() {
        assert_eq!(union_names(Some("b\nc"), "a\nc"), "a\nb\nc");
        assert_eq!(union_names(None, "a"), "a");
    }
}
