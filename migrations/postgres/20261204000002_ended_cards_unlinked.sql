-- A deleted or revoked card keeps no usable handle. For Robokassa the recurring token is the
-- binding payment's own invoice number, so the tombstone must not lead to that payment: the link
-- is cut, the binding payment no longer says a card was to be saved from it, and the card's
-- `bound` event forgets the payment. The payment itself stays, as the books require.
ALTER TABLE saved_cards ALTER COLUMN binding_payment_id DROP NOT NULL;
UPDATE payments SET save_card = false
WHERE id IN (SELECT binding_payment_id FROM saved_cards WHERE status <> 'active');
UPDATE card_events SET payment_id = NULL
WHERE event = 'bound' AND card_id IN (SELECT id FROM saved_cards WHERE status <> 'active');
UPDATE saved_cards SET binding_payment_id = NULL WHERE status <> 'active';
ALTER TABLE saved_cards ADD CONSTRAINT saved_cards_ended_unlinked
    CHECK (status = 'active' OR binding_payment_id IS NULL);
