-- One row per invoice, in its merged state. Timestamps are unix seconds (UTC).
CREATE VIEW report_invoices AS
SELECT
    invoice_id,
    account,
    livemode,
    customer,
    subscription,
    status,
    currency,
    amount_due,
    amount_paid,
    amount_remaining,
    attempt_count,
    due_date,
    finalized_at,
    paid_at,
    voided_at,
    marked_uncollectible_at
FROM proj_invoices;
