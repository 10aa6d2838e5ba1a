-- The desk finds payments by e-mail (without case), phone, amount and the saved card's last four
-- digits; each through an index, so the search stays flat as payments accumulate.
CREATE INDEX payments_email ON payments (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX payments_phone ON payments (phone) WHERE phone IS NOT NULL;
CREATE INDEX payments_amount_created ON payments (amount_minor, created_at);
CREATE INDEX payments_saved_card ON payments (saved_card_id) WHERE saved_card_id IS NOT NULL;
CREATE INDEX saved_cards_last4 ON saved_cards (last4);
