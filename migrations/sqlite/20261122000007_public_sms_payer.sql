-- The anonymous pay page, the SMS flow and the payer's personal data (rule 8).
-- SQLite flavour: UUIDs are BLOBs, times RFC 3339 TEXT.

-- Each payment made through the public page or API, with who asked: the abuse limits count these.
CREATE TABLE public_attempts (
    payment_id      BLOB PRIMARY KEY REFERENCES payments (id),
    client_ip       TEXT NOT NULL,
    supplier_id     TEXT NOT NULL,
    account_number  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    -- Set when the payment fails: the per-address limit counts these.
    declined_at     TEXT
);
CREATE INDEX public_attempts_account ON public_attempts (supplier_id, account_number, created_at);
CREATE INDEX public_attempts_declines ON public_attempts (client_ip, declined_at);

-- Passport data of a budget payment, sealed like tokens (payment id as associated data). The
-- purge worker deletes the ciphertext once the payment is final and the retention has passed;
-- the row stays to show that it existed and when it went.
CREATE TABLE payer_data (
    payment_id           BLOB PRIMARY KEY REFERENCES payments (id),
    key_id               TEXT,
    ciphertext           BLOB,
    -- SHA-256 of the secret in the address that takes the browser on to the acquirer.
    continue_token_hash  TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    purged_at            TEXT
);

-- A phone linked by the portal to one user; a phone belongs to at most one user.
CREATE TABLE sms_phones (
    user_id    TEXT PRIMARY KEY,
    phone      TEXT NOT NULL UNIQUE,
    linked_at  TEXT NOT NULL
);

-- Every inbound SMS, once (message_id), with the reply it got and what it counted as.
CREATE TABLE sms_messages (
    message_id      TEXT PRIMARY KEY,
    phone           TEXT NOT NULL,
    -- The calendar day in the SMS time zone, YYYY-MM-DD: the phone's limits count per day.
    local_day       TEXT NOT NULL,
    -- For a payment SMS, the day in the supplier's time zone: one payment per account a day.
    account_day     TEXT,
    -- help | help_repeated | malformed | blocked | refused | payment | aborted
    kind            TEXT NOT NULL,
    supplier_id     TEXT,
    account_number  TEXT,
    payment_id      BLOB,
    -- in_progress (charge running) | awaiting_result (answered "processing") | done
    state           TEXT NOT NULL,
    reply           TEXT NOT NULL,
    -- The outbound SMS sent through the outbox once an unknown outcome became final.
    late_reply      TEXT,
    received_at     TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX sms_messages_phone_day ON sms_messages (phone, local_day);
CREATE INDEX sms_messages_account_day ON sms_messages (account_number, account_day);
CREATE INDEX sms_messages_payment ON sms_messages (payment_id);
