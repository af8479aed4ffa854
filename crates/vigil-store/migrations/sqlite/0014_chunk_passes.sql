-- Passing span verdicts given at ingest are stored with the spans they judge instead of as rows of
-- `scores` (see `sqlite/passes.rs`): a span-scoped rule passes most spans, and a row per passing
-- verdict, with the three indexes of `scores`, was most of what judging at ingest cost the writer.
-- `span_chunks.passes`: the chunk's passing verdicts, one compressed blob per chunk.
-- `traces.passed_by`: the names of the evaluators with a passing verdict in any of the trace's
-- chunks, newline-separated, so that failure rates count the sessions those evaluators judged and
-- the latest scores by name find them without reading every chunk.
ALTER TABLE span_chunks ADD COLUMN passes BLOB;
ALTER TABLE traces ADD COLUMN passed_by TEXT;
