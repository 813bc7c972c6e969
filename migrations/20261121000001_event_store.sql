-- The event store: the only source of truth. Everything else is derived from these rows.

-- One row per event, never updated or deleted (see the triggers below).
CREATE TABLE events (
    -- Global position, handed out at insert time. Unique, but NOT the read order on its own:
    -- concurrent transactions commit out of order, so a lower position can become visible later.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction. Readers walk the log in (transaction_id, position) order and only
    -- below the oldest running transaction, where the order can no longer change (see cursor.rs).
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- The aggregate instance the event belongs to and its kind (renewal, task, ...).
    stream_id       uuid NOT NULL,
    stream_type     text NOT NULL,
    -- 1 for the stream's first event, consecutive after; the unit of optimistic concurrency.
    version         bigint NOT NULL CHECK (version > 0),
    event_type      text NOT NULL,
    -- Shape of the payload; old shapes are upcast when read, never rewritten.
    schema_version  integer NOT NULL CHECK (schema_version > 0),
    payload         jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    -- Who and why, for auditors.
    actor           text NOT NULL,
    command_id      uuid,
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- Two writers deciding from the same version both try version N+1: one of them loses here.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- The read order of the global log.
CREATE INDEX events_read_order ON events (transaction_id, position);

COMMENT ON TABLE events IS 'The append-only event log: every change to every aggregate, in order.';
COMMENT ON COLUMN events.position IS 'Global position assigned at insert; unique, not the read order by itself.';
COMMENT ON COLUMN events.transaction_id IS 'Writing transaction id; the log is read in (transaction_id, position) order.';
COMMENT ON COLUMN events.version IS 'Position of the event within its stream, from 1.';

-- Idempotent commands: a command id is recorded with the result of its first execution, in the
-- same transaction as its events. A resend finds it here and gets the same answer.
CREATE TABLE command_log (
    command_id      uuid PRIMARY KEY,
    stream_id       uuid NOT NULL,
    stream_type     text NOT NULL,
    -- The command as first received: a different command under the same id is refused.
    command         jsonb NOT NULL,
    -- The stream versions the command appended (NULL when it decided that nothing happens).
    first_version   bigint,
    last_version    bigint,
    -- Read-order cursor of its last event.
    last_transaction_id xid8,
    last_position   bigint,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE command_log IS 'First result of every command that carried an id; makes resends idempotent.';

-- History cannot be rewritten, whoever asks: these triggers refuse UPDATE, DELETE and TRUNCATE.
-- ENABLE ALWAYS keeps them firing even under session_replication_role = replica.
CREATE FUNCTION refuse_history_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Events are never changed; append a compensating event instead.';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;

CREATE TRIGGER command_log_append_only
    BEFORE UPDATE OR DELETE ON command_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
CREATE TRIGGER command_log_no_truncate
    BEFORE TRUNCATE ON command_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite();
ALTER TABLE command_log ENABLE ALWAYS TRIGGER command_log_append_only;
ALTER TABLE command_log ENABLE ALWAYS TRIGGER command_log_no_truncate;
