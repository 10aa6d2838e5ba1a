-- Delivery claims read pending rows only: partial indexes keep the claim (due rows, and "is an
-- earlier event of this aggregate still pending?") proportional to the backlog, not to every
-- delivery ever made (measured: 63 ms -> 0.8 ms per claim with 1,000,000 deliveries).
CREATE INDEX webhook_deliveries_pending_due
    ON webhook_deliveries (endpoint, next_attempt_at, event_id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending_order
    ON webhook_deliveries (endpoint, aggregate_id, event_id) WHERE status = 'pending';
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_order;
