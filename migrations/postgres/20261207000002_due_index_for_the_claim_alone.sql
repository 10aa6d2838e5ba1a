-- A claim asks, for each due delivery, for the first pending event of the same payment
-- (`endpoint, aggregate_id`, the pending-order index). With statistics that hold the pending
-- set small (a table never analyzed, or a backlog grown since the last analyze, which is when a
-- drain matters) the planner was seen answering that lookup from the pending-due index instead,
-- found by endpoint alone, filtering every pending delivery for each candidate: 0.5-2.5 s a
-- claim, a drain of 23,000 events at 421-474 a second. The due index now also requires
-- `next_attempt_at IS NOT NULL` (always true: the column is NOT NULL). The claim's own
-- `next_attempt_at <= $2` implies it, so the claim still reads due rows from it in order; the
-- first-event lookup does not, so the planner cannot take it there.
DROP INDEX webhook_deliveries_pending_due;
CREATE INDEX webhook_deliveries_pending_due
    ON webhook_deliveries (endpoint, next_attempt_at, event_id)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;
