-- Datasets (from production traces or uploaded) and experiment runs over them.
CREATE TABLE datasets (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE dataset_items (
    id            INTEGER PRIMARY KEY,
    dataset_id    TEXT NOT NULL,
    input         TEXT NOT NULL,
    expected      TEXT,
    source_trace  BLOB,
    created_ns    INTEGER NOT NULL
);
CREATE INDEX dataset_items_by_dataset ON dataset_items (dataset_id, id);

-- One run of a dataset through a model and prompt, scored by evaluators. `summary` and each
-- result's `verdicts` are JSON.
CREATE TABLE experiment_runs (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    dataset_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    model       TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    created_ns  INTEGER NOT NULL
);
CREATE INDEX experiment_runs_by_dataset ON experiment_runs (project_id, dataset_id, created_ns);

CREATE TABLE experiment_results (
    run_id      TEXT NOT NULL,
    item_id     INTEGER NOT NULL,
    output      TEXT,
    error       TEXT,
    latency_ms  REAL,
    verdicts    TEXT NOT NULL,
    PRIMARY KEY (run_id, item_id)
) WITHOUT ROWID;
