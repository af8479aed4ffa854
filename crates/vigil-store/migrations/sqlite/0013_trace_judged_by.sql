-- The evaluators that judged every chunk of a trace at ingest, when all its chunks carry the same
-- list (`span_chunks.judged_by`, migration 0010); NULL when they differ, when none judged them, and
-- for traces written before this column. The evaluation queue skips a settled trace for an evaluator
-- found here without reading its chunks; on NULL it reads them as before. Looking at every chunk of
-- every new trace, for every evaluator, every round, was a sixth of the writer's work with rules
-- judging at ingest.
ALTER TABLE traces ADD COLUMN judged_by TEXT;
