-- A read-only role for reporting: SELECT on the report_* views only (granted when the views are
-- created, reports/views.py). It has no privilege on the event store or the projections' tables;
-- the views read them with their owner's rights. Give people access with:
--   CREATE ROLE analyst LOGIN PASSWORD '...' IN ROLE ledger_reporting;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reporting') THEN
        CREATE ROLE ledger_reporting NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'no CREATEROLE privilege: create the role ledger_reporting by hand';
END
$$;
