-- Evaluators (ids, comma-separated) that judged every span of a chunk as it was ingested. The
-- evaluation queue skips a trace whose chunks an evaluator has all judged already.
ALTER TABLE span_chunks ADD COLUMN judged_by TEXT;
