-- Order numbers come from one sequence instead of a counter row per acquirer: every creation
-- used to update that row, so concurrent creations queued behind its lock. Gaps are fine for
-- every acquirer, and numbers unique overall are unique per acquirer.
--
-- The sequence starts 1,000,000 past the highest number handed out so far: replicas still
-- running the previous version during a rolling deploy keep counting in the old row, and
-- cannot reach the numbers the new ones take. (`acquirer_sequences` stays for them, unused
-- afterwards.)
CREATE SEQUENCE payment_order_numbers AS BIGINT;
SELECT setval(
    'payment_order_numbers',
    COALESCE((SELECT MAX(last_value) FROM acquirer_sequences) + 1000000, 1),
    EXISTS (SELECT 1 FROM acquirer_sequences)
);
