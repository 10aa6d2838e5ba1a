-- Delivery of outbox events to each configured webhook endpoint: at least once, in order per
-- payment (an earlier undelivered event of the same aggregate holds the later ones back),
-- retried with backoff, dead-lettered after the retry window.
CREATE TABLE webhook_deliveries (
    event_id         UUID NOT NULL REFERENCES outbox (id),
    endpoint         TEXT NOT NULL,
    aggregate_id     UUID NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    delivered_at     TIMESTAMPTZ,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint, status, next_attempt_at);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint, aggregate_id, event_id);
