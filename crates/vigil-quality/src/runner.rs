//! The online evaluator. Each round it (1) queues, for every enabled evaluator, the traces that
//! arrived since its cursor and have settled (been stored for the settling delay, so late spans of
//! a trace are there too); (2) leases due jobs; (3) evaluates them and writes each job's scores and its
//! completion in one transaction. Jobs live in the store: a restart resumes them, an expired lease
//! returns a dead worker's jobs to the queue, and an evaluator scores a target only once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use vigil_model::{now_unix_nanos, Span};
use vigil_store::{EvalJob, EvaluatorRow, ScoreRow, ScoreSource, Store};

use crate::{CompiledRule, EvaluatorDef, Scope};

#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// How long after a trace is first seen it is evaluated (its late spans arrive meanwhile).
    pub settle: Duration,
    /// Jobs leased per round.
    pub batch: usize,
    /// How long a leased job is a worker's before it returns to the queue.
    pub lease: Duration,
    /// Pause between rounds when there was nothing to do.
    pub idle: Duration,
    /// How LLM-judge evaluators reach their model (none: they are skipped).
    pub judge: Option<crate::judge::JudgeClient>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(10),
            batch: 2000,
            lease: Duration::from_secs(60),
            idle: Duration::from_millis(500),
            judge: None,
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub queued: usize,
    pub evaluated: usize,
    pub scores: usize,
    pub failed: usize,
}

/// The sessions a round has read for session-scoped jobs: per (project, session id), the traces
/// of its latest turns, their spans, and each rule's verdict on them by evaluator id (the same for
/// every job of the session in the round: only the trace it is given to differs).
type SessionsRead = HashMap<(vigil_model::ProjectId, String), SessionRead>;

struct SessionRead {
    turns: std::collections::HashSet<vigil_model::TraceId>,
    spans: Vec<Arc<Vec<Span>>>,
    verdicts: HashMap<String, Option<ScoreRow>>,
}

/// An evaluator ready to run: its definition and compiled rule.
pub(crate) type Usable = (EvaluatorDef, Arc<CompiledRule>);

/// Compiles an evaluator's stored definition, reusing `cache` while the definition is unchanged.
/// `None`: the definition is unusable (logged once per version).
pub(crate) fn compile(
    cache: &mut HashMap<String, (i64, Option<Usable>)>,
    e: &EvaluatorRow,
) -> Option<Usable> {
    let fresh = cache
        .get(&e.id)
        .filter(|(at, _)| *at == e.updated_ns)
        .map(|(_, c)| c.clone());
    if let Some(c) = fresh {
        return c;
    }
    let built = serde_json::from_value::<EvaluatorDef>(e.definition.clone())
        .map_err(|err| err.to_string())
        .and_then(|def| def.validate().map(|rule| (def, Arc::new(rule))));
    let built = match built {
        Ok(b) => Some(b),
        Err(err) => {
            tracing::warn!(evaluator = %e.name, error = %err, "evaluator definition unusable; skipped");
            None
        }
    };
    cache.insert(e.id.clone(), (e.updated_ns, built.clone()));
    built
}

pub struct Runner {
    store: Arc<dyn Store>,
    settings: RunnerSettings,
    /// Compiled evaluators by id, rebuilt when a definition changes.
    compiled: HashMap<String, (i64, Option<Usable>)>,
    /// When failure modes were last moved through their lifecycle.
    lifecycle_at: Option<std::time::Instant>,
    /// The newest trace row seen at each round, so that only traces that have settled (been there
    /// for `settle`, their late spans with them) are queued.
    seen: std::collections::VecDeque<(std::time::Instant, i64)>,
}

impl Runner {
    pub fn new(store: Arc<dyn Store>, settings: RunnerSettings) -> Self {
        Self {
            store,
            settings,
            compiled: HashMap::new(),
            lifecycle_at: None,
            seen: std::collections::VecDeque::new(),
        }
    }

    /// Runs rounds until the process ends.
    pub fn spawn(mut self) {
        tokio::spawn(async move {
            loop {
                let idle = match self.round().await {
                    Ok(r) => r.evaluated == 0 && r.queued == 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "evaluation round failed");
                        true
                    }
                };
                if idle {
                    tokio::time::sleep(self.settings.idle).await;
                }
            }
        });
    }

    fn compiled(&mut self, e: &EvaluatorRow) -> Option<Usable> {
        compile(&mut self.compiled, e)
    }

    /// One round: queue new traces, run due jobs.
    pub async fn round(&mut self) -> Result<Round, vigil_store::Error> {
        let now = now_unix_nanos();
        let mut r = Round::default();
        let evaluators = self.store.list_evaluators(None).await?;
        let upto = self.settled_upto().await?;
        for e in evaluators.iter().filter(|e| e.enabled) {
            r.queued += self
                .store
                .eval_enqueue_new(&e.id, self.settings.batch * 4, now, upto)
                .await?;
        }
        let jobs = self
            .store
            .eval_lease(
                now,
                self.settings.lease.as_nanos() as i64,
                self.settings.batch,
            )
            .await?;
        let by_id: HashMap<&str, &EvaluatorRow> =
            evaluators.iter().map(|e| (e.id.as_str(), e)).collect();
        // Each trace is read once per round, however many evaluators judge it, decoded lean (only
        // what rules and judges read), and every finished job of the round is committed in one
        // transaction.
        // Keyed by project too: two projects may hold the same trace id.
        let mut traces: HashMap<
            (vigil_model::ProjectId, vigil_model::TraceId),
            Option<Arc<Vec<Span>>>,
        > = HashMap::new();
        // Reads run on the store's reader pool: fetch the round's traces several at a time.
        let mut wanted: Vec<(vigil_model::ProjectId, vigil_model::TraceId)> = jobs
            .iter()
            .map(|j| (j.project_id.clone(), j.trace_id))
            .collect();
        wanted.sort();
        wanted.dedup();
        for chunk in wanted.chunks(16) {
            let loads = chunk.iter().map(|(p, t)| {
                let store = self.store.clone();
                let (p, t) = (p.clone(), *t);
                async move { ((p.clone(), t), store.get_trace_spans_lean(&p, t).await) }
            });
            for (k, d) in futures_util::future::join_all(loads).await {
                if let Ok(d) = d {
                    traces.insert(k, d.map(Arc::new));
                }
            }
        }
        let mut sessions = SessionsRead::new();
        let mut finished = Vec::with_capacity(jobs.len());
        for job in jobs {
            let evaluator = by_id.get(job.evaluator_id.as_str()).copied();
            match self
                .scores_for(&job, evaluator, &mut traces, &mut sessions)
                .await
            {
                Ok(scores) => {
                    r.evaluated += 1;
                    r.scores += scores.len();
                    finished.push((job.id, scores));
                    // Commit as we go, so a crash late in a long round (slow judges) loses little.
                    if finished.len() >= 200 {
                        self.store
                            .eval_finish(std::mem::take(&mut finished))
                            .await?;
                    }
                }
                Err(e) => {
                    r.failed += 1;
                    // Retry with backoff a few times, then give up on the job (it is visible as
                    // failed in the queue statistics).
                    let retry = (job.attempts < 5)
                        .then(|| now_unix_nanos() + (1_000_000_000i64 << job.attempts.clamp(0, 5)));
                    self.store.eval_fail(job.id, &e, retry).await?;
                }
            }
        }
        self.store.eval_finish(finished).await?;
        // Failure modes follow the scores, every couple of seconds.
        if self
            .lifecycle_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        {
            self.lifecycle_at = Some(std::time::Instant::now());
            crate::failure_modes::advance_all(self.store.as_ref()).await?;
        }
        Ok(r)
    }

    /// The newest trace row that has existed for at least the settling delay (0: none yet).
    async fn settled_upto(&mut self) -> Result<i64, vigil_store::Error> {
        let at = std::time::Instant::now();
        self.seen.push_back((at, self.store.max_trace_ref().await?));
        // Keep the newest observation that is old enough, and every younger one.
        while self
            .seen
            .get(1)
            .is_some_and(|(t, _)| at.duration_since(*t) >= self.settings.settle)
        {
            self.seen.pop_front();
        }
        Ok(match self.seen.front() {
            Some((t, upto)) if at.duration_since(*t) >= self.settings.settle => *upto,
            _ => 0,
        })
    }

    async fn scores_for(
        &mut self,
        job: &EvalJob,
        e: Option<&EvaluatorRow>,
        traces: &mut HashMap<
            (vigil_model::ProjectId, vigil_model::TraceId),
            Option<Arc<Vec<Span>>>,
        >,
        sessions: &mut SessionsRead,
    ) -> Result<Vec<ScoreRow>, String> {
        let Some(e) = e.filter(|e| e.enabled) else {
            return Ok(Vec::new());
        };
        let Some((def, rule)) = self.compiled(e) else {
            return Ok(Vec::new());
        };
        if !def.samples(&job.trace_id) {
            return Ok(Vec::new());
        }
        let key = (job.project_id.clone(), job.trace_id);
        if let std::collections::hash_map::Entry::Vacant(slot) = traces.entry(key.clone()) {
            let d = self
                .store
                .get_trace_spans_lean(&job.project_id, job.trace_id)
                .await
                .map_err(|e| e.to_string())?;
            slot.insert(d.map(Arc::new));
        }
        let Some(Some(trace_spans)) = traces.get(&key) else {
            // Deleted (retention, erasure) before it was evaluated.
            return Ok(Vec::new());
        };
        // The quality loop's own calls (LLM judges, experiments) are not production traffic:
        // judging them would make judges judge their own calls without end.
        if trace_spans.iter().any(is_own_call) {
            return Ok(Vec::new());
        }
        // A session verdict looks at every turn of the session so far (the latest 50), read once per
        // round for all the session's jobs (turns the round read already are not read again); the
        // others judge the trace as read for the round, without a copy per evaluator.
        let mut detail_spans: Vec<&Span> = trace_spans.iter().collect();
        if def.scope == Scope::Session {
            if let Some(session) = trace_spans.iter().find_map(|s| s.session_id.clone()) {
                let at = (job.project_id.clone(), session);
                if !sessions.contains_key(&at) {
                    let turns = self
                        .store
                        .get_session(&job.project_id, &at.1)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|d| d.traces)
                        .unwrap_or_default();
                    let latest = &turns[turns.len().saturating_sub(50)..];
                    let mut ids = std::collections::HashSet::new();
                    let mut all = Vec::new();
                    for t in latest {
                        ids.insert(t.trace_id);
                        match traces.get(&(job.project_id.clone(), t.trace_id)) {
                            Some(Some(spans)) => all.push(spans.clone()),
                            Some(None) => {}
                            None => {
                                if let Some(spans) = self
                                    .store
                                    .get_trace_spans_lean(&job.project_id, t.trace_id)
                                    .await
                                    .map_err(|e| e.to_string())?
                                {
                                    all.push(Arc::new(spans));
                                }
                            }
                        }
                    }
                    sessions.insert(
                        at.clone(),
                        SessionRead {
                            turns: ids,
                            spans: all,
                            verdicts: HashMap::new(),
                        },
                    );
                }
                let read = &sessions[&at];
                detail_spans = read.spans.iter().flat_map(|t| t.iter()).collect();
                // A turn the session's list did not show yet (or older than its latest 50).
                if !read.turns.contains(&job.trace_id) {
                    detail_spans.extend(trace_spans.iter());
                } else if !matches!(def.rule, crate::Rule::LlmJudge { .. }) {
                    let memo = match read.verdicts.get(&e.id) {
                        Some(v) => v.clone(),
                        None => {
                            let v = evaluate_whole(e, &def, &rule, job.trace_id, &detail_spans);
                            if let Some(read) = sessions.get_mut(&at) {
                                read.verdicts.insert(e.id.clone(), v.clone());
                            }
                            v
                        }
                    };
                    return Ok(memo
                        .map(|mut v| {
                            v.trace_id = Some(job.trace_id);
                            v
                        })
                        .into_iter()
                        .collect());
                }
            }
        }
        let scores = match &def.rule {
            crate::Rule::LlmJudge {
                model,
                prompt,
                pass_threshold,
            } => {
                let Some(judge) = &self.settings.judge else {
                    return Err("no judge client configured".into());
                };
                judge_scores(
                    judge,
                    e,
                    &def,
                    JudgeSpec {
                        model,
                        prompt,
                        threshold: *pass_threshold,
                    },
                    job.trace_id,
                    &detail_spans,
                )
                .await?
            }
            _ => evaluate(e, &def, &rule, job.trace_id, &detail_spans),
        };
        Ok(scores)
    }
}

/// A gateway call made by the quality loop itself (tagged by the judge or `vigil eval run`).
pub(crate) fn is_own_call(s: &Span) -> bool {
    s.attributes
        .get("vigil.tags")
        .map(|t| t.to_string())
        .is_some_and(|t| t.contains("llm-judge") || t.contains("experiment"))
}

/// Most spans of one trace a span-scoped judge looks at (each is a paid call).
const MAX_JUDGED_SPANS: usize = 20;

/// The judge's model, prompt template and pass threshold.
struct JudgeSpec<'a> {
    model: &'a str,
    prompt: &'a str,
    threshold: f64,
}

async fn judge_scores(
    judge: &crate::judge::JudgeClient,
    e: &EvaluatorRow,
    def: &EvaluatorDef,
    spec: JudgeSpec<'_>,
    trace_id: vigil_model::TraceId,
    spans: &[&Span],
) -> Result<Vec<ScoreRow>, String> {
    let JudgeSpec {
        model,
        prompt,
        threshold,
    } = spec;
    let unfiltered = def.filter == crate::Filter::default();
    let targets: Vec<Option<&Span>> = match def.scope {
        Scope::Trace | Scope::Session => {
            if !unfiltered && !spans.iter().any(|s| def.filter.matches(s)) {
                return Ok(Vec::new());
            }
            vec![None]
        }
        Scope::Span => spans
            .iter()
            .copied()
            .filter(|s| def.filter.matches(s))
            .take(MAX_JUDGED_SPANS)
            .map(Some)
            .collect(),
    };
    let mut out = Vec::new();
    for target in targets {
        let text = crate::judge::render(prompt, spans, target);
        let j = judge.judge(&e.project_id, model, &text).await?;
        let passed = j.score >= threshold;
        out.push(ScoreRow {
            id: 0,
            project_id: e.project_id.clone(),
            trace_id: Some(trace_id),
            span_id: target.map(|s| s.span_id),
            session_id: spans.iter().find_map(|s| s.session_id.clone()),
            name: e.name.clone(),
            value: Some(j.score),
            passed: Some(passed),
            label: Some(if passed { "judge:pass" } else { "judge:fail" }.into()),
            reason: Some(j.reasoning),
            source: ScoreSource::Evaluator,
            source_id: Some(e.id.clone()),
            created_ns: now_unix_nanos(),
            cost_usd: j.cost_usd,
        });
    }
    Ok(out)
}

/// The scores an evaluator gives one trace.
pub fn evaluate(
    e: &EvaluatorRow,
    def: &EvaluatorDef,
    rule: &CompiledRule,
    trace_id: vigil_model::TraceId,
    spans: &[&Span],
) -> Vec<ScoreRow> {
    match def.scope {
        Scope::Trace | Scope::Session => evaluate_whole(e, def, rule, trace_id, spans)
            .into_iter()
            .collect(),
        Scope::Span => evaluate_spans(e, def, rule, trace_id, spans),
    }
}

/// A rule's verdict as its evaluator's score on a trace, or on one of its spans.
fn rule_score(
    e: &EvaluatorRow,
    trace_id: vigil_model::TraceId,
    span_id: Option<vigil_model::SpanId>,
    session_id: Option<String>,
    v: crate::Verdict,
    created_ns: i64,
) -> ScoreRow {
    ScoreRow {
        id: 0,
        project_id: e.project_id.clone(),
        trace_id: Some(trace_id),
        span_id,
        session_id,
        name: e.name.clone(),
        value: Some(if v.passed { 1.0 } else { 0.0 }),
        passed: Some(v.passed),
        label: Some(if v.passed { "pass" } else { "fail" }.into()),
        reason: Some(v.reason),
        source: ScoreSource::Evaluator,
        source_id: Some(e.id.clone()),
        created_ns,
        cost_usd: None,
    }
}

/// The verdict of a trace- or session-scoped evaluator on the spans it looks at as a whole (a
/// trace, or a session's turns), as a score on the trace.
pub fn evaluate_whole(
    e: &EvaluatorRow,
    def: &EvaluatorDef,
    rule: &CompiledRule,
    trace_id: vigil_model::TraceId,
    spans: &[&Span],
) -> Option<ScoreRow> {
    let unfiltered = def.filter == crate::Filter::default();
    if !unfiltered && !spans.iter().any(|s| def.filter.matches(s)) {
        return None;
    }
    let v = rule.on_trace(spans)?;
    let session = spans.iter().find_map(|s| s.session_id.clone());
    Some(rule_score(e, trace_id, None, session, v, now_unix_nanos()))
}

/// The scores a span-scoped evaluator gives the spans of one trace (`evaluate` for
/// `Scope::Span`, on borrowed spans).
pub fn evaluate_spans(
    e: &EvaluatorRow,
    def: &EvaluatorDef,
    rule: &CompiledRule,
    trace_id: vigil_model::TraceId,
    spans: &[&Span],
) -> Vec<ScoreRow> {
    let now = now_unix_nanos();
    let session = spans.iter().find_map(|s| s.session_id.clone());
    spans
        .iter()
        .filter(|s| def.filter.matches(s))
        .filter_map(|s| {
            let v = rule.on_span(s)?;
            Some(rule_score(
                e,
                trace_id,
                Some(s.span_id),
                session.clone(),
                v,
                now,
            ))
        })
        .collect()
}
