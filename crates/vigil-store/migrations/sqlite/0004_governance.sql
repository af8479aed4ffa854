-- Governance: the audit chain, its signed checkpoints, approvals, guardrail policies and
-- redaction counts.

-- Append-only hash chain, one per project. `entry_hash` is SHA-256 over a canonical encoding of
-- the row (seq, time, actor, action, subject, content_hash, prev_hash); `content` is the event as
-- JSON and may be erased (GDPR) while `content_hash` keeps the chain verifiable. `data_subject` is
-- the user the content is about, used only to find rows to erase; it is not part of the hash and
-- is cleared on erasure.
CREATE TABLE audit_log (
    project_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    time_ns       INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    content       TEXT,
    content_hash  TEXT NOT NULL,
    data_subject  TEXT,
    prev_hash     TEXT NOT NULL,
    entry_hash    TEXT NOT NULL,
    PRIMARY KEY (project_id, seq)
) WITHOUT ROWID;
CREATE INDEX audit_log_by_subject ON audit_log (project_id, data_subject) WHERE data_subject IS NOT NULL;
CREATE INDEX audit_log_by_time ON audit_log (project_id, time_ns);

-- Ed25519 signatures over (project, seq, entry_hash, time): a signed head of the chain.
CREATE TABLE audit_checkpoints (
    project_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    entry_hash  TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (project_id, seq)
) WITHOUT ROWID;

-- Tool calls waiting for (or decided by) a human.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL,
    trace_id        BLOB,
    parent_span_id  BLOB,
    span_id         BLOB NOT NULL,
    tool            TEXT NOT NULL,
    arguments       TEXT NOT NULL,
    agent           TEXT,
    environment     TEXT,
    session_id      TEXT,
    user_id         TEXT,
    rule            TEXT,
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,   -- pending | approved | denied | expired
    created_ns      INTEGER NOT NULL,
    expires_ns      INTEGER NOT NULL,
    decided_ns      INTEGER,
    decided_by      TEXT,
    comment         TEXT
);
CREATE INDEX approvals_by_status ON approvals (project_id, status, created_ns);
CREATE INDEX approvals_pending_expiry ON approvals (expires_ns) WHERE status = 'pending';

-- The current guardrail policy of each project (TOML source, validated before it is stored).
CREATE TABLE guard_policies (
    project_id  TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    source      TEXT NOT NULL,
    updated_ns  INTEGER NOT NULL
);

-- Values redacted before storage, per project, UTC day and detector.
CREATE TABLE redaction_counts (
    project_id  TEXT NOT NULL,
    day         TEXT NOT NULL,
    detector    TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (project_id, day, detector)
) WITHOUT ROWID;
