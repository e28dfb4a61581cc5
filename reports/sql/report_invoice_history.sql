-- Each status an invoice reached, once, with when it first reached it (unix s): an invoice's
-- status history, in the same merged form whatever order the events came in.
CREATE VIEW report_invoice_history AS
SELECT
    invoice_id,
    NULLIF(account_key, '') AS account,
    livemode,
    status,
    reached_at
FROM proj_invoice_status_history;
