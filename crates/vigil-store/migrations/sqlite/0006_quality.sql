-- The quality loop: evaluator definitions, the durable evaluation queue, scores.

-- `definition` is the evaluator as JSON (rule, scope, sampling, filter). `cursor` is the last
-- `traces.id` this evaluator has queued: new traces are found by id, so nothing is queued twice.
CREATE TABLE evaluators (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    definition  TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    cursor      INTEGER NOT NULL DEFAULT 0,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

-- One job per (evaluator, trace); `state` is queued | running | done | failed. A running job whose
-- lease ran out (its worker died) is leased again; a job is finished in the same transaction that
-- writes its scores, so a crash never counts a trace twice or loses it.
CREATE TABLE eval_jobs (
    id              INTEGER PRIMARY KEY,
    project_id      TEXT NOT NULL,
    evaluator_id    TEXT NOT NULL,
    trace_id        BLOB NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before_ns   INTEGER NOT NULL,
    lease_until_ns  INTEGER,
    error           TEXT,
    UNIQUE (evaluator_id, trace_id)
);
CREATE INDEX eval_jobs_ready ON eval_jobs (state, not_before_ns);

-- Scores from evaluators, humans and end users, on a trace, a span or a session. `passed` is the
-- boolean reading (1 pass, 0 fail) when there is one; `value` numeric; `label` categorical.
CREATE TABLE scores (
    id          INTEGER PRIMARY KEY,
    project_id  TEXT NOT NULL,
    trace_id    BLOB,
    span_id     BLOB,
    session_id  TEXT,
    name        TEXT NOT NULL,
    value       REAL,
    passed      INTEGER,
    label       TEXT,
    reason      TEXT,
    source      TEXT NOT NULL,      -- evaluator | human | feedback
    source_id   TEXT,               -- evaluator id, annotator, end user
    created_ns  INTEGER NOT NULL
);
CREATE INDEX scores_by_trace ON scores (project_id, trace_id);
CREATE INDEX scores_by_name ON scores (project_id, name, created_ns);
-- An evaluator scores a target once (re-runs after a crash are ignored, not double counted).
CREATE UNIQUE INDEX scores_once ON scores (project_id, source_id, name, trace_id, COALESCE(span_id, x''))
    WHERE source = 'evaluator';
