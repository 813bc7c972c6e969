-- Least privilege: who may do what to the log.
--
-- The append-only triggers stop an UPDATE, but not whoever owns the table: an owner (or a
-- superuser) can DISABLE TRIGGER, DROP TRIGGER or DROP TABLE and then rewrite history. So the
-- server must not connect as the owner. Four roles, shared by every database of the cluster:
--
-- - caseledger_owner (NOLOGIN) owns the log and every write-side table. Nobody logs in as it;
--   the bootstrap (admin) connection applies migrations and then hands their objects to it.
-- - caseledger_app (LOGIN) is what the server connects as: INSERT and SELECT on the append-only
--   tables, full DML on the write-side tables it keeps in the append's transaction, and its own
--   read-model tables (it creates, rebuilds and swaps them). It owns nothing of the log, so
--   ALTER, DISABLE TRIGGER, DROP, UPDATE, DELETE and TRUNCATE on it are refused by grants, not
--   only by triggers.
-- - caseledger_auditor (NOLOGIN) reads the log, its seals and the read models: grant it to
--   auditors' login roles.
-- - caseledger_analyst (NOLOGIN, made in 20261121000002) reads read models only.
--
-- caseledger_secure() does all of it and is idempotent: it runs here once, and the bootstrap
-- calls it again after every migration run, so tables added by later migrations are handed over
-- and granted the same way without each migration repeating the rules.

CREATE OR REPLACE FUNCTION caseledger_secure() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    role_name text;
    obj record;
BEGIN
    -- Two servers starting together would otherwise collide on the catalogue rows GRANT rewrites.
    PERFORM pg_advisory_xact_lock(x'CA5E5EC0'::bigint);
    -- Roles are shared by every database of the server, so another database (another test, or
    -- a second install) may be making them at this very moment: a collision means it exists.
    FOREACH role_name IN ARRAY ARRAY['caseledger_owner', 'caseledger_app', 'caseledger_auditor'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', role_name,
                               CASE WHEN role_name = 'caseledger_app' THEN 'LOGIN' ELSE 'NOLOGIN' END);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;

    -- The log and the write side belong to the owner. Identity sequences and indexes follow
    -- their table.
    FOR obj IN
        SELECT c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
          AND pg_get_userbyid(c.relowner) <> 'caseledger_owner'
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO caseledger_owner', obj.name);
    END LOOP;
    FOR obj IN
        SELECT p.oid::regprocedure AS name
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'caseledger_owner'
          AND p.proname <> 'caseledger_secure'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO caseledger_owner', obj.name);
    END LOOP;

    -- The server keeps the read models: it creates, replaces and drops their tables, so it owns
    -- them (they are derived, and can always be rebuilt from the log).
    FOR obj IN
        SELECT c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'read_models' AND c.relkind IN ('r', 'p')
          AND pg_get_userbyid(c.relowner) <> 'caseledger_app'
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO caseledger_app', obj.name);
    END LOOP;

    -- What the server may do. Only what a table needs: the append-only tables (those guarded by
    -- refuse_history_rewrite) get INSERT and SELECT, nothing else.
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM caseledger_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO caseledger_app;
    FOR obj IN
        SELECT DISTINCT t.tgrelid::regclass AS name
        FROM pg_trigger t
        WHERE t.tgfoid = 'refuse_history_rewrite'::regproc
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE ON %s FROM caseledger_app', obj.name);
        -- Auditors read the log (and nothing else outside the read models).
        EXECUTE format('GRANT SELECT ON %s TO caseledger_auditor', obj.name);
    END LOOP;
    -- The migration history is the bootstrap's business; the server only checks it is current.
    REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM caseledger_app;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO caseledger_app;
    GRANT USAGE, CREATE ON SCHEMA read_models TO caseledger_app;
    -- Rebuilds replay into a scratch schema of their own before swapping tables in.
    EXECUTE format('GRANT CREATE ON DATABASE %I TO caseledger_app', current_database());
    -- Tables the server makes in read_models are readable by analysts and auditors.
    ALTER DEFAULT PRIVILEGES FOR ROLE caseledger_app IN SCHEMA read_models
        GRANT SELECT ON TABLES TO caseledger_analyst, caseledger_auditor;

    -- Auditors read the read models too; no writes anywhere.
    GRANT USAGE ON SCHEMA read_models TO caseledger_auditor;
    GRANT SELECT ON ALL TABLES IN SCHEMA read_models TO caseledger_auditor;
END;
$$;

COMMENT ON FUNCTION caseledger_secure() IS
    'Creates the Caseledger roles if missing, hands the schema to caseledger_owner and grants the server (caseledger_app) only what it needs. Idempotent; the bootstrap runs it after every migration run.';

REVOKE EXECUTE ON FUNCTION caseledger_secure() FROM PUBLIC;

SELECT caseledger_secure();
