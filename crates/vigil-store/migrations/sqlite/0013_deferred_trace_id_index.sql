-- The unique trace-id index is split in two like the deferred indexes of 0011: `traces_by_id` holds
-- the indexed rows, and `traces_unindexed` (now keyed by trace id too) the new rows waiting for the
-- next indexing batch. A trace id is random, so each new trace dirtied a random leaf page of the one
-- big unique index; with a million traces stored, nearly every leaf of it was written to the WAL at
-- every commit, which was the writer's largest cost under sustained ingest. The waiting side is small
-- (one batch), so its leaves are few and stay cached, and the batch adds its rows to `traces_by_id`
-- in key order, one write per leaf. Each side is unique on its own; the writer keeps a trace id on
-- one side only by looking it up in `traces_by_id` before inserting a row (see `insert_new_trace_row`).
-- The table constraint `UNIQUE (project_id, trace_id)` cannot be dropped, so the table is rebuilt.
CREATE TABLE traces_0013 (
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
    indexed         INTEGER NOT NULL DEFAULT 1
);
INSERT INTO traces_0013 (id, project_id, trace_id, root_name, service_name, service_version, environment,
        agent_name, session_id, user_id, start_ns, end_ns, duration_ms, span_count, llm_count, tool_count,
        error_count, input_tokens, output_tokens, cost_usd, status, flags, models, providers, tools, indexed)
    SELECT id, project_id, trace_id, root_name, service_name, service_version, environment,
        agent_name, session_id, user_id, start_ns, end_ns, duration_ms, span_count, llm_count, tool_count,
        error_count, input_tokens, output_tokens, cost_usd, status, flags, models, providers, tools, indexed
    FROM traces;
DROP TABLE traces;
ALTER TABLE traces_0013 RENAME TO traces;

CREATE UNIQUE INDEX traces_by_id ON traces (project_id, trace_id) WHERE indexed = 1;
CREATE UNIQUE INDEX traces_unindexed ON traces (project_id, trace_id) WHERE indexed = 0;
CREATE INDEX traces_by_time ON traces (project_id, start_ns);
CREATE INDEX traces_by_session ON traces (project_id, session_id, start_ns) WHERE session_id IS NOT NULL AND indexed = 1;
CREATE INDEX traces_by_user ON traces (project_id, user_id, start_ns) WHERE user_id IS NOT NULL AND indexed = 1;
CREATE INDEX traces_by_cost ON traces (project_id, COALESCE(cost_usd, -1.0)) WHERE indexed = 1;
CREATE INDEX traces_by_duration ON traces (project_id, duration_ms) WHERE indexed = 1;
