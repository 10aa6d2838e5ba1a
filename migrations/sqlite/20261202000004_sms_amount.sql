-- The amount of an accepted payment SMS: the phone's daily amount cap sums these.
ALTER TABLE sms_messages ADD COLUMN amount_minor BIGINT;
