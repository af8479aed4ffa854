//! Queries. SQL text is fixed; every user value is bound as a parameter.

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use vigil_model::{FlagKind, LogEvent, ProjectId, Span, SpanId, SpanStatus, TraceId};

use crate::query::*;
use crate::rollup::{Histogram, RollupTotals};
use crate::summary::SpanFacts;
use crate::{Error, Result};

const TRACE_COLUMNS: &str = "t.project_id, t.trace_id, t.root_name, t.service_name, t.service_version, t.environment,
    t.agent_name, t.session_id, t.user_id, t.start_ns, t.end_ns, t.duration_ms, t.span_count, t.llm_count, t.tool_count,
    t.error_count, t.input_tokens, t.output_tokens, t.cost_usd, t.status, t.flags, t.models, t.providers, t.tools, t.id";
/// Index of `t.id` in `TRACE_COLUMNS`: the trace's internal key, which its chunks refer to.
const TRACE_REF_COLUMN: usize = 24;

fn trace_id_col(row: &Row, idx: usize) -> rusqlite::Result<TraceId> {
    let bytes: Vec<u8> = row.get(idx)?;
    TraceId::from_bytes(&bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn split_list(s: String) -> Vec<String> {
    s.split('\n')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn trace_row(r: &Row) -> rusqlite::Result<TraceRow> {
    let input: i64 = r.get(16)?;
    let output: i64 = r.get(17)?;
    let status: String = r.get(19)?;
    let flags: i64 = r.get(20)?;
    Ok(TraceRow {
        project_id: ProjectId(r.get(0)?),
        trace_id: trace_id_col(r, 1)?,
        root_name: r.get(2)?,
        service_name: r.get(3)?,
        service_version: r.get(4)?,
        environment: r.get(5)?,
        agent_name: r.get(6)?,
        session_id: r.get(7)?,
        user_id: r.get(8)?,
        start_time: r.get(9)?,
        end_time: r.get(10)?,
        duration_ms: r.get(11)?,
        span_count: r.get(12)?,
        llm_count: r.get(13)?,
        tool_count: r.get(14)?,
        error_count: r.get(15)?,
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output,
        cost_usd: r.get(18)?,
        status: SpanStatus::parse(&status).unwrap_or_default(),
        flags: FlagKind::ALL
            .into_iter()
            .filter(|k| flags & k.bit() != 0)
            .collect(),
        models: split_list(r.get(21)?),
        providers: split_list(r.get(22)?),
        tools: split_list(r.get(23)?),
    })
}

const TRACE_WRITE_COLUMNS: &str = "project_id, trace_id, root_name, service_name, service_version, environment,
    agent_name, session_id, user_id, start_ns, end_ns, duration_ms, span_count, llm_count, tool_count,
    error_count, input_tokens, output_tokens, cost_usd, status, flags, models, providers, tools";

fn trace_params(t: &TraceRow) -> [Sql; 24] {
    let text = |v: &Option<String>| v.clone().map_or(Sql::Null, Sql::Text);
    [
        Sql::Text(t.project_id.0.clone()),
        Sql::Blob(t.trace_id.as_bytes().to_vec()),
        Sql::Text(t.root_name.clone()),
        text(&t.service_name),
        text(&t.service_version),
        text(&t.environment),
        text(&t.agent_name),
        text(&t.session_id),
        text(&t.user_id),
        Sql::Integer(t.start_time),
        Sql::Integer(t.end_time),
        Sql::Real(t.duration_ms),
        Sql::Integer(t.span_count),
        Sql::Integer(t.llm_count),
        Sql::Integer(t.tool_count),
        Sql::Integer(t.error_count),
        Sql::Integer(t.input_tokens),
        Sql::Integer(t.output_tokens),
        t.cost_usd.map_or(Sql::Null, Sql::Real),
        Sql::Text(t.status.as_str().into()),
        Sql::Integer(t.flags.iter().fold(0, |m, f| m | f.bit())),
        Sql::Text(t.models.join("\n")),
        Sql::Text(t.providers.join("\n")),
        Sql::Text(t.tools.join("\n")),
    ]
}

/// An optional text parameter.
fn opt_text(v: Option<&str>) -> Sql {
    v.map_or(Sql::Null, |v| Sql::Text(v.to_string()))
}

/// Inserts the row of a trace not stored yet and returns its internal key (`traces.id`); `None`
/// when the trace exists. One index descent for the common case of a new trace. The row starts
/// waiting: the writer adds it to the deferred indexes later, together with other new traces.
/// `judged_by` is its first chunk's (migration 0013).
pub(super) fn insert_new_trace_row(
    conn: &Connection,
    t: &TraceRow,
    judged_by: Option<&str>,
    passed_by: Option<&str>,
) -> Result<Option<i64>> {
    let sql = format!(
        "INSERT INTO traces ({TRACE_WRITE_COLUMNS}, indexed, judged_by, passed_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
            ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, 0, ?25, ?26)
         ON CONFLICT (project_id, trace_id) DO NOTHING"
    );
    let n = conn.prepare_cached(&sql)?.execute(params_from_iter(
        trace_params(t)
            .into_iter()
            .chain([opt_text(judged_by), opt_text(passed_by)]),
    ))?;
    Ok((n == 1).then(|| conn.last_insert_rowid()))
}

/// Rewrites a trace's row in place, keeping its internal key, for a new chunk judged by
/// `judged_by`: the row keeps its list only while every chunk carries the same one (migration 0013).
/// `passed_by`, when given, replaces the row's (the caller merged the two).
pub(super) fn update_trace_row(
    conn: &Connection,
    trace_ref: i64,
    t: &TraceRow,
    judged_by: Option<&str>,
    passed_by: Option<&str>,
) -> Result<()> {
    let sets: Vec<String> = TRACE_WRITE_COLUMNS
        .split(',')
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", c.trim(), i + 1))
        .collect();
    let sql = format!(
        "UPDATE traces SET {}, judged_by = CASE WHEN judged_by IS ?26 THEN judged_by END, \
           passed_by = COALESCE(?27, passed_by) WHERE id = ?25",
        sets.join(", ")
    );
    let mut args = trace_params(t).to_vec();
    args.push(Sql::Integer(trace_ref));
    args.push(opt_text(judged_by));
    args.push(opt_text(passed_by));
    conn.prepare_cached(&sql)?.execute(params_from_iter(args))?;
    Ok(())
}

/// A trace's row and its internal key, if the trace exists.
pub(super) fn get_trace_with_ref(
    conn: &Connection,
    project: &ProjectId,
    trace_id: TraceId,
) -> Result<Option<(i64, TraceRow)>> {
    let sql =
        format!("SELECT {TRACE_COLUMNS} FROM traces t WHERE t.project_id = ?1 AND t.trace_id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![project.as_str(), trace_id.as_bytes()], |r| {
            Ok((r.get(TRACE_REF_COLUMN)?, trace_row(r)?))
        })
        .optional()?)
}

/// The facts of every span stored for a trace, from its chunks, oldest first.
pub(super) fn load_facts(conn: &Connection, trace_ref: i64) -> Result<Vec<SpanFacts>> {
    let mut stmt =
        conn.prepare_cached("SELECT facts FROM span_chunks WHERE trace_ref = ?1 ORDER BY id")?;
    let blobs = stmt.query_map([trace_ref], |r| r.get::<_, Vec<u8>>(0))?;
    let mut facts = Vec::new();
    for blob in blobs {
        facts.extend(super::body::decode::<Vec<SpanFacts>>(&blob?)?);
    }
    Ok(facts)
}

/// The rows of `traces` matching `cond`, as a `FROM` item, for a filter that one of the deferred
/// indexes serves (session or user; migration 0011): rows already in those indexes are found
/// through them, the recent rows waiting for them through `traces_unindexed`. `cond` names columns
/// without a table alias and may use numbered parameters, which both sides share.
pub(super) fn traces_where(cond: &str) -> String {
    format!(
        "(SELECT * FROM traces WHERE indexed = 1 AND {cond} \
         UNION ALL SELECT * FROM traces INDEXED BY traces_unindexed WHERE indexed = 0 AND {cond})"
    )
}

/// A dynamic `WHERE` clause built from fixed fragments and bound values.
#[derive(Default)]
struct Filter {
    sql: String,
    args: Vec<Sql>,
}

impl Filter {
    fn and(&mut self, fragment: &str, values: impl IntoIterator<Item = Sql>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(fragment);
        self.args.extend(values);
    }

    fn opt_text(&mut self, fragment: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.and(fragment, [Sql::Text(v.clone())]);
        }
    }
}

/// Each search word becomes a quoted FTS5 phrase, so user input cannot inject query syntax.
pub(super) fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

fn sort_expr(field: TraceSortField) -> &'static str {
    match field {
        TraceSortField::StartTime => "t.start_ns",
        TraceSortField::Duration => "t.duration_ms",
        TraceSortField::Cost => "COALESCE(t.cost_usd, -1.0)",
        TraceSortField::Tokens => "(t.input_tokens + t.output_tokens)",
        TraceSortField::Spans => "t.span_count",
    }
}

fn cursor_value(field: TraceSortField, t: &TraceRow) -> CursorValue {
    match field {
        TraceSortField::StartTime => CursorValue::Int(t.start_time),
        TraceSortField::Duration => CursorValue::Float(t.duration_ms),
        TraceSortField::Cost => CursorValue::Float(t.cost_usd.unwrap_or(-1.0)),
        TraceSortField::Tokens => CursorValue::Int(t.total_tokens),
        TraceSortField::Spans => CursorValue::Int(t.span_count),
    }
}

/// The order of `find_traces`' sort, ascending, as SQLite compares the sort column and trace id.
pub(super) fn sort_order(field: TraceSortField, a: &TraceRow, b: &TraceRow) -> std::cmp::Ordering {
    let by_value = match (cursor_value(field, a), cursor_value(field, b)) {
        (CursorValue::Int(x), CursorValue::Int(y)) => x.cmp(&y),
        // SQLite compares REAL values numerically (0.0 = -0.0; it stores no NaN).
        (CursorValue::Float(x), CursorValue::Float(y)) => {
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        }
        (CursorValue::Int(x), CursorValue::Float(y)) => (x as f64).total_cmp(&y),
        (CursorValue::Float(x), CursorValue::Int(y)) => x.total_cmp(&(y as f64)),
    };
    by_value.then_with(|| a.trace_id.cmp(&b.trace_id))
}

/// Merges two lists, each sorted by `order`, into one sorted list.
fn merge_sorted<T>(a: Vec<T>, b: Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => order(x, y).is_le(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

/// Whether the query's time range covers more than a quarter of the project's history.
fn wide_range(conn: &Connection, q: &TraceQuery) -> Result<bool> {
    if q.start_time_min.is_none() && q.start_time_max.is_none() {
        return Ok(false);
    }
    let (first, last): (Option<i64>, Option<i64>) = conn
        // Two subqueries: SQLite answers a lone MIN or MAX from the index, not both at once.
        .prepare_cached(
            "SELECT (SELECT MIN(start_ns) FROM traces WHERE project_id = ?1),
                    (SELECT MAX(start_ns) FROM traces WHERE project_id = ?1)",
        )?
        .query_row([q.project_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(false);
    };
    let from = q.start_time_min.unwrap_or(first).max(first);
    let to = q.start_time_max.unwrap_or(last).min(last);
    let history = (last - first).max(1) as f64;
    Ok((to - from) as f64 / history > 0.25)
}

pub(super) fn find_traces(conn: &Connection, q: &TraceQuery) -> Result<TracePage> {
    let limit = q.limit.clamp(1, MAX_PAGE_SIZE);
    let mut f = Filter::default();
    f.args.push(Sql::Text(q.project_id.0.clone()));
    // Sorted by something other than time, a wide time range is best served by walking the sort's
    // index and skipping rows outside the range; a narrow one by reading the range and sorting it.
    // SQLite cannot tell which (it has no statistics on time), so estimate the range's share of the
    // project's history and, when it is large, keep the time index out of the plan (unary `+`).
    let time_col = if q.sort != TraceSortField::StartTime && wide_range(conn, q)? {
        "+t.start_ns"
    } else {
        "t.start_ns"
    };
    if let Some(v) = q.start_time_min {
        f.and(&format!("{time_col} >= ?"), [Sql::Integer(v)]);
    }
    if let Some(v) = q.start_time_max {
        f.and(&format!("{time_col} <= ?"), [Sql::Integer(v)]);
    }
    f.opt_text("t.service_name = ?", &q.service_name);
    f.opt_text("t.environment = ?", &q.environment);
    f.opt_text("t.agent_name = ?", &q.agent_name);
    f.opt_text("t.session_id = ?", &q.session_id);
    f.opt_text("t.user_id = ?", &q.user_id);
    if let Some(s) = q.status {
        f.and("t.status = ?", [Sql::Text(s.as_str().into())]);
    }
    if !q.flags.is_empty() {
        let mask = q.flags.iter().fold(0, |m, k| m | k.bit());
        f.and(
            "(t.flags & ?) = ?",
            [Sql::Integer(mask), Sql::Integer(mask)],
        );
    }
    if let Some(v) = q.duration_min_ms {
        f.and("t.duration_ms >= ?", [Sql::Real(v)]);
    }
    if let Some(v) = q.cost_min_usd {
        f.and("t.cost_usd >= ?", [Sql::Real(v)]);
    }
    // The trace row lists its models, providers and tools one per line; match a whole line.
    let exists = |col: &str| -> String {
        format!("instr(char(10) || t.{col} || char(10), char(10) || ? || char(10)) > 0")
    };
    if let Some(m) = &q.model {
        f.and(&exists("models"), [Sql::Text(m.clone())]);
    }
    if let Some(p) = &q.provider {
        f.and(&exists("providers"), [Sql::Text(p.clone())]);
    }
    if let Some(p) = &q.tool_name {
        f.and(&exists("tools"), [Sql::Text(p.clone())]);
    }
    if let Some(m) = q.text.as_deref().and_then(fts_query) {
        f.and(
            // Uncorrelated, so SQLite evaluates the match once and probes the result per trace.
            "t.id IN (SELECT c.trace_ref FROM chunk_text JOIN span_chunks c ON c.id = chunk_text.rowid WHERE chunk_text MATCH ?)",
            [Sql::Text(m)],
        );
    }
    let expr = sort_expr(q.sort);
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = &q.cursor {
        let v = match c.value {
            CursorValue::Int(i) => Sql::Integer(i),
            CursorValue::Float(x) => Sql::Real(x),
        };
        let id = Sql::Blob(c.trace_id.0.to_vec());
        f.and(
            &format!("({expr} {cmp} ? OR ({expr} = ? AND t.trace_id {cmp} ?))"),
            [v.clone(), v, id],
        );
    }
    let select = |from: &str, side: &str| -> Result<Vec<TraceRow>> {
        let sql = format!("SELECT {TRACE_COLUMNS} FROM {from} WHERE t.project_id = ?{side}{} ORDER BY {expr} {dir}, t.trace_id {dir} LIMIT {}", f.sql, limit + 1);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(f.args.iter()), trace_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    };
    // Filters and sorts served by a deferred index read the indexed rows through it and the recent
    // ones through theirs, each side in order, and merge the two (see `traces_where`).
    let deferred = q.session_id.is_some()
        || q.user_id.is_some()
        || matches!(q.sort, TraceSortField::Cost | TraceSortField::Duration);
    let mut traces = if deferred {
        // A session holds few traces: sorted by cost or duration, the planner would rather walk
        // that sort's index over the whole project (and all of it when nothing matches).
        let indexed_from = if q.session_id.is_some() {
            "traces t INDEXED BY traces_by_session"
        } else {
            "traces t"
        };
        let indexed = select(indexed_from, " AND t.indexed = 1")?;
        let recent = select("traces t INDEXED BY traces_unindexed", " AND t.indexed = 0")?;
        merge_sorted(indexed, recent, |a, b| {
            let order = sort_order(q.sort, a, b);
            if q.descending {
                order.reverse()
            } else {
                order
            }
        })
    } else {
        select("traces t", "")?
    };
    let next_cursor = if traces.len() > limit {
        traces.truncate(limit);
        traces.last().map(|t| {
            Cursor {
                value: cursor_value(q.sort, t),
                trace_id: t.trace_id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(TracePage {
        traces,
        next_cursor,
    })
}

pub(super) fn get_trace(
    conn: &Connection,
    project: &ProjectId,
    trace_id: TraceId,
) -> Result<Option<TraceDetail>> {
    let Some((trace_ref, trace)) = get_trace_with_ref(conn, project, trace_id)? else {
        return Ok(None);
    };
    let spans = chunk_spans(conn, trace_ref)?;
    let mut stmt = conn.prepare_cached(
        // By the trace's entries: ordered by time, the planner walked every log record of the
        // project through the time index to spare a sort of a few rows.
        "SELECT body FROM log_records INDEXED BY log_records_by_span WHERE project_id = ?1 AND trace_id = ?2 ORDER BY time_ns",
    )?;
    let log_events: Vec<LogEvent> = stmt
        .query_map(params![project.as_str(), trace_id.as_bytes()], |r| {
            r.get::<_, Vec<u8>>(0)
        })?
        .map(|b| -> Result<LogEvent> {
            serde_json::from_slice(&b?).map_err(|e| Error::Corrupt(e.to_string()))
        })
        .collect::<Result<_>>()?;
    Ok(Some(TraceDetail {
        trace,
        spans: tree_order(spans),
        log_events,
    }))
}

/// A trace's spans in tree order, without its row and log records (for evaluators).
pub(super) fn get_trace_spans(
    conn: &Connection,
    project: &ProjectId,
    trace_id: TraceId,
) -> Result<Option<Vec<Span>>> {
    let trace_ref: Option<i64> = conn
        .prepare_cached("SELECT id FROM traces WHERE project_id = ?1 AND trace_id = ?2")?
        .query_row(params![project.as_str(), trace_id.as_bytes()], |r| r.get(0))
        .optional()?;
    match trace_ref {
        Some(trace_ref) => Ok(Some(tree_order(chunk_spans(conn, trace_ref)?))),
        None => Ok(None),
    }
}

/// The spans of a trace's chunks, in the order they were stored. A chunk may repeat a span a client
/// redelivered together with new ones; the first copy wins.
fn chunk_spans(conn: &Connection, trace_ref: i64) -> Result<Vec<Span>> {
    let mut stmt =
        conn.prepare_cached("SELECT body FROM span_chunks WHERE trace_ref = ?1 ORDER BY id")?;
    let mut spans: Vec<Span> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for blob in stmt.query_map([trace_ref], |r| r.get::<_, Vec<u8>>(0))? {
        let chunk: Vec<Span> = super::body::decode(&blob?)?;
        spans.extend(chunk.into_iter().filter(|s| seen.insert(s.span_id)));
    }
    Ok(spans)
}

/// Parents before children, siblings by start time; iterative, so deep traces cannot overflow.
pub fn tree_order(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| s.start_time);
    let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<Option<SpanId>, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        let parent = s
            .parent_span_id
            .filter(|p| ids.contains(p) && *p != s.span_id);
        children.entry(parent).or_default().push(i);
    }
    let mut order = Vec::with_capacity(spans.len());
    let mut visited = vec![false; spans.len()];
    let mut stack: Vec<usize> = children
        .get(&None)
        .map(|v| v.iter().rev().copied().collect())
        .unwrap_or_default();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            continue;
        }
        order.push(i);
        if let Some(kids) = children.get(&Some(spans[i].span_id)) {
            stack.extend(kids.iter().rev().copied());
        }
    }
    // Cycles (a span that is its own ancestor) are appended rather than lost.
    order.extend((0..spans.len()).filter(|i| !visited[*i]));
    let mut slots: Vec<Option<Span>> = spans.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Recomputes the summary row of one session from its traces (or removes it when none is left).
pub(super) fn refresh_session(conn: &Connection, project: &str, session_id: &str) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO sessions (project_id, session_id, user_id, environment, agent_names, turns, span_count,
                start_ns, end_ns, input_tokens, output_tokens, cost_usd, error_count, flagged_count)
             SELECT t.project_id, t.session_id, MAX(t.user_id), MAX(t.environment), group_concat(DISTINCT t.agent_name), COUNT(*),
                SUM(t.span_count), MIN(t.start_ns), MAX(t.end_ns), SUM(t.input_tokens), SUM(t.output_tokens), SUM(t.cost_usd),
                SUM(t.error_count > 0), SUM(t.flags != 0)
             FROM {} t GROUP BY t.project_id, t.session_id",
            traces_where("project_id = ?1 AND session_id = ?2")
        ))?
        .execute(params![project, session_id])?;
    if n == 0 {
        conn.prepare_cached("DELETE FROM sessions WHERE project_id = ?1 AND session_id = ?2")?
            .execute(params![project, session_id])?;
    }
    Ok(())
}

/// Adds (`sign` = 1) or removes (`sign` = -1) one trace's contribution to its session's row.
/// Start and end only ever widen, which is also right when a trace is replaced by its newer summary.
pub(super) fn apply_session_delta(conn: &Connection, t: &TraceRow, sign: i64) -> Result<()> {
    let Some(session) = &t.session_id else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO sessions (project_id, session_id, user_id, environment, agent_names, turns, span_count, start_ns,
            end_ns, input_tokens, output_tokens, cost_usd, error_count, flagged_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (project_id, session_id) DO UPDATE SET
            user_id = COALESCE(sessions.user_id, excluded.user_id),
            environment = COALESCE(sessions.environment, excluded.environment),
            agent_names = CASE
                WHEN excluded.agent_names IS NULL THEN sessions.agent_names
                WHEN sessions.agent_names IS NULL THEN excluded.agent_names
                WHEN instr(',' || sessions.agent_names || ',', ',' || excluded.agent_names || ',') > 0 THEN sessions.agent_names
                ELSE sessions.agent_names || ',' || excluded.agent_names END,
            turns = sessions.turns + excluded.turns,
            span_count = sessions.span_count + excluded.span_count,
            start_ns = MIN(sessions.start_ns, excluded.start_ns),
            end_ns = MAX(sessions.end_ns, excluded.end_ns),
            input_tokens = sessions.input_tokens + excluded.input_tokens,
            output_tokens = sessions.output_tokens + excluded.output_tokens,
            cost_usd = CASE WHEN sessions.cost_usd IS NULL AND excluded.cost_usd IS NULL THEN NULL
                            ELSE COALESCE(sessions.cost_usd, 0) + COALESCE(excluded.cost_usd, 0) END,
            error_count = sessions.error_count + excluded.error_count,
            flagged_count = sessions.flagged_count + excluded.flagged_count",
    )?
    .execute(params![
        t.project_id.as_str(),
        session,
        t.user_id,
        t.environment,
        t.agent_name,
        sign,
        sign * t.span_count,
        t.start_time,
        t.end_time,
        sign * t.input_tokens,
        sign * t.output_tokens,
        t.cost_usd.map(|c| sign as f64 * c),
        sign * i64::from(t.error_count > 0),
        sign * i64::from(!t.flags.is_empty()),
    ])?;
    Ok(())
}

const SESSION_SELECT: &str = "SELECT s.session_id, s.user_id, s.environment, s.agent_names, s.turns, s.span_count, s.start_ns,
    s.end_ns, s.input_tokens, s.output_tokens, s.cost_usd, s.error_count, s.flagged_count FROM sessions s";

fn session_row(r: &Row) -> rusqlite::Result<SessionRow> {
    let agents: Option<String> = r.get(3)?;
    let start: i64 = r.get(6)?;
    let end: i64 = r.get(7)?;
    let input: i64 = r.get(8)?;
    let output: i64 = r.get(9)?;
    Ok(SessionRow {
        session_id: r.get(0)?,
        user_id: r.get(1)?,
        environment: r.get(2)?,
        agent_names: agents
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        turns: r.get(4)?,
        span_count: r.get(5)?,
        start_time: start,
        end_time: end,
        duration_ms: (end - start) as f64 / 1e6,
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output,
        cost_usd: r.get(10)?,
        error_count: r.get(11)?,
        flagged_count: r.get(12)?,
    })
}

pub(super) fn find_sessions(conn: &Connection, q: &SessionQuery) -> Result<SessionPage> {
    let limit = q.limit.clamp(1, MAX_PAGE_SIZE);
    let mut f = Filter::default();
    f.args.push(Sql::Text(q.project_id.0.clone()));
    // A session is in the range when any of it overlaps the range.
    if let Some(v) = q.start_time_min {
        f.and("s.end_ns >= ?", [Sql::Integer(v)]);
    }
    if let Some(v) = q.start_time_max {
        f.and("s.start_ns <= ?", [Sql::Integer(v)]);
    }
    f.opt_text("s.user_id = ?", &q.user_id);
    f.opt_text("s.environment = ?", &q.environment);
    if let Some(a) = &q.agent_name {
        f.and(
            "instr(',' || s.agent_names || ',', ',' || ? || ',') > 0",
            [Sql::Text(a.clone())],
        );
    }
    let sql = format!(
        "{SESSION_SELECT} WHERE s.project_id = ?{} ORDER BY s.end_ns DESC, s.session_id LIMIT {} OFFSET {}",
        f.sql,
        limit + 1,
        q.offset
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut sessions: Vec<SessionRow> = stmt
        .query_map(params_from_iter(f.args.iter()), session_row)?
        .collect::<rusqlite::Result<_>>()?;
    let next_cursor = (sessions.len() > limit).then(|| (q.offset + limit).to_string());
    sessions.truncate(limit);
    Ok(SessionPage {
        sessions,
        next_cursor,
    })
}

pub(super) fn get_session(
    conn: &Connection,
    project: &ProjectId,
    session_id: &str,
) -> Result<Option<SessionDetail>> {
    let sql = format!("{SESSION_SELECT} WHERE s.project_id = ?1 AND s.session_id = ?2");
    let Some(session) = conn
        .prepare_cached(&sql)?
        .query_row(params![project.as_str(), session_id], session_row)
        .optional()?
    else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {TRACE_COLUMNS} FROM {} t ORDER BY t.start_ns LIMIT 10000",
        traces_where("project_id = ?1 AND session_id = ?2")
    );
    let traces = conn
        .prepare_cached(&sql)?
        .query_map(params![project.as_str(), session_id], trace_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(SessionDetail { session, traces }))
}

/// Reads the rollup columns `count … latency_hist` starting at column `first`.
pub(super) fn rollup_from_row(r: &Row, first: usize) -> rusqlite::Result<RollupTotals> {
    Ok(RollupTotals {
        count: r.get(first)?,
        errors: r.get(first + 1)?,
        flagged: r.get(first + 2)?,
        input: r.get(first + 3)?,
        output: r.get(first + 4)?,
        cost: r.get(first + 5)?,
        priced: r.get(first + 6)?,
        unpriced: r.get(first + 7)?,
        hist: Histogram::decode(&r.get::<_, String>(first + 8)?),
    })
}

pub(super) fn metrics(conn: &Connection, q: &MetricsQuery) -> Result<MetricsResult> {
    if q.bucket_seconds < 60 || q.bucket_seconds % 60 != 0 {
        return Err(Error::InvalidQuery(
            "`bucket` must be a whole number of minutes".into(),
        ));
    }
    if q.start_time_max < q.start_time_min {
        return Err(Error::InvalidQuery("`to` is before `from`".into()));
    }
    let minute_min = q.start_time_min.div_euclid(60_000_000_000);
    let minute_max = q.start_time_max.div_euclid(60_000_000_000);
    let buckets = (minute_max - minute_min) * 60 / q.bucket_seconds;
    if buckets > 10_000 {
        return Err(Error::InvalidQuery(format!(
            "{buckets} buckets requested; widen `bucket` or narrow the range (max 10000)"
        )));
    }
    let group_col = match q.group_by {
        None => "''",
        Some(MetricsDimension::Model) => "model",
        Some(MetricsDimension::Provider) => "provider",
        Some(MetricsDimension::Agent) => "agent_name",
        Some(MetricsDimension::Environment) => "environment",
        Some(MetricsDimension::Service) => "service_name",
        Some(MetricsDimension::Kind) => "kind",
        Some(MetricsDimension::Tool) => "tool_name",
    };
    let mut f = Filter::default();
    f.args.extend([
        Sql::Text(q.project_id.0.clone()),
        Sql::Integer(minute_min),
        Sql::Integer(minute_max),
    ]);
    if let Some(k) = q.kind {
        f.and("kind = ?", [Sql::Text(k.as_str().into())]);
    }
    f.opt_text("model = ?", &q.model);
    f.opt_text("provider = ?", &q.provider);
    f.opt_text("agent_name = ?", &q.agent_name);
    f.opt_text("environment = ?", &q.environment);
    f.opt_text("service_name = ?", &q.service_name);
    f.opt_text("tool_name = ?", &q.tool_name);
    let sql = format!(
        "SELECT minute, {group_col}, count, error_count, flagged_count, input_tokens, output_tokens, cost_usd, priced_count,
                unpriced_count, latency_hist
         FROM span_rollups WHERE project_id = ? AND minute >= ? AND minute <= ?{}",
        f.sql
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut series: BTreeMap<(i64, String), RollupTotals> = BTreeMap::new();
    let bucket_minutes = q.bucket_seconds / 60;
    let mut rows = stmt.query(params_from_iter(f.args.iter()))?;
    while let Some(r) = rows.next()? {
        let minute: i64 = r.get(0)?;
        let group: String = r.get(1)?;
        // Buckets align to the Unix epoch (UTC), so hourly and daily buckets start on the hour and day.
        let bucket = minute.div_euclid(bucket_minutes) * bucket_minutes;
        let acc = series.entry((bucket, group)).or_default();
        acc.add(&rollup_from_row(r, 2)?);
    }
    let grouped = q.group_by.is_some();
    let mut totals: BTreeMap<String, RollupTotals> = BTreeMap::new();
    let mut points = Vec::with_capacity(series.len());
    for ((bucket, group), acc) in &series {
        totals.entry(group.clone()).or_default().add(acc);
        points.push(acc.point(
            Some(bucket * 60_000_000_000),
            grouped.then(|| group.clone()),
        ));
    }
    let mut totals: Vec<MetricsPoint> = totals
        .iter()
        .map(|(g, acc)| acc.point(None, grouped.then(|| g.clone())))
        .collect();
    totals.sort_by(|a, b| {
        b.cost_usd
            .unwrap_or(0.0)
            .total_cmp(&a.cost_usd.unwrap_or(0.0))
            .then(b.count.cmp(&a.count))
    });
    Ok(MetricsResult {
        bucket_seconds: q.bucket_seconds,
        group_by: q.group_by,
        series: points,
        totals,
    })
}

pub(super) fn model_usage(
    conn: &Connection,
    project: Option<&ProjectId>,
    since: i64,
) -> Result<Vec<ModelUsageRow>> {
    // One statement per case: `?2 IS NULL OR project_id = ?2` read every project's rollups.
    let project_filter = if project.is_some() {
        "project_id = ?2 AND minute >= ?1"
    } else {
        "minute >= ?1 AND ?2 IS NULL"
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT model, provider, SUM(count), SUM(unpriced_count), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), SUM(priced_count)
         FROM span_rollups WHERE model != '' AND {project_filter}
         GROUP BY model, provider ORDER BY SUM(cost_usd) DESC, SUM(count) DESC"
    ))?;
    let rows = stmt.query_map(
        params![
            since.div_euclid(60_000_000_000),
            project.map(|p| p.as_str())
        ],
        |r| {
            let provider: String = r.get(1)?;
            let priced: i64 = r.get(7)?;
            Ok(ModelUsageRow {
                model: r.get(0)?,
                provider: (!provider.is_empty()).then_some(provider),
                span_count: r.get(2)?,
                unpriced_count: r.get(3)?,
                input_tokens: r.get(4)?,
                output_tokens: r.get(5)?,
                cost_usd: (priced > 0).then_some(r.get(6)?),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn facets(conn: &Connection, project: &ProjectId, since: i64) -> Result<Facets> {
    use std::collections::BTreeSet;
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT model, provider, agent_name, environment, service_name, tool_name
         FROM span_rollups WHERE project_id = ?1 AND minute >= ?2",
    )?;
    let mut sets: [BTreeSet<String>; 6] = Default::default();
    let mut rows = stmt.query(params![project.as_str(), since.div_euclid(60_000_000_000)])?;
    while let Some(r) = rows.next()? {
        for (i, set) in sets.iter_mut().enumerate() {
            let v: String = r.get(i)?;
            if !v.is_empty() {
                set.insert(v);
            }
        }
    }
    let [models, providers, agents, environments, services, tools] =
        sets.map(|s| s.into_iter().collect::<Vec<_>>());
    Ok(Facets {
        models,
        providers,
        agents,
        environments,
        services,
        tools,
    })
}

pub(super) fn session_length_breakdown(
    conn: &Connection,
    project: &ProjectId,
    since: i64,
) -> Result<Vec<SessionLengthBucket>> {
    let mut stmt = conn.prepare_cached(
        "SELECT CASE WHEN turns <= 2 THEN 'short' WHEN turns <= 6 THEN 'medium' ELSE 'long' END AS length,
                COUNT(*), SUM(turns), SUM(error_count), SUM(flagged_count), SUM(input_tokens + output_tokens), SUM(cost_usd)
         FROM sessions WHERE project_id = ?1 AND end_ns >= ?2 AND turns > 0
         GROUP BY length ORDER BY MIN(turns)",
    )?;
    let rows = stmt.query_map(params![project.as_str(), since], |r| {
        Ok(SessionLengthBucket {
            length: r.get(0)?,
            sessions: r.get(1)?,
            turns: r.get(2)?,
            error_turns: r.get(3)?,
            flagged_turns: r.get(4)?,
            tokens: r.get(5)?,
            cost_usd: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn stats(conn: &Connection) -> Result<StoreStats> {
    let (spans, traces): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(span_count), 0), COUNT(*) FROM traces",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(StoreStats {
        spans: spans as u64,
        traces: traces as u64,
        bytes: super::writer::used_bytes(conn)?,
    })
}
