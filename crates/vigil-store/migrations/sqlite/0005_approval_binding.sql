-- An approval covers one exact call: a keyed hash of (tool, canonical arguments, policy version),
-- checked when the agent redeems it, which it may do once.
ALTER TABLE approvals ADD COLUMN call_hash TEXT;
ALTER TABLE approvals ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN consumed_ns INTEGER;
