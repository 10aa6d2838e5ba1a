-- Whether an event still waits for its webhook deliveries to be queued. Every pass of the webhook
-- worker queues the events that wait and clears the flag in the same transaction, through the
-- partial index, which holds only those: a pass costs what was written since the last one, at
-- any size of the outbox, and an event whose transaction commits late is found all the same.
-- The store's every outbox INSERT sets it; rows from before (already queued, or queued by the
-- full pass every process makes at its start) keep the default.
ALTER TABLE outbox ADD COLUMN awaiting_queue BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX outbox_awaiting_queue ON outbox (id) WHERE awaiting_queue;
