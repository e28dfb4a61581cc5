-- Every balance transaction the ledger knows, in its latest synced state, with the columns of
-- Stripe's itemized Balance report (balance_change_from_activity.itemized). Amounts in minor
-- units of the settlement currency; created_utc / available_on_utc are unix seconds.
CREATE VIEW report_balance_itemized AS
SELECT
    NULLIF(account_key, '') AS account,
    livemode,
    currency,
    balance_transaction_id,
    created AS created_utc,
    available_on AS available_on_utc,
    amount AS gross,
    fee,
    net,
    reporting_category,
    source_id,
    description,
    automatic_payout_id,
    status,
    type,
    exchange_rate
FROM proj_balance_transactions;
