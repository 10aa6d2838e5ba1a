-- oplata's first schema. Money is integer minor units (kopecks); ids are UUIDv7; times are UTC.
-- SQLite flavour: UUIDs are 16-byte BLOBs, times are RFC 3339 TEXT in UTC.

-- Clients of the API: the portal's backend, the SMS gateway, the refunds desk, administrators.
-- Only a SHA-256 of each key is kept; the key itself is shown once, when it is created.
CREATE TABLE api_clients (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL CHECK (scope IN ('portal', 'sms', 'desk', 'admin')),
    key_hash    TEXT NOT NULL UNIQUE,
    -- The first characters of the key, so an operator can tell keys apart in a listing.
    key_prefix  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- Acquirers such as Robokassa want an integer order number unique per shop: one counter each.
CREATE TABLE acquirer_sequences (
    acquirer    TEXT PRIMARY KEY,
    last_value  INTEGER NOT NULL
);

CREATE TABLE payments (
    id                 BLOB PRIMARY KEY,
    -- NULL for payments from the public pay page, which has no API client.
    client_id          BLOB REFERENCES api_clients (id),
    user_id            TEXT,
    supplier_id        TEXT NOT NULL,
    account_number     TEXT NOT NULL,
    amount_minor       INTEGER NOT NULL CHECK (amount_minor > 0),
    currency           TEXT NOT NULL,
    description        TEXT NOT NULL,
    email              TEXT,
    return_url         TEXT,
    acquirer           TEXT NOT NULL,
    acquirer_order_id  TEXT NOT NULL,
    status             TEXT NOT NULL,
    -- JSON of where the browser must go while the payment is requires_action.
    next_action        TEXT,
    failure_code       TEXT,
    failure_message    TEXT,
    -- Set when something happened that a person must look at (e.g. money after a final failure).
    review_reason      TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CONSTRAINT payments_acquirer_order UNIQUE (acquirer, acquirer_order_id)
);
CREATE INDEX payments_client_created ON payments (client_id, created_at);
CREATE INDEX payments_account ON payments (supplier_id, account_number);

-- Every status change, written in the same transaction as the change itself.
CREATE TABLE payment_audit (
    id           BLOB PRIMARY KEY,
    payment_id   BLOB NOT NULL REFERENCES payments (id),
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX payment_audit_payment ON payment_audit (payment_id, id);

-- Events for the billing system, written with the change that caused them and delivered later.
CREATE TABLE outbox (
    id              BLOB PRIMARY KEY,
    aggregate_id    BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_aggregate ON outbox (aggregate_id, id);

-- Idempotency keys: the first response to a key is replayed for the same request.
CREATE TABLE idempotency_keys (
    client_id        BLOB NOT NULL,
    idem_key         TEXT NOT NULL,
    -- SHA-256 of the canonical request; the same key with another request is refused.
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    response_status  INTEGER,
    response_body    TEXT,
    created_at       TEXT NOT NULL,
    -- A request that died mid-way frees its key after this moment.
    locked_until     TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    PRIMARY KEY (client_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
