//! Evaluation at ingest: span-scoped rule evaluators judge spans on their way into the store, and
//! the scores commit in the same transaction as the spans.
//!
//! A span is immutable once sent, so a span-scoped rule needs nothing but the span: judging it
//! while it is in memory costs a few microseconds, where the queue (`runner`) would read the trace
//! back, decompress and parse it after a settling delay. The chunks record which evaluators judged
//! them, and the queue skips a trace whose chunks an evaluator has all judged. Trace- and
//! session-scoped evaluators and LLM judges (slow, paid, retried) stay on the queue, as do spans
//! written by other processes (`vigil import`, `vigil demo`): nothing marked them judged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vigil_model::{ProjectId, Span, TraceId};
use vigil_store::{EvaluatorRow, IngestVerdicts, Store};

use crate::runner::{compile, evaluate_spans, is_own_call, Usable};
use crate::{Rule, Scope};

/// How often the evaluator definitions are re-read from the store.
const REFRESH: Duration = Duration::from_secs(1);

/// Per project, the evaluators that run at ingest.
type ByProject = HashMap<ProjectId, Vec<(EvaluatorRow, Usable)>>;

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
        let mut next: ByProject = HashMap::new();
        for row in rows.into_iter().filter(|e| e.enabled) {
            let Some(usable) = compile(compiled, &row) else {
                continue;
            };
            if runs_at_ingest(&usable) {
                next.entry(row.project_id.clone())
                    .or_default()
                    .push((row, usable));
            }
        }
        compiled.retain(|id, _| next.values().flatten().any(|(row, _)| &row.id == id));
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
        if current.is_empty() {
            return out;
        }
        // The spans of each trace, in the order they came.
        let mut traces: Vec<((&ProjectId, TraceId), Vec<&Span>)> = Vec::new();
        let mut at: HashMap<(&ProjectId, TraceId), usize> = HashMap::new();
        for s in spans {
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
            // The quality loop's own calls are never judged (the queue skips them the same way).
            if group.iter().any(|s| is_own_call(s)) {
                continue;
            }
            for (row, (def, rule)) in evaluators {
                if def.samples(trace_id) {
                    out.scores
                        .extend(evaluate_spans(row, def, rule, *trace_id, group));
                }
            }
        }
        for (project, evaluators) in current.iter() {
            if spans.iter().any(|s| &s.project_id == project) {
                out.judged_by.insert(
                    project.clone(),
                    evaluators.iter().map(|(row, _)| row.id.clone()).collect(),
                );
            }
        }
        out
    }
}

/// Span-scoped rules judge one span at a time and need nothing else: they run at ingest.
fn runs_at_ingest((def, _): &Usable) -> bool {
    def.scope == Scope::Span && !matches!(def.rule, Rule::LlmJudge { .. })
}
