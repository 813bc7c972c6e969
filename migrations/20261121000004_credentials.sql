-- Password hashes live here, not in events: the log is kept for ever and auditors read it, and a
-- hash is a secret. The event recording a registration or a password change is appended in the
-- same transaction as the row it writes here.
CREATE TABLE credentials (
    -- The user's stream id.
    user_id       uuid PRIMARY KEY,
    -- PHC-format argon2id hash.
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL
);

COMMENT ON TABLE credentials IS 'Current password hash per user (argon2id); never exposed by the API.';

-- Databases from before this table kept hashes in the payloads of user events: carry the latest
-- one over. (Those events stay as they are; history is never rewritten.)
INSERT INTO credentials (user_id, password_hash, updated_at)
SELECT DISTINCT ON (stream_id) stream_id, payload->>'password_hash', recorded_at
FROM events
WHERE stream_type = 'user'
  AND event_type IN ('UserRegistered', 'PasswordChanged')
  AND payload ? 'password_hash'
ORDER BY stream_id, version DESC;
