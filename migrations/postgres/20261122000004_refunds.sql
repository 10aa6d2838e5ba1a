-- Refunds (DESIGN rule 13). The sum of pending, awaiting and succeeded refunds of a payment never
-- exceeds what was paid: the amount is reserved under a lock on the payment row.
CREATE TABLE refunds (
    id                  UUID PRIMARY KEY,
    payment_id          UUID NOT NULL REFERENCES payments (id),
    amount_minor        BIGINT NOT NULL CHECK (amount_minor > 0),
    -- pending: sent (or being sent) to the acquirer; awaiting_acquirer: to be done in the
    -- acquirer's cabinet (NetPay) and reported by its notification; succeeded; failed (frees
    -- the amount again).
    status              TEXT NOT NULL CHECK (status IN ('pending', 'awaiting_acquirer', 'succeeded', 'failed')),
    reason              TEXT NOT NULL,
    operator            TEXT NOT NULL,
    client_id           UUID REFERENCES api_clients (id),
    acquirer_refund_id  TEXT,
    failure_code        TEXT,
    failure_message     TEXT,
    -- When to ask the acquirer again about a pending refund.
    next_check_at       TIMESTAMPTZ,
    check_attempts      INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id, status);
CREATE INDEX refunds_operator_day ON refunds (operator, created_at);
