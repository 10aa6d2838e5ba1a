-- The audit trail and the review list store a code with its facts (JSON) beside the English
-- sentence, so that pages can say it in Russian. Rows written before have none: pages fall back
-- to the English sentence.
ALTER TABLE payment_audit ADD COLUMN detail TEXT;
ALTER TABLE payments ADD COLUMN review_detail TEXT;
ALTER TABLE refunds ADD COLUMN review_detail TEXT;
