-- Unpaid invoices (open or uncollectible) by how far past their due date they are, now.
-- Buckets: not_due, 1-30, 31-60, 61-90, 90+ days past due; no_due_date when there is none.
CREATE VIEW report_invoice_aging AS
WITH unpaid AS (
    SELECT
        account,
        livemode,
        currency,
        amount_remaining,
        CASE
            WHEN due_date IS NULL THEN 'no_due_date'
            WHEN due_date >= {now_epoch} THEN 'not_due'
            WHEN {now_epoch} - due_date <= 30 * 86400 THEN '1-30'
            WHEN {now_epoch} - due_date <= 60 * 86400 THEN '31-60'
            WHEN {now_epoch} - due_date <= 90 * 86400 THEN '61-90'
            ELSE '90+'
        END AS bucket
    FROM proj_invoices
    WHERE status IN ('open', 'uncollectible')
)
SELECT
    account,
    livemode,
    currency,
    bucket,
    COUNT(*) AS invoices,
    CAST(SUM(COALESCE(amount_remaining, 0)) AS BIGINT) AS amount_remaining
FROM unpaid
GROUP BY account, livemode, currency, bucket;
