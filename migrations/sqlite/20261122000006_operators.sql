-- Operators of the refunds desk: argon2 password hashes, browser sessions, login attempts.
CREATE TABLE operators (
    id             BLOB PRIMARY KEY,
    login          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    disabled_at    TEXT
);

-- A session is known by the SHA-256 of its cookie; the CSRF token is bound to it.
CREATE TABLE operator_sessions (
    token_hash   TEXT PRIMARY KEY,
    operator_id  BLOB NOT NULL REFERENCES operators (id),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);

-- Failed logins, to slow down guessing (per login).
CREATE TABLE login_failures (
    id         BLOB PRIMARY KEY,
    login      TEXT NOT NULL,
    failed_at  TEXT NOT NULL
);
CREATE INDEX login_failures_login ON login_failures (login, failed_at);
