-- Login sessions: the bearer tokens handed out by POST /auth/login. Operational state, not
-- history: the logins, failures, lockouts and role changes themselves are events on the user's
-- stream. Only a hash of each token is kept, so a copy of this table logs nobody in.
CREATE TABLE sessions (
    -- BLAKE2b-512 of the token.
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    -- 24 hours after login, 7 days with "remember me".
    expires_at  timestamptz NOT NULL,
    -- Set by logout, deactivation or a password change.
    revoked_at  timestamptz
);

CREATE INDEX sessions_by_user ON sessions (user_id) WHERE revoked_at IS NULL;

COMMENT ON TABLE sessions IS 'Bearer-token sessions (hashed tokens), with expiry and revocation.';
