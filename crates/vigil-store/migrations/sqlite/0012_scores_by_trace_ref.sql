-- Scores are found by their trace's internal key (`traces.id`) rather than by its random trace id.
-- A new trace's key is the largest yet, so the scores given to its spans at ingest, or soon after
-- by the queue, append to the end of these indexes instead of dirtying a random leaf page each;
-- keyed by trace id, those two indexes were most of what scoring at ingest cost the writer.
-- A score whose trace is not stored yet (end-user feedback can arrive before the spans) has no
-- `trace_ref`; it is found by trace id through `scores_unlinked` and linked when the trace arrives.
ALTER TABLE scores ADD COLUMN trace_ref INTEGER;
UPDATE scores SET trace_ref = (SELECT t.id FROM traces t WHERE t.project_id = scores.project_id AND t.trace_id = scores.trace_id)
    WHERE trace_id IS NOT NULL;

DROP INDEX scores_by_trace;
DROP INDEX scores_once;
CREATE INDEX scores_by_trace_ref ON scores (trace_ref) WHERE trace_ref IS NOT NULL;
CREATE INDEX scores_unlinked ON scores (project_id, trace_id) WHERE trace_ref IS NULL;
-- An evaluator scores a target once (re-runs after a crash are ignored, not double counted).
CREATE UNIQUE INDEX scores_once ON scores (trace_ref, source_id, name, COALESCE(span_id, x''))
    WHERE source = 'evaluator';
