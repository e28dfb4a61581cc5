-- Balances per account, mode and settlement currency: what the journal says, beside Stripe.
-- Amounts are integers in minor units; withdrawals, fees and payouts are positive numbers.
-- ledger_balance = the journal's Stripe balance (stripe_pending + stripe_available) as of the
--   moment of Stripe's latest balance snapshot, counted from the opening balance when there is
--   one (balance-sync records it: the ledger may start on an account with history).
-- drift = stripe_available + stripe_pending - ledger_balance (NULL without a Stripe snapshot).
CREATE VIEW report_balances AS
WITH moves AS (
    SELECT
        p.account_key,
        p.livemode,
        p.currency,
        p.ledger_account,
        p.kind,
        p.amount,
        COALESCE(e.posted_at, 0) AS posted_at
    FROM proj_journal_postings AS p
    JOIN proj_journal_entries AS e
        ON e.entry_id = p.entry_id AND e.account_key = p.account_key
        AND e.livemode = p.livemode
    LEFT JOIN shared_opening_as_of AS o
        ON o.account_key = p.account_key AND o.livemode = p.livemode
        AND o.currency = p.currency
    WHERE o.as_of IS NULL OR COALESCE(e.posted_at, 0) >= o.as_of
),
journal AS (
    SELECT
        m.account_key,
        m.livemode,
        m.currency,
        CAST(SUM(CASE WHEN m.ledger_account = 'revenue' AND m.kind = 'charge'
                      THEN -m.amount ELSE 0 END) AS BIGINT) AS captured,
        CAST(SUM(CASE WHEN m.ledger_account = 'refunds' THEN m.amount ELSE 0 END) AS BIGINT)
            AS refunded,
        CAST(SUM(CASE WHEN m.ledger_account = 'dispute_losses' AND m.kind = 'dispute'
                      THEN m.amount ELSE 0 END) AS BIGINT) AS dispute_withdrawn,
        CAST(SUM(CASE WHEN m.ledger_account = 'dispute_losses' AND m.kind = 'dispute_reversal'
                      THEN -m.amount ELSE 0 END) AS BIGINT) AS dispute_reinstated,
        CAST(SUM(CASE WHEN m.ledger_account = 'dispute_fees' THEN m.amount ELSE 0 END) AS BIGINT)
            AS dispute_fees,
        CAST(SUM(CASE WHEN m.ledger_account IN ('processing_fees', 'application_fees_paid',
                                                'fee_taxes', 'stripe_fees')
                      THEN m.amount ELSE 0 END) AS BIGINT) AS fees,
        CAST(SUM(CASE WHEN m.ledger_account = 'payouts_in_transit'
                       AND m.kind IN ('payout', 'payout_reversal')
                      THEN m.amount ELSE 0 END) AS BIGINT) AS payouts,
        CAST(SUM(CASE WHEN m.ledger_account IN ('stripe_pending', 'stripe_available')
                      THEN m.amount ELSE 0 END) AS BIGINT) AS ledger_balance
    FROM moves AS m
    GROUP BY m.account_key, m.livemode, m.currency
),
as_of_snapshot AS (
    SELECT
        m.account_key,
        m.livemode,
        m.currency,
        CAST(SUM(m.amount) AS BIGINT) AS ledger_balance
    FROM moves AS m
    JOIN proj_stripe_balances AS b
        ON b.account_key = m.account_key AND b.livemode = m.livemode
        AND b.currency = m.currency
    WHERE m.ledger_account IN ('stripe_pending', 'stripe_available') AND m.posted_at <= b.as_of
    GROUP BY m.account_key, m.livemode, m.currency
),
scopes AS (
    SELECT account_key, livemode, currency FROM journal
    UNION
    SELECT account_key, livemode, currency FROM proj_stripe_balances
)
SELECT
    NULLIF(s.account_key, '') AS account,
    s.livemode,
    s.currency,
    COALESCE(j.captured, 0) AS captured,
    COALESCE(j.refunded, 0) AS refunded,
    COALESCE(j.dispute_withdrawn, 0) AS dispute_withdrawn,
    COALESCE(j.dispute_reinstated, 0) AS dispute_reinstated,
    COALESCE(j.dispute_fees, 0) AS dispute_fees,
    COALESCE(j.fees, 0) AS fees,
    COALESCE(j.payouts, 0) AS payouts,
    COALESCE(j.ledger_balance, 0) AS ledger_balance,
    b.available AS stripe_available,
    b.pending AS stripe_pending,
    b.available + b.pending - COALESCE(a.ledger_balance, 0) AS drift
FROM scopes AS s
LEFT JOIN journal AS j
    ON j.account_key = s.account_key AND j.livemode = s.livemode AND j.currency = s.currency
LEFT JOIN proj_stripe_balances AS b
    ON b.account_key = s.account_key AND b.livemode = s.livemode AND b.currency = s.currency
LEFT JOIN as_of_snapshot AS a
    ON a.account_key = s.account_key AND a.livemode = s.livemode AND a.currency = s.currency;
