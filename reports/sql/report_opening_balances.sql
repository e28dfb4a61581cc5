-- The Stripe balance the ledger started from, per account, mode and currency: recorded by the
-- first complete balance-sync pass (GET /v1/balance, less the balance transactions it synced).
CREATE VIEW report_opening_balances AS
SELECT
    NULLIF(e.account_key, '') AS account,
    e.livemode,
    e.currency,
    e.posted_at AS as_of,
    p.amount
FROM proj_journal_entries AS e
JOIN proj_journal_postings AS p
    ON p.entry_id = e.entry_id AND p.account_key = e.account_key AND p.livemode = e.livemode
WHERE e.kind = 'opening_balance' AND p.ledger_account = 'stripe_available';
