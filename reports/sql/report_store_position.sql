-- The event store's head: the newest position, its event's created time (unix s) and when it
-- was received. One row (none on an empty store); read through the primary key, so it stays
-- cheap on a store of any size.
CREATE VIEW report_store_position AS
SELECT
    position,
    event_id,
    created,
    received_at
FROM events
WHERE position = (SELECT MAX(position) FROM events);
