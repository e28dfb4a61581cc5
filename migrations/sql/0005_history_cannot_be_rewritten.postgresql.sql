-- The runtime role (issue 19). The role that runs `stripe-ledger migrate` owns the schema and the
-- event store; the workers (ingest's consumer, project) log in as members of ledger_runtime,
-- which may read and append events and nothing more: no UPDATE, DELETE or TRUNCATE, and, not
-- being the owner, no ALTER TABLE (so no DISABLE TRIGGER) and no DROP. Give a worker its login:
--   CREATE ROLE ledger_worker LOGIN PASSWORD '...' IN ROLE ledger_runtime;
-- (scripts/services.sh and docker-compose.yml do). Roles are cluster-wide: two databases
-- migrating at once may both try to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_runtime') THEN
        CREATE ROLE ledger_runtime NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'no CREATEROLE privilege: create the role ledger_runtime by hand';
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_runtime') THEN
        GRANT USAGE ON SCHEMA public TO ledger_runtime;
        GRANT SELECT ON alembic_version TO ledger_runtime;
        GRANT SELECT, INSERT ON events TO ledger_runtime;
        GRANT SELECT, INSERT ON dead_letters TO ledger_runtime;
        GRANT SELECT, INSERT, UPDATE ON kafka_offsets TO ledger_runtime;
        GRANT SELECT, INSERT, UPDATE ON balance_sync_cursors TO ledger_runtime;
        GRANT SELECT, INSERT, UPDATE, DELETE
            ON projection_state, projection_leases, projection_failures TO ledger_runtime;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ledger_runtime;
        -- The read side that migrate creates from here on (the projections' tables, their
        -- views, the report views) is the workers' to write; the event store above is not.
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ledger_runtime;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            GRANT USAGE, SELECT ON SEQUENCES TO ledger_runtime;
    END IF;
END
$$;
