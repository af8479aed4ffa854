-- Failure modes, tracked like bugs: open → annotated → tested → fixed → verified (→ regressed).
CREATE TABLE failure_modes (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    severity        TEXT NOT NULL,      -- low | medium | high | critical
    status          TEXT NOT NULL,      -- open | annotated | tested | fixed | verified | regressed
    evaluator       TEXT,               -- the evaluator (score name) that detects it
    fixed_in        TEXT,               -- the service.version meant to fix it
    baseline_rate   REAL,               -- failing sessions per 1,000 before the fix
    verified_rate   REAL,               -- per 1,000 when it was verified
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

-- Example traces: confirmed by a human (annotation) or found by the evaluator.
CREATE TABLE failure_mode_examples (
    failure_mode_id TEXT NOT NULL,
    trace_id        BLOB NOT NULL,
    source          TEXT NOT NULL,      -- human | evaluator
    created_ns      INTEGER NOT NULL,
    PRIMARY KEY (failure_mode_id, trace_id, source)
) WITHOUT ROWID;

-- Status changes, for the failure mode's history.
CREATE TABLE failure_mode_events (
    id              INTEGER PRIMARY KEY,
    failure_mode_id TEXT NOT NULL,
    time_ns         INTEGER NOT NULL,
    from_status     TEXT NOT NULL,
    to_status       TEXT NOT NULL,
    reason          TEXT NOT NULL
);
CREATE INDEX failure_mode_events_by_mode ON failure_mode_events (failure_mode_id, time_ns);
