-- Gateway virtual keys: issued per team, user or app, stored only as SHA-256 hashes.
CREATE TABLE gateway_keys (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects(id),
    key_hash        BLOB NOT NULL UNIQUE,
    display         TEXT NOT NULL,
    name            TEXT NOT NULL,
    team            TEXT,
    user_id         TEXT,
    models          TEXT NOT NULL,      -- JSON array of allowed model names; empty = every model
    rpm             INTEGER,
    tpm             INTEGER,
    budget_usd      REAL,
    budget_period   TEXT NOT NULL,      -- 'total' or 'month' (UTC calendar month)
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);

-- Spend per (scope, subject, period), e.g. ('key', 'gk_…', '2026-11') or ('team', 'support', 'total').
CREATE TABLE gateway_spend (
    project_id  TEXT NOT NULL,
    scope       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    period      TEXT NOT NULL,
    cost_usd    REAL NOT NULL,
    PRIMARY KEY (project_id, scope, subject, period)
) WITHOUT ROWID;

-- Things later alerts can act on: budget thresholds crossed (50/80/100 %).
CREATE TABLE gateway_events (
    id          INTEGER PRIMARY KEY,
    project_id  TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX gateway_events_by_time ON gateway_events (project_id, time_ns);
