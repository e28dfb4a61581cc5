-- Disputes that still need or await an answer, with the evidence deadline and the time left.
CREATE VIEW report_open_disputes AS
SELECT
    dispute_id,
    account,
    livemode,
    charge,
    status,
    reason,
    currency,
    amount,
    evidence_due_by,
    CASE WHEN evidence_due_by IS NULL THEN NULL
         ELSE CAST((evidence_due_by - {now_epoch}) / 3600 AS BIGINT) END AS hours_left
FROM proj_disputes
WHERE status IN ('warning_needs_response', 'needs_response',
                 'warning_under_review', 'under_review');
