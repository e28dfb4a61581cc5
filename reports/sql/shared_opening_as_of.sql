-- When each scope's books start: the instant of the opening balance balance-sync recorded, per
-- account, mode and currency (no row: the books start at the first fact). Not a report: a part
-- that report_balances and report_balance_summary read (reports/views.py creates the shared_*
-- views before the report_* views and grants the reporting role nothing on them).
CREATE VIEW shared_opening_as_of AS
SELECT account_key, livemode, currency, MIN(posted_at) AS as_of
FROM proj_journal_entries
WHERE kind = 'opening_balance'
GROUP BY account_key, livemode, currency;
