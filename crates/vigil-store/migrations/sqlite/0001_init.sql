-- Vigil's embedded store. Every row belongs to a project.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- API keys are stored only as SHA-256 of the secret; `display` is a prefix and the last 4 characters.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    name        TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    display     TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Spans are stored in chunks: one row per trace per write, holding the spans of that trace that
-- arrived together. A row per span would cost one B-tree insert (and one random index entry) per
-- span; a chunk costs one per trace, compresses about three times better (the spans of a trace share
-- most of their text) and is read back whole, which is how traces are read. `trace_ref` is
-- `traces.id`, which grows with each new trace, so new chunks and their index entries are appended.
CREATE TABLE span_chunks (
    id          INTEGER PRIMARY KEY,
    trace_ref   INTEGER NOT NULL,
    span_count  INTEGER NOT NULL,
    -- The summary columns of each span (`SpanFacts`), compressed: enough to re-summarise a trace
    -- when a late span arrives and to recognise redelivered spans, without decoding the bodies.
    facts       BLOB NOT NULL,
    -- The canonical spans as a compressed JSON array.
    body        BLOB NOT NULL
);
CREATE INDEX span_chunks_by_trace ON span_chunks (trace_ref);

-- Full-text index over span content (names, messages, tool arguments and results) of each chunk;
-- rowid = span_chunks.id.
CREATE VIRTUAL TABLE chunk_text USING fts5 (text, content = '', contentless_delete = 1, tokenize = 'unicode61');

-- One row per trace, recomputed from its spans whenever a span of it is written. Updated in place, so
-- its `id` stays the `trace_ref` of its chunks. `models`, `providers` and `tools` are newline-separated.
CREATE TABLE traces (
    id              INTEGER PRIMARY KEY,
    project_id      TEXT NOT NULL,
    trace_id        BLOB NOT NULL,
    root_name       TEXT NOT NULL,
    service_name    TEXT,
    service_version TEXT,
    environment     TEXT,
    agent_name      TEXT,
    session_id      TEXT,
    user_id         TEXT,
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    duration_ms     REAL NOT NULL,
    span_count      INTEGER NOT NULL,
    llm_count       INTEGER NOT NULL,
    tool_count      INTEGER NOT NULL,
    error_count     INTEGER NOT NULL,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cost_usd        REAL,
    status          TEXT NOT NULL,
    flags           INTEGER NOT NULL,
    models          TEXT NOT NULL,
    providers       TEXT NOT NULL,
    tools           TEXT NOT NULL,
    UNIQUE (project_id, trace_id)
);
CREATE INDEX traces_by_time    ON traces (project_id, start_ns);
CREATE INDEX traces_by_session ON traces (project_id, session_id, start_ns) WHERE session_id IS NOT NULL;
CREATE INDEX traces_by_user    ON traces (project_id, user_id, start_ns) WHERE user_id IS NOT NULL;
CREATE INDEX traces_by_cost    ON traces (project_id, COALESCE(cost_usd, -1.0));
CREATE INDEX traces_by_duration ON traces (project_id, duration_ms);

-- One row per session, recomputed from its traces whenever one of them is written.
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    project_id      TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    user_id         TEXT,
    environment     TEXT,
    agent_names     TEXT,
    turns           INTEGER NOT NULL,
    span_count      INTEGER NOT NULL,
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cost_usd        REAL,
    error_count     INTEGER NOT NULL,
    flagged_count   INTEGER NOT NULL,
    UNIQUE (project_id, session_id)
);
CREATE INDEX sessions_by_end ON sessions (project_id, end_ns);

-- OTLP log records (GenAI events among them), merged into their span when it is read.
CREATE TABLE log_records (
    id          INTEGER PRIMARY KEY,
    project_id  TEXT NOT NULL,
    trace_id    BLOB,
    span_id     BLOB,
    time_ns     INTEGER NOT NULL,
    digest      BLOB NOT NULL,
    body        BLOB NOT NULL,
    UNIQUE (project_id, digest)
);
CREATE INDEX log_records_by_span ON log_records (project_id, trace_id, span_id);
CREATE INDEX log_records_by_time ON log_records (project_id, time_ns);

-- Per-minute rollups of spans for the metrics API: sums plus a log-scale latency histogram.
CREATE TABLE span_rollups (
    project_id      TEXT NOT NULL,
    minute          INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    agent_name      TEXT NOT NULL,
    environment     TEXT NOT NULL,
    service_name    TEXT NOT NULL,
    tool_name       TEXT NOT NULL,
    count           INTEGER NOT NULL,
    error_count     INTEGER NOT NULL,
    flagged_count   INTEGER NOT NULL,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cost_usd        REAL NOT NULL,
    priced_count    INTEGER NOT NULL,
    unpriced_count  INTEGER NOT NULL,
    latency_hist    TEXT NOT NULL,
    PRIMARY KEY (project_id, minute, kind, model, provider, agent_name, environment, service_name, tool_name)
) WITHOUT ROWID;
