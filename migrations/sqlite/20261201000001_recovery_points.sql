-- Recovery points: what an Idempotency-Key created, and deadlines for outcomes nobody answered.

-- The id of the payment or refund a key creates, chosen when the key is first claimed. A retry
-- after the first holder died finds the resource under this id and resumes it from where it
-- stopped; it never creates a second one.
ALTER TABLE idempotency_keys ADD COLUMN resource_id BLOB;

-- When the payment was last sent to the acquirer for an outcome (a saved-card charge, a 3-D
-- Secure completion). "The acquirer has no such operation" counts as "it never happened" only
-- some time after this moment.
ALTER TABLE payments ADD COLUMN submitted_at TEXT;

-- Why a refund waits for a person (its outcome could not be learned), and how a person settled
-- it. The desk's review list shows refunds with a reason and no resolution.
ALTER TABLE refunds ADD COLUMN review_reason TEXT;
ALTER TABLE refunds ADD COLUMN resolved_by TEXT;
ALTER TABLE refunds ADD COLUMN resolution_note TEXT;
CREATE INDEX refunds_review ON refunds (updated_at) WHERE review_reason IS NOT NULL;
CREATE INDEX refunds_due ON refunds (next_check_at) WHERE status = 'pending';
