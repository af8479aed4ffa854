-- A new trace's row is written at once, but its entries in the indexes over random keys (session,
-- user, cost, duration) are written later, for many traces in one transaction (deferred indexes).
-- Written one trace at a time, each new trace dirtied a leaf page of each of those indexes per
-- commit, and under sustained ingest that was most of what the writer wrote to the WAL; indexed
-- together, each leaf page is written once per batch. Until then a row has `indexed = 0` and is
-- found through `traces_unindexed`, a small index that only grows at its end. Readers that filter
-- or sort by one of the deferred indexes read both sides (see `read::traces_where`). The indexes over
-- keys that arrive in order (time) or that must be unique (trace id) stay as they were.
ALTER TABLE traces ADD COLUMN indexed INTEGER NOT NULL DEFAULT 1;

DROP INDEX traces_by_session;
DROP INDEX traces_by_user;
DROP INDEX traces_by_cost;
DROP INDEX traces_by_duration;
CREATE INDEX traces_by_session ON traces (project_id, session_id, start_ns) WHERE session_id IS NOT NULL AND indexed = 1;
CREATE INDEX traces_by_user ON traces (project_id, user_id, start_ns) WHERE user_id IS NOT NULL AND indexed = 1;
CREATE INDEX traces_by_cost ON traces (project_id, COALESCE(cost_usd, -1.0)) WHERE indexed = 1;
CREATE INDEX traces_by_duration ON traces (project_id, duration_ms) WHERE indexed = 1;
CREATE INDEX traces_unindexed ON traces (project_id) WHERE indexed = 0;
