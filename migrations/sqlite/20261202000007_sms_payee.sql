-- Who an accepted payment SMS pays, and with which card, for its reply ("Демо-Энергосбыт, карта *4242").
ALTER TABLE sms_messages ADD COLUMN payee TEXT;
