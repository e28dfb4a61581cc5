-- Every posting of the journal with its entry: when the money moved (posted_at, unix s), the
-- movement's kind (its reporting category), the ledger account and the signed amount (debit > 0,
-- credit < 0, minor units); estimated = 1 where only events say it (no balance transaction yet).
CREATE VIEW report_journal AS
SELECT
    NULLIF(p.account_key, '') AS account,
    p.livemode,
    p.currency,
    e.posted_at,
    p.entry_id,
    e.kind,
    p.ledger_account,
    p.amount,
    e.balance_transaction_id,
    e.source_id,
    e.automatic_payout_id,
    e.object_type,
    e.object_id,
    e.estimated
FROM proj_journal_postings AS p
JOIN proj_journal_entries AS e
    ON e.entry_id = p.entry_id AND e.account_key = p.account_key AND e.livemode = p.livemode;
