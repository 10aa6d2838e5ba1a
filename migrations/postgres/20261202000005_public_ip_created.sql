-- The per-address cap on anonymous creations counts an address's attempts in the last hour.
CREATE INDEX public_attempts_ip_created ON public_attempts (client_ip, created_at);
