-- The desk's second factor (RFC 6238 TOTP): the shared secret sealed by the vault like a card
-- token, and the last time step accepted, so that a code is accepted once (RFC 6238, 5.2).
ALTER TABLE operators ADD COLUMN totp_key_id TEXT;
ALTER TABLE operators ADD COLUMN totp_secret BYTEA;
ALTER TABLE operators ADD COLUMN totp_last_step BIGINT;
ALTER TABLE operators ADD CONSTRAINT operators_totp_sealed
    CHECK ((totp_key_id IS NULL) = (totp_secret IS NULL));
