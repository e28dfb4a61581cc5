-- Captured and refunded volume per UTC day and currency, by the day the money moved (a
-- charge's capture on its day, each refund on the refund's day; failed refunds come back on
-- the day they failed). Deterministic whatever the order the events arrived in.
CREATE VIEW report_daily_volume AS
SELECT
    NULLIF(p.account_key, '') AS account,
    p.livemode,
    p.currency,
    {utc_day_of_created} AS day,
    CAST(SUM(CASE WHEN p.ledger_account = 'revenue' THEN -p.amount ELSE 0 END) AS BIGINT)
        AS captured,
    CAST(SUM(CASE WHEN p.ledger_account = 'refunds' THEN p.amount ELSE 0 END) AS BIGINT)
        AS refunded
FROM proj_journal_postings AS p
JOIN proj_journal_entries AS e
    ON e.entry_id = p.entry_id AND e.account_key = p.account_key AND e.livemode = p.livemode
WHERE p.kind IN ('charge', 'partial_capture_reversal', 'refund', 'refund_failure')
    AND e.posted_at IS NOT NULL
GROUP BY p.account_key, p.livemode, p.currency, {utc_day_of_created};
