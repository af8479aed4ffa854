-- The queue's statistics per project (`GET /api/v1/evaluators`, the UI) counted jobs by state
-- through `eval_jobs_ready`, looking up every job's row for its project; this index answers the
-- counts from its own entries and the oldest due job with one seek.
CREATE INDEX eval_jobs_by_project ON eval_jobs (project_id, state, not_before_ns);
