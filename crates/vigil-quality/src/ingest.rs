//! Evaluation at ingest: rule evaluators judge spans and traces on their way into the store, and
//! the scores commit in the same transaction as the spans.
//!
//! A span is immutable once sent, so a span-scoped rule needs nothing but the span: judging it
//! while it is in memory costs a few microseconds, where the queue (`runner`) would read the trace
//! back, decompress and parse it after a settling delay. A trace-scoped rule needs the whole trace,
//! and most traces arrive whole in one export (`is_whole`): those it judges at ingest too. The
//! chunks record which evaluators judged them (and with which version of their definition), and
//! once a trace has settled the queue skips it for an evaluator that judged all its chunks.
//!
//! Everything else stays on the queue: session-scoped evaluators (they read the session's other
//! traces), LLM judges (slow, paid, retried), traces that came in several exports, and any trace
//! with a chunk nobody judged at ingest (spans written by other processes, `vigil import` and
//! `vigil demo`). The queue reads such a trace back and judges it whole; a span's verdict already
//! given is not given twice. An export can look whole and not be all of its trace (a child exported
//! after its parent, a guardrail span sent with only a trace id): when the trace was stored already
//! its verdict on the whole is dropped by the writer, and when more spans come later the queue's
//! verdict replaces the one ingest gave. Guardrail and approval spans are judged by their sink like
//! gateway spans.
//!
//! Two things are decided from the spans of one export rather than the whole trace: whether the
//! trace is one of the quality loop's own calls (tagged on its spans), and a score's `session_id`
//! (taken from the spans of the export; null when the session is named only on another export's
//! spans). A changed definition reaches ingest within a second (at once for changes made through
//! the API or the UI).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vigil_model::{ProjectId, Span, SpanId, TraceId};
use vigil_store::{EvaluatorRow, IngestVerdicts, Store};

use crate::runner::{compile, evaluate_spans, evaluate_whole, is_own_call, Usable};
use crate::{Rule, Scope};

/// How often the evaluator definitions are re-read from the store.
const REFRESH: Duration = Duration::from_secs(1);

/// Per project, the evaluators that run at ingest.
type ByProject = HashMap<ProjectId, Vec<AtIngest>>;

/// An evaluator that runs at ingest, compiled, with the mark its chunks carry.
struct AtIngest {
    row: EvaluatorRow,
    usable: Usable,
    /// `id@version`: after a definition changes, the queue no longer trusts the marks it left.
    mark: String,
}

impl AtIngest {
    fn new(row: EvaluatorRow, usable: Usable) -> Self {
        let mark = format!("{}@{}", row.id, row.updated_ns);
        Self { row, usable, mark }
    }
}

/// The evaluators that run at ingest, per project, refreshed from the store in the background.
pub struct IngestEvaluators {
    store: Option<Arc<dyn Store>>,
    current: RwLock<Arc<ByProject>>,
    /// Compiled definitions by evaluator id, reused while a definition is unchanged.
    compiled: tokio::sync::Mutex<HashMap<String, (i64, Option<Usable>)>>,
}

impl IngestEvaluators {
    /// Starts with the evaluators stored now and keeps following their changes.
    pub async fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let this = Arc::new(Self {
            store: Some(store),
            current: RwLock::new(Arc::new(HashMap::new())),
            compiled: tokio::sync::Mutex::new(HashMap::new()),
        });
        this.refresh().await;
        let weak = Arc::downgrade(&this);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(this) = weak.upgrade() else { break };
                this.refresh().await;
            }
        });
        this
    }

    /// Without any evaluators (tools that write spans without judging them).
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            store: None,
            current: RwLock::new(Arc::new(HashMap::new())),
            compiled: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the evaluator definitions now (they are also re-read every second).
    pub async fn refresh(&self) {
        let Some(store) = &self.store else { return };
        let mut compiled = self.compiled.lock().await;
        let compiled = &mut *compiled;
        let rows = match store.list_evaluators(None).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "ingest evaluators not refreshed");
                return;
            }
        };
        // Every evaluator stays compiled while it exists, ingest or not: a definition is compiled
        // (and an unusable one reported) once per version.
        let ids: std::collections::HashSet<String> = rows.iter().map(|e| e.id.clone()).collect();
        compiled.retain(|id, _| ids.contains(id));
        let mut next: ByProject = HashMap::new();
        for row in rows.into_iter().filter(|e| e.enabled) {
            let Some(usable) = compile(compiled, &row) else {
                continue;
            };
            if runs_at_ingest(&usable) {
                next.entry(row.project_id.clone())
                    .or_default()
                    .push(AtIngest::new(row, usable));
            }
        }
        if let Ok(mut slot) = self.current.write() {
            *slot = Arc::new(next);
        }
    }

    /// The verdicts of the ingest evaluators on `spans` (already redacted, as stored).
    pub fn judge(&self, spans: &[Span]) -> IngestVerdicts {
        let current = match self.current.read() {
            Ok(c) => c.clone(),
            Err(_) => return IngestVerdicts::default(),
        };
        let mut out = IngestVerdicts::default();
        // The projects of this batch that have ingest evaluators (an OTLP export has one project).
        let mut projects: Vec<&ProjectId> = Vec::new();
        for s in spans {
            if !projects.contains(&&s.project_id) && current.contains_key(&s.project_id) {
                projects.push(&s.project_id);
            }
        }
        if projects.is_empty() {
            return out;
        }
        // The spans of each trace, in the order they came.
        let mut traces: Vec<((&ProjectId, TraceId), Vec<&Span>)> = Vec::new();
        let mut at: HashMap<(&ProjectId, TraceId), usize> = HashMap::new();
        for s in spans.iter().filter(|s| current.contains_key(&s.project_id)) {
            let key = (&s.project_id, s.trace_id);
            let i = *at.entry(key).or_insert_with(|| {
                traces.push((key, Vec::new()));
                traces.len() - 1
            });
            traces[i].1.push(s);
        }
        for ((project, trace_id), group) in &traces {
            let Some(evaluators) = current.get(*project) else {
                continue;
            };
            // The quality loop's own calls are never judged (the queue skips them the same way),
            // but a whole one is marked judged, so that the queue does not read it back to skip it.
            let own_call = group.iter().any(|s| is_own_call(s));
            let whole = is_whole(group);
            let mut judged_whole = Vec::new();
            for AtIngest {
                row,
                usable: (def, rule),
                mark,
            } in evaluators
            {
                let sampled = def.samples(trace_id) && !own_call;
                match def.scope {
                    Scope::Span if sampled => out
                        .scores
                        .extend(evaluate_spans(row, def, rule, *trace_id, group)),
                    Scope::Trace if whole => {
                        if sampled {
                            out.scores
                                .extend(evaluate_whole(row, def, rule, *trace_id, group));
                        }
                        judged_whole.push(mark.clone());
                    }
                    _ => {}
                }
            }
            if !judged_whole.is_empty() {
                out.judged_whole
                    .insert(((*project).clone(), *trace_id), judged_whole);
            }
        }
        // Span-scoped evaluators judged every span of the write.
        for project in projects {
            if let Some(evaluators) = current.get(project) {
                out.judged_by.insert(
                    project.clone(),
                    evaluators
                        .iter()
                        .filter(|e| e.usable.0.scope == Scope::Span)
                        .map(|e| e.mark.clone())
                        .collect(),
                );
            }
        }
        out
    }
}

/// Whether the spans of a trace in one export are all of it: they hold its root and the parent of
/// every other span. An instrumented process ends a trace's child spans before their parent and
/// exports spans as they end, so an export holding the root and a closed tree holds the trace as
/// that process recorded it. A trace spread over exports or services (a parent elsewhere, spans
/// that came before) is judged by the queue once it has settled.
fn is_whole(spans: &[&Span]) -> bool {
    let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    spans.iter().any(|s| s.parent_span_id.is_none())
        && spans
            .iter()
            .all(|s| s.parent_span_id.is_none_or(|p| ids.contains(&p)))
}

/// Rules run at ingest: span-scoped ones on every span, trace-scoped ones on every trace an export
/// carries whole (`is_whole`). Session-scoped rules read other traces and LLM judges are slow and
/// paid: they stay on the queue.
fn runs_at_ingest((def, _): &Usable) -> bool {
    matches!(def.scope, Scope::Span | Scope::Trace) && !matches!(def.rule, Rule::LlmJudge { .. })
}

/// As a sink filter: judging only (for spans already redacted where they were made, such as
/// guardrail spans).
#[async_trait::async_trait]
impl vigil_store::sink::SpanFilter for IngestEvaluators {
    async fn filter(&self, spans: &mut [Span]) -> IngestVerdicts {
        self.judge(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: Option<u8>) -> Span {
        Span {
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            ..Span::default()
        }
    }

    #[test]
    fn a_trace_is_whole_with_its_root_and_every_parent() {
        let whole = [span(1, None), span(2, Some(1)), span(3, Some(2))];
        assert!(is_whole(&whole.iter().collect::<Vec<_>>()));
        // Its children came in an earlier export, or a service below it sends its own spans.
        let root_only_of_part = [span(1, None), span(3, Some(2))];
        assert!(!is_whole(&root_only_of_part.iter().collect::<Vec<_>>()));
        // A service called by another: its local root's parent is elsewhere.
        let remote_parent = [span(5, Some(9)), span(6, Some(5))];
        assert!(!is_whole(&remote_parent.iter().collect::<Vec<_>>()));
    }

    /// Span rules judge every span and mark every chunk; trace rules judge and mark only a trace
    /// its export carries whole; the quality loop's own calls are marked but not judged.
    #[test]
    fn judging_at_ingest_marks_what_it_judged() {
        let project = ProjectId::new("p");
        let evaluator = |id: &str, definition: serde_json::Value| {
            let row = EvaluatorRow {
                id: id.into(),
                project_id: project.clone(),
                name: id.into(),
                definition,
                enabled: true,
                cursor: 0,
                created_ns: 1,
                updated_ns: 1,
            };
            let usable = compile(&mut HashMap::new(), &row).unwrap();
            AtIngest::new(row, usable)
        };
        let evaluators = IngestEvaluators::none();
        *evaluators.current.write().unwrap() = Arc::new(
            [(
                project.clone(),
                vec![
                    evaluator(
                        "per-span",
                        serde_json::json!({"scope": "span", "rule": {"type": "refusal"}}),
                    ),
                    evaluator("whole", serde_json::json!({"rule": {"type": "refusal"}})),
                ],
            )]
            .into_iter()
            .collect(),
        );
        let answer = |trace: u8, id: u8, parent: Option<u8>, text: &str| Span {
            trace_id: TraceId::from_bytes(&[trace; 16]).unwrap(),
            project_id: project.clone(),
            attributes: [("output.value".to_string(), serde_json::json!(text))]
                .into_iter()
                .collect(),
            ..span(id, parent)
        };
        let mut own = answer(3, 1, None, "I'm sorry, I can't help with that.");
        own.attributes
            .insert("vigil.tags".into(), serde_json::json!(["llm-judge"]));
        let spans = vec![
            answer(1, 1, None, "Your order ships Monday."),
            answer(1, 2, Some(1), "I'm sorry, I can't help with that."),
            answer(
                2,
                2,
                Some(1),
                "A child whose parent came in another export.",
            ),
            own,
        ];
        let v = evaluators.judge(&spans);
        let verdicts: Vec<(u8, &str, bool, bool)> = v
            .scores
            .iter()
            .map(|s| {
                let trace = s.trace_id.unwrap().as_bytes()[0];
                (
                    trace,
                    s.name.as_str(),
                    s.span_id.is_some(),
                    s.passed.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (1, "per-span", true, true),
                (1, "per-span", true, false),
                (1, "whole", false, true),
                (2, "per-span", true, true),
            ]
        );
        assert_eq!(v.judged_by[&project], vec!["per-span@1".to_string()]);
        let whole: Vec<u8> = {
            let mut t: Vec<u8> = v
                .judged_whole
                .keys()
                .map(|(_, t)| t.as_bytes()[0])
                .collect();
            t.sort_unstable();
            t
        };
        assert_eq!(
            whole,
            vec![1, 3],
            "trace 2 is not whole; the judge's own call is marked"
        );
        assert_eq!(
            v.judged_whole[&(project.clone(), TraceId::from_bytes(&[1; 16]).unwrap())],
            vec!["whole@1".to_string()]
        );
    }
}
