-- The reporting role may read the closed periods: `stripe-ledger export` under that role shows
-- a closed month as it was frozen (it reads report_journal and these two tables, nothing else).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reporting') THEN
        GRANT SELECT ON closed_periods, closed_postings TO ledger_reporting;
    END IF;
END
$$;
