-- One row per payout: its amount, arrival date and status beside the balance transactions it
-- paid out (Stripe lists them for automatic payouts: GET /v1/balance_transactions?payout=),
-- the payout's own balance transaction left out. reconciled is true exactly when their net
-- equals the payout's amount; manual payouts pay out no particular transactions (bt_count 0).
CREATE VIEW report_payout_reconciliation AS
WITH paid_out AS (
    SELECT
        account_key,
        livemode,
        automatic_payout_id,
        COUNT(*) AS bt_count,
        CAST(SUM(amount) AS BIGINT) AS bt_gross,
        CAST(SUM(fee) AS BIGINT) AS bt_fee,
        CAST(SUM(net) AS BIGINT) AS bt_net
    FROM proj_balance_transactions
    WHERE automatic_payout_id IS NOT NULL
        AND (source_id IS NULL OR source_id <> automatic_payout_id)
    GROUP BY account_key, livemode, automatic_payout_id
)
SELECT
    NULLIF(p.account_key, '') AS account,
    p.livemode,
    p.currency,
    p.payout_id,
    p.amount,
    p.arrival_date,
    p.status,
    p.automatic,
    COALESCE(b.bt_count, 0) AS bt_count,
    COALESCE(b.bt_gross, 0) AS bt_gross,
    COALESCE(b.bt_fee, 0) AS bt_fee,
    COALESCE(b.bt_net, 0) AS bt_net,
    CASE WHEN b.bt_net = p.amount THEN 1 ELSE 0 END AS reconciled
FROM proj_payouts AS p
LEFT JOIN paid_out AS b
    ON b.account_key = p.account_key AND b.livemode = p.livemode
    AND b.automatic_payout_id = p.payout_id;
