-- The workers (ledger_runtime, migration 0005) move the shards' checkpoints as they move
-- projection_state's; the default privileges of 0005 cover tables its owner creates later, this
-- says so for a schema whose owner changed since.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_runtime') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON projection_shards TO ledger_runtime;
    END IF;
END
$$;
