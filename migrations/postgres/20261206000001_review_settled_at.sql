-- When a person last settled this payment's review item, or one of its refunds': the review page
-- lists the items settled lately (through the partial index, which holds only settled payments),
-- so a settled item leaves the open list and can still be found.
ALTER TABLE payments ADD COLUMN review_settled_at TIMESTAMPTZ;
CREATE INDEX payments_review_settled ON payments (review_settled_at) WHERE review_settled_at IS NOT NULL;
