-- Activity by Stripe reporting category, per account, mode and settlement currency: count,
-- gross, fee and net of the balance transactions (like the Balance report's "Balance change
-- from activity" summary, plus the payout categories).
CREATE VIEW report_balance_categories AS
SELECT
    NULLIF(account_key, '') AS account,
    livemode,
    currency,
    reporting_category,
    COUNT(*) AS count,
    CAST(SUM(amount) AS BIGINT) AS gross,
    CAST(SUM(fee) AS BIGINT) AS fee,
    CAST(SUM(net) AS BIGINT) AS net
FROM proj_balance_transactions
GROUP BY account_key, livemode, currency, reporting_category;
