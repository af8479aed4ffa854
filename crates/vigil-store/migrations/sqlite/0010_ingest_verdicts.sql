-- Evaluators that judged every span of a chunk as it was ingested, as comma-separated
-- `evaluator_id@definition_version`. The evaluation queue skips a settled trace whose chunks an
-- evaluator has all judged with its current definition.
ALTER TABLE span_chunks ADD COLUMN judged_by TEXT;
