-- The acquirer's own id of the paid operation (Moneta's MNT_OPERATION_ID): refunds and
-- details are asked for by it.
ALTER TABLE payments ADD COLUMN acquirer_operation_id TEXT;
