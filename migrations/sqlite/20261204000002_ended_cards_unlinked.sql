-- no-transaction
-- A deleted or revoked card keeps no usable handle. For Robokassa the recurring token is the
-- binding payment's own invoice number, so the tombstone must not lead to that payment: the link
-- is cut, the binding payment no longer says a card was to be saved from it, and the card's
-- `bound` event forgets the payment. The payment itself stays, as the books require.
--
-- SQLite cannot drop NOT NULL in place: the table is rebuilt (SQLite's documented twelve steps),
-- with foreign keys off for this connection, in one transaction of its own. Every step can run
-- again after a crash between COMMIT and the migration's bookkeeping.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
UPDATE payments SET save_card = 0
WHERE id IN (SELECT binding_payment_id FROM saved_cards WHERE status <> 'active');
UPDATE card_events SET payment_id = NULL
WHERE event = 'bound' AND card_id IN (SELECT id FROM saved_cards WHERE status <> 'active');
DROP TABLE IF EXISTS saved_cards_rebuilt;
CREATE TABLE saved_cards_rebuilt (
    id                  BLOB PRIMARY KEY,
    user_id             TEXT NOT NULL,
    payment_type        TEXT NOT NULL,
    acquirer            TEXT NOT NULL,
    -- The new-card payment that bound it; one card per binding payment. NULL once the card
    -- ended: the tombstone leads to no payment (for Robokassa that payment is the token).
    binding_payment_id  BLOB UNIQUE REFERENCES payments (id),
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
    client_id           BLOB,
    CHECK ((status = 'active') = (token_ciphertext IS NOT NULL)),
    CHECK (status = 'active' OR binding_payment_id IS NULL)
);
INSERT INTO saved_cards_rebuilt (id, user_id, payment_type, acquirer, binding_payment_id, key_id,
    token_ciphertext, brand, last4, exp_month, exp_year, status, created_at, last_used_at,
    ended_at, client_id)
SELECT id, user_id, payment_type, acquirer,
    CASE WHEN status = 'active' THEN binding_payment_id END, key_id, token_ciphertext, brand,
    last4, exp_month, exp_year, status, created_at, last_used_at, ended_at, client_id
FROM saved_cards;
DROP TABLE saved_cards;
ALTER TABLE saved_cards_rebuilt RENAME TO saved_cards;
CREATE INDEX saved_cards_user ON saved_cards (user_id, status);
CREATE INDEX saved_cards_owner ON saved_cards (client_id, user_id, status);
COMMIT;
PRAGMA foreign_keys = ON;
