-- Sorting traces by cost or duration used indexes keyed by the exact value. Those keys are random
-- in arrival order, so every new trace dirtied a leaf page of each of them and every commit wrote
-- hundreds of such 8 KiB pages to the WAL (about a quarter of ingest's disk writes). These indexes
-- key by a coarse class instead: the value's number of decimal digits and its leading digit (cost
-- in nano-USD, duration in microseconds), so nine classes per decade. Within a class,
-- entries are in row order, so new traces append to the few classes in use. A query walks the
-- classes in order and sorts only within them (SQLite's "temp b-tree for right part of ORDER BY").
-- The expressions must stay identical to `COST_CLASS` and `DURATION_CLASS` in `sqlite/read.rs`.
DROP INDEX traces_by_cost;
DROP INDEX traces_by_duration;
CREATE INDEX traces_by_cost_class ON traces (project_id,
    (CASE WHEN cost_usd > 0 THEN length(CAST(CAST(cost_usd * 1e9 AS INTEGER) AS TEXT)) * 10 + CAST(substr(CAST(CAST(cost_usd * 1e9 AS INTEGER) AS TEXT), 1, 1) AS INTEGER) ELSE 0 END));
CREATE INDEX traces_by_duration_class ON traces (project_id,
    (CASE WHEN duration_ms > 0 THEN length(CAST(CAST(duration_ms * 1e3 AS INTEGER) AS TEXT)) * 10 + CAST(substr(CAST(CAST(duration_ms * 1e3 AS INTEGER) AS TEXT), 1, 1) AS INTEGER) ELSE 0 END));
