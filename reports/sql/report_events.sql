-- Every stored event without its payload: where it sits in the store (position), what it is and
-- when Stripe created it (unix s). The dashboard shows the latest ones (position order, paged).
CREATE VIEW report_events AS
SELECT
    position,
    event_id,
    account,
    livemode,
    type,
    created,
    object_type,
    object_id,
    source
FROM events;
