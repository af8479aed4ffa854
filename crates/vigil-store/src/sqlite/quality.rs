//! Evaluators, the evaluation queue and scores on SQLite: writes through the single writer,
//! reads from the pool.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use vigil_model::{ProjectId, SpanId, TraceId};

use super::passes::{self, passed_by_evaluator};
use super::writer::time_now_ns;
use super::SqliteStore;
use crate::quality::{
    AnnotationCandidate, DatasetItem, DatasetRow, EvalJob, EvaluatorRow, ExperimentResult,
    ExperimentRun, FailureModeChange, FailureModeEvent, FailureModeRow, FailureModeSpec,
    QualityStore, QueueStats, RateWindow, ScoreRow, ScoreSource,
};
use crate::{Error, Result};

const EVALUATOR_COLUMNS: &str =
    "id, project_id, name, definition, enabled, cursor, created_ns, updated_ns";

fn evaluator_row(r: &Row) -> rusqlite::Result<EvaluatorRow> {
    let def: String = r.get(3)?;
    Ok(EvaluatorRow {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        name: r.get(2)?,
        definition: serde_json::from_str(&def).unwrap_or(serde_json::Value::Null),
        enabled: r.get::<_, i64>(4)? != 0,
        cursor: r.get(5)?,
        created_ns: r.get(6)?,
        updated_ns: r.get(7)?,
    })
}

const SCORE_COLUMNS: &str = "id, project_id, trace_id, span_id, session_id, name, value, passed, label, reason, source, source_id, created_ns, cost_usd";

fn score_row(r: &Row) -> rusqlite::Result<ScoreRow> {
    let trace: Option<Vec<u8>> = r.get(2)?;
    let span: Option<Vec<u8>> = r.get(3)?;
    let source: String = r.get(10)?;
    Ok(ScoreRow {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        trace_id: trace.and_then(|b| TraceId::from_bytes(&b).ok()),
        span_id: span.and_then(|b| SpanId::from_bytes(&b).ok()),
        session_id: r.get(4)?,
        name: r.get(5)?,
        value: r.get(6)?,
        passed: r.get::<_, Option<i64>>(7)?.map(|p| p != 0),
        label: r.get(8)?,
        reason: r.get(9)?,
        source: ScoreSource::parse(&source).unwrap_or(ScoreSource::Human),
        source_id: r.get(11)?,
        created_ns: r.get(12)?,
        cost_usd: r.get(13)?,
    })
}

/// Inserts a score (ignored when its evaluator already scored that target), linked to its trace's
/// row when the trace is stored (migration 0012): `?14` is the row's key when the caller knows it,
/// otherwise it is looked up.
pub(crate) const INSERT_SCORE: &str = "INSERT OR IGNORE INTO scores (project_id, trace_id, span_id, session_id, name, value, passed, label, reason, source, source_id, created_ns, cost_usd, trace_ref) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, COALESCE(?14, (SELECT id FROM traces WHERE project_id = ?1 AND trace_id = ?2)))";

/// `INSERT_SCORE` for the queue's verdict on a whole trace: it replaces a verdict the evaluator
/// gave the trace at ingest (from the export that seemed to carry all of it, before more spans
/// came), in place, so the row keeps its id. The queue runs a job once, so this never counts twice.
const SUPERSEDE_TRACE_SCORE: &str = "INSERT INTO scores (project_id, trace_id, span_id, session_id, name, value, passed, label, reason, source, source_id, created_ns, cost_usd, trace_ref) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, COALESCE(?14, (SELECT id FROM traces WHERE project_id = ?1 AND trace_id = ?2))) \
     ON CONFLICT (trace_ref, source_id, name, COALESCE(span_id, x'')) WHERE source = 'evaluator' DO UPDATE SET \
       session_id = excluded.session_id, value = excluded.value, passed = excluded.passed, label = excluded.label, \
       reason = excluded.reason, created_ns = excluded.created_ns, cost_usd = excluded.cost_usd";

pub(crate) fn insert_score(conn: &rusqlite::Connection, s: &ScoreRow) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(INSERT_SCORE)?;
    insert_score_with(&mut stmt, s, None)
}

/// `insert_score` with a statement prepared from `INSERT_SCORE` and, if known, the trace's row key.
pub(crate) fn insert_score_with(
    stmt: &mut rusqlite::Statement,
    s: &ScoreRow,
    trace_ref: Option<i64>,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        s.project_id.as_str(),
        s.trace_id.map(|t| t.as_bytes().to_vec()),
        s.span_id.map(|t| t.as_bytes().to_vec()),
        s.session_id,
        s.name,
        s.value,
        s.passed.map(i64::from),
        s.label,
        s.reason,
        s.source.as_str(),
        s.source_id,
        s.created_ns,
        s.cost_usd,
        trace_ref
    ])
}

const FAILURE_MODE_COLUMNS: &str = "f.id, f.project_id, f.name, f.definition, f.severity, f.status, f.evaluator, f.fixed_in, f.baseline_rate, f.verified_rate, f.created_ns, f.updated_ns, \
     (SELECT count(*) FROM failure_mode_examples x WHERE x.failure_mode_id = f.id AND x.source = 'human'), \
     (SELECT count(*) FROM failure_mode_examples x WHERE x.failure_mode_id = f.id AND x.source = 'evaluator')";

fn failure_mode_row(r: &Row) -> rusqlite::Result<FailureModeRow> {
    Ok(FailureModeRow {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        name: r.get(2)?,
        definition: r.get(3)?,
        severity: r.get(4)?,
        status: r.get(5)?,
        evaluator: r.get(6)?,
        fixed_in: r.get(7)?,
        baseline_rate: r.get(8)?,
        verified_rate: r.get(9)?,
        created_ns: r.get(10)?,
        updated_ns: r.get(11)?,
        human_examples: r.get::<_, i64>(12)?.max(0) as u64,
        evaluator_examples: r.get::<_, i64>(13)?.max(0) as u64,
    })
}

/// SQL: the session (or lone trace) `k` of each of evaluator `?2`'s trace verdicts in the window
/// `?3..=?4` of traces' start, with `passed` and the trace's `start_ns`, optionally only on service
/// version `?5` or not on `?6` (a span-scoped evaluator's trace fails if any of its spans failed).
/// A verdict is given after its trace started, so the window also bounds the scores read through
/// `scores_by_name` (with a day's slack for clients whose clock runs ahead); without it every score
/// the evaluator ever gave was read. Its passing verdicts given at ingest are counted from the
/// traces that name it in `passed_by` (`passes.rs`).
macro_rules! verdict_sessions {
    () => {
        concat!(
            "SELECT COALESCE(t.session_id, hex(t.trace_id)) AS k, s.passed AS passed, t.start_ns AS start_ns \
             FROM scores s JOIN traces t ON t.id = s.trace_ref \
             WHERE s.project_id = ?1 AND s.source = 'evaluator' AND s.name = ?2 AND s.passed IS NOT NULL \
               AND s.created_ns >= ?3 - 86400000000000 \
               AND t.start_ns >= ?3 AND t.start_ns <= ?4 \
               AND (?5 IS NULL OR t.service_version = ?5) AND (?6 IS NULL OR t.service_version IS NOT ?6) \
             UNION ALL SELECT COALESCE(t.session_id, hex(t.trace_id)), 1, t.start_ns FROM traces t \
             WHERE t.project_id = ?1 AND t.start_ns >= ?3 AND t.start_ns <= ?4 AND t.passed_by IS NOT NULL AND ",
            passed_by_evaluator!(),
            " AND (?5 IS NULL OR t.service_version = ?5) AND (?6 IS NULL OR t.service_version IS NOT ?6)"
        )
    };
}

/// Failing and scored sessions of an evaluator's trace verdicts (`verdict_sessions`).
pub(super) const RATE_SQL: &str = concat!(
    "SELECT count(DISTINCT CASE WHEN passed = 0 THEN k END), count(DISTINCT k) FROM (",
    verdict_sessions!(),
    ")"
);

/// `RATE_SQL` per day of the traces' start (`?5` and `?6` unbound: every version).
const RATE_BY_DAY_SQL: &str = concat!(
    "SELECT strftime('%Y-%m-%d', start_ns / 1000000000, 'unixepoch') AS day, \
       count(DISTINCT CASE WHEN passed = 0 THEN k END), count(DISTINCT k) FROM (",
    verdict_sessions!(),
    ") GROUP BY day ORDER BY day"
);

/// The traces past an evaluator's cursor, by row key. A little behind the cursor too: a deleted
/// newest trace frees its id for the next one (no AUTOINCREMENT); queuing is idempotent, so
/// re-reading is safe. `+project_id` keeps the planner on the row-key range: through the time
/// index (project, start) it read and sorted every trace of the project, every round, for every
/// evaluator.
pub(super) const NEW_TRACES_SQL: &str = "SELECT id, trace_id, judged_by FROM traces \
     WHERE +project_id = ?1 AND id > ?2 - 100 AND id <= ?4 ORDER BY id LIMIT ?3";

/// Each service version's first trace start, and when that was computed.
pub(super) type Deployments = (std::time::Instant, Vec<(String, i64)>);

/// How long a project's deployments are reused before they are read again.
const DEPLOYMENTS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Leased jobs whose lease ran out (`?1` now, `?2` at most), in the order of `eval_jobs_ready`.
pub(super) const LEASE_EXPIRED_SQL: &str = "SELECT id, project_id, evaluator_id, trace_id, attempts, not_before_ns \
     FROM eval_jobs WHERE state = 'running' AND lease_until_ns < ?1 \
       AND evaluator_id IN (SELECT id FROM evaluators WHERE enabled = 1) ORDER BY not_before_ns LIMIT ?2";

/// Queued jobs that are due (`?1` now, `?2` at most), in the order of `eval_jobs_ready`.
pub(super) const LEASE_DUE_SQL: &str = "SELECT id, project_id, evaluator_id, trace_id, attempts, not_before_ns \
     FROM eval_jobs WHERE state = 'queued' AND not_before_ns <= ?1 \
       AND evaluator_id IN (SELECT id FROM evaluators WHERE enabled = 1) ORDER BY not_before_ns LIMIT ?2";

/// The passing verdicts stored with spans, of evaluator `?2` (or any), newest traces first: the
/// project's newest 200,000 traces in the order of its time index, so that a caller can stop
/// after a page and a name nothing passed does not read the whole project.
pub(super) const LATEST_PASSES_SQL: &str = concat!(
    "SELECT t.trace_id, c.passes FROM \
       (SELECT id, trace_id, passed_by FROM traces WHERE project_id = ?1 ORDER BY start_ns DESC LIMIT 200000) t \
     JOIN span_chunks c ON c.trace_ref = t.id \
     WHERE t.passed_by IS NOT NULL AND (?2 IS NULL OR ",
    passed_by_evaluator!(),
    ") AND c.passes IS NOT NULL"
);

/// Each human-labelled trace's latest label beside the evaluator `name`'s verdict on the trace
/// (scored once), oldest label first: `(evaluator passed, human passed, labelled at)`. The
/// evaluator's verdict is its row, or a pass stored with the trace's spans at ingest (`passes.rs`).
fn score_pairs_timed(
    c: &rusqlite::Connection,
    p: &ProjectId,
    name: &str,
    human: &str,
) -> Result<Vec<(bool, bool, i64)>> {
    // The latest human verdict per trace (an annotator may change their mind).
    let labels: Vec<(Vec<u8>, bool, i64, Option<bool>)> = {
        let mut stmt = c.prepare_cached(
            "SELECT h.trace_id, h.passed, h.t, \
               (SELECT e.passed FROM scores e \
                  WHERE e.trace_ref = (SELECT t.id FROM traces t WHERE t.project_id = ?1 AND t.trace_id = h.trace_id) \
                    AND e.source = 'evaluator' AND e.name = ?2 AND e.span_id IS NULL AND e.passed IS NOT NULL) \
             FROM (SELECT trace_id, passed, max(created_ns) AS t FROM scores \
                   WHERE project_id = ?1 AND source = 'human' AND name = ?3 AND passed IS NOT NULL \
                     AND trace_id IS NOT NULL GROUP BY trace_id) h \
             ORDER BY h.t",
        )?;
        let rows = stmt.query_map(params![p.as_str(), name, human], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? != 0,
                r.get(2)?,
                r.get::<_, Option<i64>>(3)?.map(|v| v != 0),
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(labels.len());
    for (trace, human_passed, at, evaluator) in labels {
        let evaluator = match evaluator {
            Some(passed) => Some(passed),
            // Not a row: a pass stored with the trace's spans at ingest, if any.
            None => {
                let mut stored = Vec::new();
                if let Ok(trace) = TraceId::from_bytes(&trace) {
                    trace_passes(c, p, trace, Some(name), &mut stored)?;
                }
                stored.iter().any(|s| s.span_id.is_none()).then_some(true)
            }
        };
        if let Some(passed) = evaluator {
            out.push((passed, human_passed, at));
        }
    }
    Ok(out)
}

/// The passing verdicts stored with a trace's spans (`passes.rs`), optionally only evaluator
/// `name`'s, added to `out`.
fn trace_passes(
    c: &rusqlite::Connection,
    p: &ProjectId,
    trace: TraceId,
    name: Option<&str>,
    out: &mut Vec<ScoreRow>,
) -> Result<()> {
    let mut stmt = c.prepare_cached(
        "SELECT c.passes FROM traces t JOIN span_chunks c ON c.trace_ref = t.id \
         WHERE t.project_id = ?1 AND t.trace_id = ?2 AND c.passes IS NOT NULL",
    )?;
    let mut blobs = stmt.query(params![p.as_str(), trace.as_bytes()])?;
    while let Some(r) = blobs.next()? {
        let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        passes::expand(blob, p, trace, name, out)?;
    }
    Ok(())
}

/// A run from `SELECT id, dataset_id, name, model, prompt, summary, created_ns`.
fn experiment_row(r: &Row, project: &ProjectId) -> rusqlite::Result<ExperimentRun> {
    let summary: String = r.get(5)?;
    Ok(ExperimentRun {
        id: r.get(0)?,
        project_id: project.clone(),
        dataset_id: r.get(1)?,
        name: r.get(2)?,
        model: r.get(3)?,
        prompt: r.get(4)?,
        summary: serde_json::from_str(&summary).unwrap_or_default(),
        created_ns: r.get(6)?,
    })
}

#[async_trait]
impl QualityStore for SqliteStore {
    async fn put_evaluator(
        &self,
        project: &ProjectId,
        name: &str,
        definition: serde_json::Value,
        enabled: bool,
    ) -> Result<EvaluatorRow> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(Error::InvalidQuery(
                "an evaluator needs a name of 1 to 128 bytes".into(),
            ));
        }
        let (p, name) = (project.clone(), name.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let now = time_now_ns();
                let id = format!("ev_{}", hex::encode(rand::random::<[u8; 8]>()));
                conn.execute(
                    "INSERT INTO evaluators (id, project_id, name, definition, enabled, cursor, created_ns, updated_ns) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6) \
                     ON CONFLICT (project_id, name) DO UPDATE SET definition = excluded.definition, enabled = excluded.enabled, \
                     updated_ns = CASE WHEN definition IS excluded.definition AND enabled IS excluded.enabled THEN updated_ns ELSE excluded.updated_ns END",
                    params![id, p.as_str(), name, definition.to_string(), i64::from(enabled), now],
                )?;
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {EVALUATOR_COLUMNS} FROM evaluators WHERE project_id = ?1 AND name = ?2"
                    ))?
                    .query_row(params![p.as_str(), name], evaluator_row)?)
            })
            .await
    }

    async fn list_evaluators(&self, project: Option<&ProjectId>) -> Result<Vec<EvaluatorRow>> {
        let p = project.cloned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVALUATOR_COLUMNS} FROM evaluators WHERE (?1 IS NULL OR project_id = ?1) ORDER BY project_id, name"
            ))?;
            let rows = stmt.query_map([p.as_ref().map(|p| p.as_str().to_string())], evaluator_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn eval_enqueue_new(
        &self,
        evaluator_id: &str,
        limit: usize,
        not_before_ns: i64,
        upto: i64,
    ) -> Result<usize> {
        let id = evaluator_id.to_string();
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                let Some((project, cursor, version)) = tx
                    .query_row(
                        "SELECT project_id, cursor, updated_ns FROM evaluators WHERE id = ?1 AND enabled = 1",
                        [&id],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
                    )
                    .optional()?
                else {
                    return Ok(0);
                };
                type Found = (i64, Vec<u8>, Option<String>);
                let found: Vec<Found> = {
                    let mut stmt = tx.prepare_cached(NEW_TRACES_SQL)?;
                    let rows = stmt.query_map(params![project, cursor, limit as i64, upto], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let mut queued = 0;
                let judged_as = format!("{id}@{version}");
                for (trace_ref, trace, trace_judged_by) in &found {
                    // Chunks this evaluator judged at ingest, with this definition, need no second
                    // look (the trace has settled: its late chunks are here too). When all its
                    // chunks carry the same list, the trace row has it (migration 0013).
                    if trace_judged_by
                        .as_deref()
                        .is_some_and(|list| list.split(',').any(|e| e == judged_as))
                    {
                        continue;
                    }
                    let unjudged: i64 = tx
                        .prepare_cached(
                            "SELECT count(*) FROM span_chunks WHERE trace_ref = ?1 \
                             AND (judged_by IS NULL OR instr(',' || judged_by || ',', ',' || ?2 || ',') = 0)",
                        )?
                        .query_row(params![trace_ref, judged_as], |r| r.get(0))?;
                    if unjudged == 0 {
                        continue;
                    }
                    queued += tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO eval_jobs (project_id, evaluator_id, trace_id, state, not_before_ns) VALUES (?1, ?2, ?3, 'queued', ?4)",
                        )?
                        .execute(params![project, id, trace, not_before_ns])?;
                }
                // A short page means every trace up to `upto` was looked at: the cursor moves there,
                // so that a quiet project does not read other projects' new traces again each round.
                let next = if found.len() < limit {
                    Some(upto.max(cursor))
                } else {
                    found.last().map(|(last, ..)| *last)
                };
                if let Some(next) = next.filter(|n| *n != cursor) {
                    tx.execute("UPDATE evaluators SET cursor = ?2 WHERE id = ?1", params![id, next])?;
                }
                tx.commit()?;
                Ok(queued)
            })
            .await
    }

    async fn eval_backfill(&self, evaluator_id: &str, from_ns: i64, to_ns: i64) -> Result<usize> {
        let id = evaluator_id.to_string();
        self.inner
            .writer
            .exec(move |conn| {
                let now = time_now_ns();
                let n = conn.execute(
                    // Failed jobs of the range are queued again (a judge outage outlasted their retries).
                    "INSERT INTO eval_jobs (project_id, evaluator_id, trace_id, state, not_before_ns) \
                     SELECT t.project_id, e.id, t.trace_id, 'queued', ?4 FROM evaluators e \
                     JOIN traces t ON t.project_id = e.project_id \
                     WHERE e.id = ?1 AND t.start_ns >= ?2 AND t.start_ns <= ?3 \
                     ON CONFLICT (evaluator_id, trace_id) DO UPDATE SET state = 'queued', attempts = 0, not_before_ns = excluded.not_before_ns \
                       WHERE eval_jobs.state = 'failed'",
                    params![id, from_ns, to_ns, now],
                )?;
                Ok(n)
            })
            .await
    }

    async fn eval_lease(&self, now_ns: i64, lease_ns: i64, limit: usize) -> Result<Vec<EvalJob>> {
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                // Jobs whose lease ran out (their worker died) and queued jobs that are due, the
                // longest waiting first. Two statements, each in the order of `eval_jobs_ready`:
                // as one `OR` the planner sorted every due job of the backlog, every round.
                let mut jobs: Vec<(i64, EvalJob)> = Vec::new();
                for sql in [LEASE_EXPIRED_SQL, LEASE_DUE_SQL] {
                    let mut stmt = tx.prepare_cached(sql)?;
                    let rows = stmt.query_map(params![now_ns, limit as i64], |r| {
                        let trace: Vec<u8> = r.get(3)?;
                        Ok((
                            r.get(5)?,
                            EvalJob {
                                id: r.get(0)?,
                                project_id: ProjectId(r.get(1)?),
                                evaluator_id: r.get(2)?,
                                trace_id: TraceId::from_bytes(&trace).unwrap_or_default(),
                                attempts: r.get(4)?,
                            },
                        ))
                    })?;
                    for row in rows {
                        jobs.push(row?);
                    }
                }
                jobs.sort_by_key(|(due, job)| (*due, job.id));
                let jobs: Vec<EvalJob> = jobs.into_iter().take(limit).map(|(_, j)| j).collect();
                for j in &jobs {
                    tx.prepare_cached(
                        "UPDATE eval_jobs SET state = 'running', lease_until_ns = ?2, attempts = attempts + 1 WHERE id = ?1",
                    )?
                    .execute(params![j.id, now_ns.saturating_add(lease_ns)])?;
                }
                tx.commit()?;
                Ok(jobs)
            })
            .await
    }

    async fn max_trace_ref(&self) -> Result<i64> {
        self.read(|c| Ok(c.query_row("SELECT coalesce(max(id), 0) FROM traces", [], |r| r.get(0))?))
            .await
    }

    async fn eval_finish(&self, jobs: Vec<(i64, Vec<ScoreRow>)>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                for (job_id, scores) in &jobs {
                    for s in scores {
                        if s.span_id.is_none() && s.source == ScoreSource::Evaluator {
                            let mut stmt = tx.prepare_cached(SUPERSEDE_TRACE_SCORE)?;
                            insert_score_with(&mut stmt, s, None)?;
                        } else {
                            insert_score(&tx, s)?;
                        }
                    }
                    tx.prepare_cached(
                        "UPDATE eval_jobs SET state = 'done', lease_until_ns = NULL, error = NULL WHERE id = ?1",
                    )?
                    .execute([job_id])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn eval_fail(&self, job_id: i64, error: &str, retry_at_ns: Option<i64>) -> Result<()> {
        let error: String = error.chars().take(500).collect();
        self.inner
            .writer
            .exec(move |conn| {
                match retry_at_ns {
                    Some(at) => conn.execute(
                        "UPDATE eval_jobs SET state = 'queued', not_before_ns = ?2, lease_until_ns = NULL, error = ?3 WHERE id = ?1",
                        params![job_id, at, error],
                    )?,
                    None => conn.execute(
                        "UPDATE eval_jobs SET state = 'failed', lease_until_ns = NULL, error = ?2 WHERE id = ?1",
                        params![job_id, error],
                    )?,
                };
                Ok(())
            })
            .await
    }

    async fn eval_queue_stats(&self, project: &ProjectId, now_ns: i64) -> Result<QueueStats> {
        let p = project.clone();
        self.read(move |c| {
            let mut stats = QueueStats::default();
            let mut stmt = c.prepare_cached(
                "SELECT state, count(*) FROM eval_jobs WHERE project_id = ?1 GROUP BY state",
            )?;
            let rows = stmt.query_map([p.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                let n = n.max(0) as u64;
                match state.as_str() {
                    "queued" => stats.queued = n,
                    "running" => stats.running = n,
                    "done" => stats.done = n,
                    _ => stats.failed += n,
                }
            }
            stats.oldest_ready_age_ns = c
                .query_row(
                    "SELECT min(not_before_ns) FROM eval_jobs WHERE project_id = ?1 AND state = 'queued' AND not_before_ns <= ?2",
                    params![p.as_str(), now_ns],
                    |r| r.get::<_, Option<i64>>(0),
                )?
                .map(|t| now_ns - t);
            Ok(stats)
        })
        .await
    }

    async fn insert_score(&self, score: ScoreRow) -> Result<i64> {
        self.inner
            .writer
            .exec(move |conn| {
                insert_score(conn, &score)?;
                Ok(conn.last_insert_rowid())
            })
            .await
    }

    async fn list_scores(
        &self,
        project: &ProjectId,
        trace: Option<TraceId>,
        name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScoreRow>> {
        let (p, name) = (project.clone(), name.map(str::to_string));
        self.read(move |c| {
            // A trace's scores are found by its row's key, or by trace id while it is not stored.
            let sql = if trace.is_some() {
                format!(
                    "SELECT {SCORE_COLUMNS} FROM ( \
                       SELECT * FROM scores WHERE trace_ref = (SELECT id FROM traces WHERE project_id = ?1 AND trace_id = ?2) \
                       UNION ALL SELECT * FROM scores WHERE trace_ref IS NULL AND project_id = ?1 AND trace_id = ?2) \
                     WHERE (?3 IS NULL OR name = ?3) ORDER BY created_ns DESC, id DESC LIMIT ?4"
                )
            } else if name.is_some() {
                // Its own statement: `?3 IS NULL OR name = ?3` kept `scores_by_name` from serving
                // the name, and every score of the project was read and sorted.
                format!(
                    "SELECT {SCORE_COLUMNS} FROM scores WHERE project_id = ?1 AND name = ?3 \
                     AND ?2 IS NULL ORDER BY created_ns DESC, id DESC LIMIT ?4"
                )
            } else {
                format!(
                    "SELECT {SCORE_COLUMNS} FROM scores WHERE project_id = ?1 AND ?2 IS NULL \
                     AND ?3 IS NULL ORDER BY created_ns DESC, id DESC LIMIT ?4"
                )
            };
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![p.as_str(), trace.map(|t| t.as_bytes().to_vec()), name, limit as i64],
                score_row,
            )?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            // And the passing verdicts stored with the spans.
            let mut stored = Vec::new();
            match trace {
                Some(trace) => trace_passes(c, &p, trace, name.as_deref(), &mut stored)?,
                None => {
                    // The newest traces with such verdicts (`LATEST_PASSES_SQL`), until enough
                    // are found.
                    let mut stmt = c.prepare_cached(LATEST_PASSES_SQL)?;
                    let mut blobs = stmt.query(params![p.as_str(), name])?;
                    // Some may repeat a row (a verdict the queue gave again): read enough.
                    while stored.len() < limit + rows.len() {
                        let Some(r) = blobs.next()? else { break };
                        let trace = TraceId::from_bytes(r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?)
                            .map_err(|e| Error::Corrupt(e.to_string()))?;
                        let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                        passes::expand(blob, &p, trace, name.as_deref(), &mut stored)?;
                    }
                }
            }
            Ok(passes::merge(rows, stored, limit))
        })
        .await
    }

    async fn score_pairs(
        &self,
        project: &ProjectId,
        name: &str,
        human_name: &str,
    ) -> Result<Vec<(bool, bool)>> {
        let (p, name, human) = (project.clone(), name.to_string(), human_name.to_string());
        self.read(move |c| {
            let pairs = score_pairs_timed(c, &p, &name, &human)?;
            Ok(pairs.into_iter().map(|(e, h, _)| (e, h)).collect())
        })
        .await
    }

    async fn put_failure_mode(
        &self,
        project: &ProjectId,
        spec: FailureModeSpec,
    ) -> Result<FailureModeRow> {
        if spec.name.trim().is_empty() || spec.name.len() > 128 {
            return Err(Error::InvalidQuery(
                "a failure mode needs a name of 1 to 128 bytes".into(),
            ));
        }
        if !matches!(
            spec.severity.as_str(),
            "low" | "medium" | "high" | "critical"
        ) {
            return Err(Error::InvalidQuery(format!(
                "`severity` is low, medium, high or critical, got `{}`",
                spec.severity
            )));
        }
        let p = project.clone();
        self.inner
            .writer
            .exec(move |conn| {
                let now = time_now_ns();
                let id = format!("fm_{}", hex::encode(rand::random::<[u8; 8]>()));
                conn.execute(
                    "INSERT INTO failure_modes (id, project_id, name, definition, severity, status, evaluator, created_ns, updated_ns) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?7) \
                     ON CONFLICT (project_id, name) DO UPDATE SET definition = excluded.definition, severity = excluded.severity, \
                       evaluator = excluded.evaluator, updated_ns = excluded.updated_ns",
                    params![id, p.as_str(), spec.name, spec.definition, spec.severity, spec.evaluator, now],
                )?;
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {FAILURE_MODE_COLUMNS} FROM failure_modes f WHERE f.project_id = ?1 AND f.name = ?2"
                    ))?
                    .query_row(params![p.as_str(), spec.name], failure_mode_row)?)
            })
            .await
    }

    async fn list_failure_modes(&self, project: Option<&ProjectId>) -> Result<Vec<FailureModeRow>> {
        let p = project.map(|p| p.as_str().to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FAILURE_MODE_COLUMNS} FROM failure_modes f WHERE (?1 IS NULL OR f.project_id = ?1) ORDER BY f.project_id, f.name"
            ))?;
            let rows = stmt.query_map([p], failure_mode_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn change_failure_mode(
        &self,
        project: &ProjectId,
        id: &str,
        change: FailureModeChange,
    ) -> Result<()> {
        let (p, id) = (project.clone(), id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                let now = time_now_ns();
                let current: Option<String> = tx
                    .query_row(
                        "SELECT status FROM failure_modes WHERE project_id = ?1 AND id = ?2",
                        params![p.as_str(), id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(current) = current else {
                    return Err(Error::NotFound(id));
                };
                if let Some((to, reason)) = &change.status {
                    if *to != current {
                        tx.execute(
                            "INSERT INTO failure_mode_events (failure_mode_id, time_ns, from_status, to_status, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![id, now, current, to, reason],
                        )?;
                        tx.execute("UPDATE failure_modes SET status = ?2, updated_ns = ?3 WHERE id = ?1", params![id, to, now])?;
                    }
                }
                if let Some(v) = &change.fixed_in {
                    tx.execute("UPDATE failure_modes SET fixed_in = ?2 WHERE id = ?1", params![id, v])?;
                }
                if let Some(v) = change.baseline_rate {
                    tx.execute("UPDATE failure_modes SET baseline_rate = ?2 WHERE id = ?1", params![id, v])?;
                }
                if let Some(v) = change.verified_rate {
                    tx.execute("UPDATE failure_modes SET verified_rate = ?2 WHERE id = ?1", params![id, v])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn add_failure_mode_example(
        &self,
        project: &ProjectId,
        id: &str,
        trace: TraceId,
        source: ScoreSource,
    ) -> Result<()> {
        let (p, id) = (project.clone(), id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let known: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM failure_modes WHERE project_id = ?1 AND id = ?2)",
                    params![p.as_str(), id],
                    |r| r.get(0),
                )?;
                if !known {
                    return Err(Error::NotFound(id));
                }
                conn.execute(
                    "INSERT OR IGNORE INTO failure_mode_examples (failure_mode_id, trace_id, source, created_ns) VALUES (?1, ?2, ?3, ?4)",
                    params![id, trace.as_bytes(), source.as_str(), time_now_ns()],
                )?;
                Ok(())
            })
            .await
    }

    async fn failure_mode_events(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<Vec<FailureModeEvent>> {
        let (p, id) = (project.clone(), id.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.time_ns, e.from_status, e.to_status, e.reason FROM failure_mode_events e \
                 JOIN failure_modes f ON f.id = e.failure_mode_id WHERE f.project_id = ?1 AND f.id = ?2 ORDER BY e.id",
            )?;
            let rows = stmt.query_map(params![p.as_str(), id], |r| {
                Ok(FailureModeEvent {
                    time_ns: r.get(0)?,
                    from_status: r.get(1)?,
                    to_status: r.get(2)?,
                    reason: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn failure_rate(
        &self,
        project: &ProjectId,
        evaluator: &str,
        from_ns: i64,
        to_ns: i64,
        version: Option<&str>,
        exclude_version: Option<&str>,
    ) -> Result<RateWindow> {
        let (p, e) = (project.clone(), evaluator.to_string());
        let (v, x) = (
            version.map(str::to_string),
            exclude_version.map(str::to_string),
        );
        self.read(move |c| {
            Ok(c.prepare_cached(RATE_SQL)?.query_row(
                params![p.as_str(), e, from_ns, to_ns, v, x],
                |r| {
                    Ok(RateWindow {
                        failing: r.get::<_, i64>(0)?.max(0) as u64,
                        sessions: r.get::<_, i64>(1)?.max(0) as u64,
                    })
                },
            )?)
        })
        .await
    }

    async fn failure_rate_by_day(
        &self,
        project: &ProjectId,
        evaluator: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(String, RateWindow)>> {
        let (p, e) = (project.clone(), evaluator.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(RATE_BY_DAY_SQL)?;
            let (version, exclude): (Option<&str>, Option<&str>) = (None, None);
            let rows = stmt.query_map(
                params![p.as_str(), e, from_ns, to_ns, version, exclude],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        RateWindow {
                            failing: r.get::<_, i64>(1)?.max(0) as u64,
                            sessions: r.get::<_, i64>(2)?.max(0) as u64,
                        },
                    ))
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn annotation_candidates(
        &self,
        project: &ProjectId,
        since_ns: i64,
        limit: usize,
    ) -> Result<Vec<AnnotationCandidate>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT t.trace_id, t.start_ns, t.duration_ms, t.cost_usd, t.status, t.flags, t.root_name, t.session_id, \
                   (SELECT group_concat(DISTINCT s.name) FROM scores s WHERE s.trace_ref = t.id \
                      AND s.source = 'evaluator' AND s.passed = 0), \
                   (SELECT count(*) FROM scores s WHERE s.trace_ref = t.id \
                      AND s.source = 'feedback' AND s.passed = 0), \
                   (SELECT count(*) FROM scores s WHERE s.trace_ref = t.id \
                      AND s.source = 'evaluator' AND s.label LIKE 'judge:%' AND s.value BETWEEN 0.35 AND 0.65) \
                 FROM traces t WHERE t.project_id = ?1 AND t.start_ns >= ?2 \
                   AND (?4 = 0 OR t.flags != 0 OR t.status = 'error' OR EXISTS (SELECT 1 FROM scores s \
                        WHERE s.trace_ref = t.id \
                          AND s.source IN ('evaluator', 'feedback') AND s.passed = 0)) \
                 ORDER BY t.start_ns DESC LIMIT ?3",
            )?;
            // The riskiest traces of the whole window (failing, flagged, errored), then the most
            // recent ones, so a busy project's older failures are not crowded out.
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for risky in [1i64, 0] {
            let rows = stmt.query_map(params![p.as_str(), since_ns, limit as i64, risky], |r| {
                let trace: Vec<u8> = r.get(0)?;
                let failing: Option<String> = r.get(8)?;
                Ok(AnnotationCandidate {
                    trace_id: TraceId::from_bytes(&trace).unwrap_or_default(),
                    start_ns: r.get(1)?,
                    duration_ms: r.get(2)?,
                    cost_usd: r.get(3)?,
                    status: r.get(4)?,
                    flags: r.get(5)?,
                    root_name: r.get(6)?,
                    session_id: r.get(7)?,
                    failing_evaluators: failing
                        .map(|f| f.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    negative_feedback: r.get::<_, i64>(9)?.max(0) as u64,
                    uncertain_judgements: r.get::<_, i64>(10)?.max(0) as u64,
                })
            })?;
            for row in rows {
                let c = row?;
                if seen.insert(c.trace_id) {
                    out.push(c);
                }
            }
            }
            Ok(out)
        })
        .await
    }

    async fn annotations(&self, project: &ProjectId) -> Result<Vec<(TraceId, String, bool)>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT trace_id, COALESCE(source_id, ''), passed FROM scores \
                 WHERE project_id = ?1 AND source = 'human' AND name = 'annotation' AND trace_id IS NOT NULL AND passed IS NOT NULL \
                 ORDER BY created_ns",
            )?;
            let rows = stmt.query_map([p.as_str()], |r| {
                let trace: Vec<u8> = r.get(0)?;
                Ok((
                    TraceId::from_bytes(&trace).unwrap_or_default(),
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn add_dataset_items(
        &self,
        project: &ProjectId,
        name: &str,
        items: Vec<DatasetItem>,
    ) -> Result<DatasetRow> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(Error::InvalidQuery(
                "a dataset needs a name of 1 to 128 bytes".into(),
            ));
        }
        let (p, name) = (project.clone(), name.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                let now = time_now_ns();
                tx.execute(
                    "INSERT OR IGNORE INTO datasets (id, project_id, name, created_ns) VALUES (?1, ?2, ?3, ?4)",
                    params![format!("ds_{}", hex::encode(rand::random::<[u8; 8]>())), p.as_str(), name, now],
                )?;
                let (id, created): (String, i64) = tx.query_row(
                    "SELECT id, created_ns FROM datasets WHERE project_id = ?1 AND name = ?2",
                    params![p.as_str(), name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                for it in &items {
                    tx.prepare_cached(
                        "INSERT INTO dataset_items (dataset_id, input, expected, source_trace, created_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![id, it.input, it.expected, it.source_trace.map(|t| t.as_bytes().to_vec()), now])?;
                }
                let n: i64 = tx.query_row("SELECT count(*) FROM dataset_items WHERE dataset_id = ?1", [&id], |r| r.get(0))?;
                tx.commit()?;
                Ok(DatasetRow { id, project_id: p, name, created_ns: created, items: n.max(0) as u64 })
            })
            .await
    }

    async fn list_datasets(&self, project: &ProjectId) -> Result<Vec<DatasetRow>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.id, d.name, d.created_ns, (SELECT count(*) FROM dataset_items i WHERE i.dataset_id = d.id) \
                 FROM datasets d WHERE d.project_id = ?1 ORDER BY d.name",
            )?;
            let rows = stmt.query_map([p.as_str()], |r| {
                Ok(DatasetRow {
                    id: r.get(0)?,
                    project_id: p.clone(),
                    name: r.get(1)?,
                    created_ns: r.get(2)?,
                    items: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn get_dataset(
        &self,
        project: &ProjectId,
        name: &str,
    ) -> Result<Option<(DatasetRow, Vec<DatasetItem>)>> {
        let (p, name) = (project.clone(), name.to_string());
        self.read(move |c| {
            let row = c
                .query_row(
                    "SELECT id, created_ns FROM datasets WHERE project_id = ?1 AND (name = ?2 OR id = ?2)",
                    params![p.as_str(), name],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?;
            let Some((id, created)) = row else { return Ok(None) };
            let mut stmt = c.prepare_cached(
                "SELECT id, input, expected, source_trace FROM dataset_items WHERE dataset_id = ?1 ORDER BY id",
            )?;
            let items: Vec<DatasetItem> = stmt
                .query_map([&id], |r| {
                    let t: Option<Vec<u8>> = r.get(3)?;
                    Ok(DatasetItem {
                        id: r.get(0)?,
                        input: r.get(1)?,
                        expected: r.get(2)?,
                        source_trace: t.and_then(|b| TraceId::from_bytes(&b).ok()),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let n = items.len() as u64;
            Ok(Some((DatasetRow { id, project_id: p, name, created_ns: created, items: n }, items)))
        })
        .await
    }

    async fn put_experiment(
        &self,
        run: ExperimentRun,
        results: Vec<ExperimentResult>,
    ) -> Result<()> {
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO experiment_runs (id, project_id, dataset_id, name, model, prompt, summary, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![run.id, run.project_id.as_str(), run.dataset_id, run.name, run.model, run.prompt, run.summary.to_string(), run.created_ns],
                )?;
                for r in &results {
                    tx.prepare_cached(
                        "INSERT INTO experiment_results (run_id, item_id, output, error, latency_ms, verdicts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        run.id,
                        r.item_id,
                        r.output,
                        r.error,
                        r.latency_ms,
                        serde_json::to_string(&r.verdicts).unwrap_or_default()
                    ])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn get_experiment(
        &self,
        project: &ProjectId,
        id_or_name: &str,
    ) -> Result<Option<(ExperimentRun, Vec<ExperimentResult>)>> {
        let (p, key) = (project.clone(), id_or_name.to_string());
        self.read(move |c| {
            let run = c
                .query_row(
                    "SELECT id, dataset_id, name, model, prompt, summary, created_ns FROM experiment_runs \
                     WHERE project_id = ?1 AND (id = ?2 OR name = ?2) ORDER BY created_ns DESC LIMIT 1",
                    params![p.as_str(), key],
                    |r| experiment_row(r, &p),
                )
                .optional()?;
            let Some(run) = run else { return Ok(None) };
            let mut stmt = c.prepare_cached(
                "SELECT item_id, output, error, latency_ms, verdicts FROM experiment_results WHERE run_id = ?1 ORDER BY item_id",
            )?;
            let results = stmt
                .query_map([&run.id], |r| {
                    let v: String = r.get(4)?;
                    Ok(ExperimentResult {
                        item_id: r.get(0)?,
                        output: r.get(1)?,
                        error: r.get(2)?,
                        latency_ms: r.get(3)?,
                        verdicts: serde_json::from_str(&v).unwrap_or_default(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((run, results)))
        })
        .await
    }

    async fn list_experiments(
        &self,
        project: &ProjectId,
        dataset_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExperimentRun>> {
        let (p, d) = (project.clone(), dataset_id.map(str::to_string));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, dataset_id, name, model, prompt, summary, created_ns FROM experiment_runs \
                 WHERE project_id = ?1 AND (?2 IS NULL OR dataset_id = ?2) ORDER BY created_ns DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![p.as_str(), d, limit as i64], |r| experiment_row(r, &p))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn failing_verdicts(
        &self,
        project: &ProjectId,
        since_ns: i64,
        limit: usize,
    ) -> Result<Vec<(TraceId, String, String)>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT trace_id, name, COALESCE(reason, '') FROM scores \
                 WHERE project_id = ?1 AND source = 'evaluator' AND passed = 0 AND created_ns >= ?2 AND trace_id IS NOT NULL \
                 ORDER BY created_ns DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![p.as_str(), since_ns, limit as i64], |r| {
                let t: Vec<u8> = r.get(0)?;
                Ok((TraceId::from_bytes(&t).unwrap_or_default(), r.get(1)?, r.get(2)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn deployments(&self, project: &ProjectId) -> Result<Vec<(String, i64)>> {
        // The failure-mode lifecycle asks every couple of seconds, and the answer reads every
        // trace of the project (a third of a second per million traces): it is recomputed at most
        // once a minute. Deployments are rare; a new one is seen within the minute.
        let (p, cache) = (project.clone(), self.inner.deployments.clone());
        if let Some(fresh) = cache.lock().ok().and_then(|m| {
            m.get(&p)
                .filter(|(at, _)| at.elapsed() < DEPLOYMENTS_TTL)
                .map(|(_, d)| d.clone())
        }) {
            return Ok(fresh);
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT service_version, min(start_ns) FROM traces WHERE project_id = ?1 AND service_version IS NOT NULL \
                 GROUP BY service_version ORDER BY 2",
            )?;
            let rows = stmt.query_map([p.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let out: Vec<(String, i64)> = rows.collect::<rusqlite::Result<_>>()?;
            if let Ok(mut m) = cache.lock() {
                m.insert(p, (std::time::Instant::now(), out.clone()));
            }
            Ok(out)
        })
        .await
    }

    async fn score_pairs_timed(
        &self,
        project: &ProjectId,
        name: &str,
        human_name: &str,
    ) -> Result<Vec<(bool, bool, i64)>> {
        let (p, name, human) = (project.clone(), name.to_string(), human_name.to_string());
        self.read(move |c| score_pairs_timed(c, &p, &name, &human))
            .await
    }
}
