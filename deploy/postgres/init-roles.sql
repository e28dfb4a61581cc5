-- Run once by the postgres image on a new data directory (docker-entrypoint-initdb.d), as the
-- superuser POSTGRES_USER. The workers log in as ledger_worker, a member of ledger_runtime:
-- SELECT and INSERT on the event store only (migration 0005 grants them); `migrate` runs as
-- the owner `ledger`. Change both passwords for anything but a local stack.
CREATE ROLE ledger_runtime NOLOGIN;
CREATE ROLE ledger_worker LOGIN PASSWORD 'ledger_worker' IN ROLE ledger_runtime;
