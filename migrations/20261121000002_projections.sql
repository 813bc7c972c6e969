-- Projections: where each read model stands in the log, and the schema analysts read.

-- Read models live apart from the event store, in a schema analysts may read and nothing else.
-- Their tables are created by the projections themselves (see projections/src), so that a rebuild
-- can create identical fresh tables and swap them in.
CREATE SCHEMA read_models;
COMMENT ON SCHEMA read_models IS 'Read models built from the event log by projections; read-only for analysts.';

-- One row per projection: the last event it applied (in log read order), written in the same
-- transaction as the read-model rows that event produced.
CREATE TABLE projection_checkpoints (
    name                text PRIMARY KEY,
    -- Cursor of the last event applied: (transaction_id, position), as in events.
    transaction_id      xid8 NOT NULL DEFAULT '0',
    position            bigint NOT NULL DEFAULT 0,
    -- When the checkpoint last moved.
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The failure the projection is stuck on, if any: what, on which event, since when.
    last_error          text,
    last_error_position bigint,
    failing_since       timestamptz,
    -- Set while a rebuild of this projection runs (cleared by the swap).
    rebuild_started_at  timestamptz
);

COMMENT ON TABLE projection_checkpoints IS 'Per projection: the last event applied to its read model, and its last failure.';

-- The analysts' role: SELECT on read models, nothing else (no access to events or checkpoints).
-- Roles are shared by every database of the server, so another database may have made it already.
DO $$
BEGIN
    CREATE ROLE caseledger_analyst NOLOGIN;
    -- Commented only by its creator: concurrent comments on a shared object collide.
    COMMENT ON ROLE caseledger_analyst IS 'Read-only access to Caseledger read models; grant it to analysts'' login roles.';
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA read_models TO caseledger_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA read_models GRANT SELECT ON TABLES TO caseledger_analyst;
