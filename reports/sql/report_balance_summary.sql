-- Stripe's Balance report summary over the ledger's whole synced history, per account, mode and
-- settlement currency: the opening balance, the activity (every balance transaction but
-- payouts: gross, fee, net), the payouts (negative: money out), and the ending balance =
-- starting_balance + activity_net + payouts. `stripe-ledger report balance-summary --since
-- --until` computes the same columns for a period.
CREATE VIEW report_balance_summary AS
WITH opening_amount AS (
    SELECT e.account_key, e.livemode, e.currency, CAST(SUM(p.amount) AS BIGINT) AS amount
    FROM proj_journal_entries AS e
    JOIN proj_journal_postings AS p
        ON p.entry_id = e.entry_id AND p.account_key = e.account_key
        AND p.livemode = e.livemode
    WHERE e.kind = 'opening_balance' AND p.ledger_account = 'stripe_available'
    GROUP BY e.account_key, e.livemode, e.currency
),
activity AS (
    SELECT
        t.account_key,
        t.livemode,
        t.currency,
        CAST(SUM(CASE WHEN t.reporting_category NOT IN ('payout', 'payout_reversal')
                      THEN t.amount ELSE 0 END) AS BIGINT) AS activity_gross,
        CAST(SUM(CASE WHEN t.reporting_category NOT IN ('payout', 'payout_reversal')
                      THEN t.fee ELSE 0 END) AS BIGINT) AS activity_fee,
        CAST(SUM(CASE WHEN t.reporting_category NOT IN ('payout', 'payout_reversal')
                      THEN t.net ELSE 0 END) AS BIGINT) AS activity_net,
        CAST(SUM(CASE WHEN t.reporting_category IN ('payout', 'payout_reversal')
                      THEN t.net ELSE 0 END) AS BIGINT) AS payouts
    FROM proj_balance_transactions AS t
    LEFT JOIN shared_opening_as_of AS o
        ON o.account_key = t.account_key AND o.livemode = t.livemode
        AND o.currency = t.currency
    WHERE o.as_of IS NULL OR COALESCE(t.created, 0) >= o.as_of
    GROUP BY t.account_key, t.livemode, t.currency
),
scopes AS (
    SELECT account_key, livemode, currency FROM activity
    UNION
    SELECT account_key, livemode, currency FROM opening_amount
)
SELECT
    NULLIF(s.account_key, '') AS account,
    s.livemode,
    s.currency,
    COALESCE(o.amount, 0) AS starting_balance,
    COALESCE(a.activity_gross, 0) AS activity_gross,
    COALESCE(a.activity_fee, 0) AS activity_fee,
    COALESCE(a.activity_net, 0) AS activity_net,
    COALESCE(a.payouts, 0) AS payouts,
    COALESCE(o.amount, 0) + COALESCE(a.activity_net, 0) + COALESCE(a.payouts, 0)
        AS ending_balance
FROM scopes AS s
LEFT JOIN opening_amount AS o
    ON o.account_key = s.account_key AND o.livemode = s.livemode AND o.currency = s.currency
LEFT JOIN activity AS a
    ON a.account_key = s.account_key AND a.livemode = s.livemode AND a.currency = s.currency;
