-- The trial balance: per account, mode, currency and ledger account, the debits, the credits and
-- the balance (debits - credits) of every posting; per currency the debits equal the credits.
-- `stripe-ledger report trial-balance --as-of DATE` counts the postings up to that moment.
CREATE VIEW report_trial_balance AS
SELECT
    NULLIF(p.account_key, '') AS account,
    p.livemode,
    p.currency,
    p.ledger_account,
    CAST(SUM(CASE WHEN p.amount > 0 THEN p.amount ELSE 0 END) AS BIGINT) AS debits,
    CAST(SUM(CASE WHEN p.amount < 0 THEN -p.amount ELSE 0 END) AS BIGINT) AS credits,
    CAST(SUM(p.amount) AS BIGINT) AS balance
FROM proj_journal_postings AS p
GROUP BY p.account_key, p.livemode, p.currency, p.ledger_account;
