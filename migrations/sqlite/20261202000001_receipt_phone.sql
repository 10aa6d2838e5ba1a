-- Where the fiscal receipt goes when the customer gave a phone rather than an e-mail address
-- (an SMS payment, or a portal user without one).
ALTER TABLE payments ADD COLUMN phone TEXT;
