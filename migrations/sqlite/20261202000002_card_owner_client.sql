-- A saved card belongs to a user of one API client (portal), as its payments do: another client
-- must not see, charge or delete it. Existing cards take the client of their binding payment.
ALTER TABLE saved_cards ADD COLUMN client_id BLOB;
UPDATE saved_cards SET client_id = (
    SELECT p.client_id FROM payments p WHERE p.id = saved_cards.binding_payment_id
);
CREATE INDEX saved_cards_owner ON saved_cards (client_id, user_id, status);

-- The portal client that linked a phone: SMS payments use that client's cards and history.
-- NULL for links made before this column existed.
ALTER TABLE sms_phones ADD COLUMN client_id BLOB;
