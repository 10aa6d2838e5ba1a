-- The least a payment lifecycle must write, on oplata's own schema, for pgbench: one
-- transaction creates the payment with its audit and outbox rows (its order number from the
-- sequence), a second settles it with its audit and outbox rows. The benchmark compares
-- oplata's lifecycles per second with this.
BEGIN;
INSERT INTO payments (id, supplier_id, account_number, amount_minor, currency, description, acquirer, acquirer_order_id, status, created_at, updated_at) VALUES (gen_random_uuid(), 'demo-electro', '1234567890', 150000, 'RUB', 'pgbench', 'robokassa', nextval('payment_order_numbers')::text, 'requires_action', now(), now()) RETURNING id AS pid \gset
INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) VALUES (gen_random_uuid(), ':pid'::uuid, NULL, 'requires_action', 'pgbench', 'payment created', now());
INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) VALUES (gen_random_uuid(), ':pid'::uuid, 'payment.created', '{"type":"payment.created"}', now());
COMMIT;
BEGIN;
SELECT status FROM payments WHERE id = ':pid'::uuid FOR UPDATE;
UPDATE payments SET status = 'succeeded', updated_at = now() WHERE id = ':pid'::uuid;
INSERT INTO payment_audit (id, payment_id, from_status, to_status, actor, reason, created_at) VALUES (gen_random_uuid(), ':pid'::uuid, 'requires_action', 'succeeded', 'pgbench', 'paid', now());
INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) VALUES (gen_random_uuid(), ':pid'::uuid, 'payment.succeeded', '{"type":"payment.succeeded"}', now());
COMMIT;
