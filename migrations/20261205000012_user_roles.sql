-- Who can administer, on the write side: each user's role and whether they are active. Every
-- event that sets either (UserRegistered, RoleChanged, UserDeactivated, UserReactivated) is
-- appended in the same transaction as the row it writes here, so a command can count the active
-- admins without folding every user's stream, and refuse to take away the last one. Not a read
-- model: nothing projects it, and the commands that change it hold one advisory lock while they
-- count and write (commands/src/users/mod.rs).
CREATE TABLE user_roles (
    -- The user's stream id.
    user_id uuid PRIMARY KEY,
    role    text NOT NULL,
    active  boolean NOT NULL
);

COMMENT ON TABLE user_roles IS 'Write side: each user''s role and whether they are active, kept in the append''s transaction.';

-- The users registered before this table, from their events: the latest role, and active unless
-- the latest deactivation or reactivation was a deactivation.
WITH roles AS (
    SELECT DISTINCT ON (stream_id) stream_id, COALESCE(payload->>'to', payload->>'role') AS role
    FROM events
    WHERE stream_type = 'user' AND event_type IN ('UserRegistered', 'RoleChanged')
    ORDER BY stream_id, version DESC
), status AS (
    SELECT DISTINCT ON (stream_id) stream_id, event_type = 'UserDeactivated' AS deactivated
    FROM events
    WHERE stream_type = 'user' AND event_type IN ('UserDeactivated', 'UserReactivated')
    ORDER BY stream_id, version DESC
)
INSERT INTO user_roles (user_id, role, active)
SELECT roles.stream_id, roles.role, NOT COALESCE(status.deactivated, false)
FROM roles LEFT JOIN status USING (stream_id);

-- The server keeps these rows in its transactions: the same grants as every write-side table.
SELECT caseledger_secure();
