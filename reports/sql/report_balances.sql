-- Balances per account, mode and currency: what the journal says, beside what Stripe says.
-- Amounts are integers in minor units; withdrawals, fees and payouts are positive numbers.
-- ledger_balance = captured - refunded - dispute_withdrawn + dispute_reinstated
--                  - dispute_fees - fees - payouts
-- drift = stripe_available + stripe_pending - ledger_balance (NULL without a Stripe snapshot).
CREATE VIEW report_balances AS
WITH journal AS (
    SELECT
        account_key,
        livemode,
        currency,
        CAST(SUM(CASE WHEN ledger_account = 'revenue' THEN -amount ELSE 0 END) AS BIGINT)
            AS captured,
        CAST(SUM(CASE WHEN ledger_account = 'refunds' THEN amount ELSE 0 END) AS BIGINT)
            AS refunded,
        CAST(SUM(CASE WHEN ledger_account = 'dispute_losses' AND kind = 'dispute_withdrawal'
                      THEN amount ELSE 0 END) AS BIGINT) AS dispute_withdrawn,
        CAST(SUM(CASE WHEN ledger_account = 'dispute_losses' AND kind = 'dispute_reinstatement'
                      THEN -amount ELSE 0 END) AS BIGINT) AS dispute_reinstated,
        CAST(SUM(CASE WHEN ledger_account = 'dispute_fees' THEN amount ELSE 0 END) AS BIGINT)
            AS dispute_fees,
        CAST(SUM(CASE WHEN ledger_account = 'processing_fees' THEN amount ELSE 0 END) AS BIGINT)
            AS fees,
        CAST(SUM(CASE WHEN ledger_account = 'bank' THEN amount ELSE 0 END) AS BIGINT)
            AS payouts
    FROM proj_journal_postings
    GROUP BY account_key, livemode, currency
),
scopes AS (
    SELECT account_key, livemode, currency FROM journal
    UNION
    SELECT account_key, livemode, currency FROM proj_stripe_balances
),
totals AS (
    SELECT
        s.account_key,
        s.livemode,
        s.currency,
        COALESCE(j.captured, 0) AS captured,
        COALESCE(j.refunded, 0) AS refunded,
        COALESCE(j.dispute_withdrawn, 0) AS dispute_withdrawn,
        COALESCE(j.dispute_reinstated, 0) AS dispute_reinstated,
        COALESCE(j.dispute_fees, 0) AS dispute_fees,
        COALESCE(j.fees, 0) AS fees,
        COALESCE(j.payouts, 0) AS payouts
    FROM scopes AS s
    LEFT JOIN journal AS j
        ON j.account_key = s.account_key AND j.livemode = s.livemode AND j.currency = s.currency
)
SELECT
    NULLIF(t.account_key, '') AS account,
    t.livemode,
    t.currency,
    t.captured,
    t.refunded,
    t.dispute_withdrawn,
    t.dispute_reinstated,
    t.dispute_fees,
    t.fees,
    t.payouts,
    t.captured - t.refunded - t.dispute_withdrawn + t.dispute_reinstated - t.dispute_fees
        - t.fees - t.payouts AS ledger_balance,
    b.available AS stripe_available,
    b.pending AS stripe_pending,
    b.available + b.pending - (t.captured - t.refunded - t.dispute_withdrawn
        + t.dispute_reinstated - t.dispute_fees - t.fees - t.payouts) AS drift
FROM totals AS t
LEFT JOIN proj_stripe_balances AS b
    ON b.account_key = t.account_key AND b.livemode = t.livemode AND b.currency = t.currency;
