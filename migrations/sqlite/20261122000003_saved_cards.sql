-- Saved cards: the acquirer's recurring token (sealed), and what may be shown of the card.
-- SQLite flavour: UUIDs are BLOBs, times RFC 3339 TEXT, booleans INTEGER.
-- A card is bound to one user, one payment type and one acquirer (DESIGN rules 1, 2).
CREATE TABLE saved_cards (
    id                  BLOB PRIMARY KEY,
    user_id             TEXT NOT NULL,
    payment_type        TEXT NOT NULL,
    acquirer            TEXT NOT NULL,
    -- The new-card payment that bound it; one card per binding payment.
    binding_payment_id  BLOB NOT NULL UNIQUE REFERENCES payments (id),
    -- NULL once deleted or revoked: the token is crypto-shredded, the row stays as a tombstone.
    key_id              TEXT,
    token_ciphertext    BLOB,
    brand               TEXT NOT NULL,
    last4               TEXT NOT NULL,
    -- NULL where the acquirer does not report the expiry (Robokassa).
    exp_month           INTEGER,
    exp_year            INTEGER,
    status              TEXT NOT NULL CHECK (status IN ('active', 'deleted', 'revoked')),
    created_at          TEXT NOT NULL,
    last_used_at        TEXT,
    ended_at            TEXT,
    CHECK ((status = 'active') = (token_ciphertext IS NOT NULL))
);
CREATE INDEX saved_cards_user ON saved_cards (user_id, status);

-- Every binding, use, deletion and revocation, with who asked.
CREATE TABLE card_events (
    id          BLOB PRIMARY KEY,
    card_id     BLOB NOT NULL REFERENCES saved_cards (id),
    user_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    payment_id  BLOB,
    detail      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX card_events_card ON card_events (card_id, id);

-- How a payment is paid: full card entry ('new_card') or a saved card.
ALTER TABLE payments ADD COLUMN payment_method TEXT NOT NULL DEFAULT 'new_card';
ALTER TABLE payments ADD COLUMN saved_card_id BLOB REFERENCES saved_cards (id);
ALTER TABLE payments ADD COLUMN save_card INTEGER NOT NULL DEFAULT 0;
-- When the reconciliation worker should next ask the acquirer, and how often it has asked.
ALTER TABLE payments ADD COLUMN next_check_at TEXT;
ALTER TABLE payments ADD COLUMN check_attempts INTEGER NOT NULL DEFAULT 0;
-- A payment waiting for the customer past this moment is abandoned.
ALTER TABLE payments ADD COLUMN action_deadline TEXT;
CREATE INDEX payments_due ON payments (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX payments_user_supplier ON payments (user_id, supplier_id, status);
