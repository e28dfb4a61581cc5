-- One row per dispute, in its merged state. Timestamps are unix seconds (UTC).
CREATE VIEW report_disputes AS
SELECT
    dispute_id,
    account,
    livemode,
    charge,
    payment_intent,
    status,
    reason,
    currency,
    amount,
    funds_withdrawn,
    funds_reinstated,
    dispute_fees,
    evidence_due_by,
    created,
    closed_at
FROM proj_disputes;
