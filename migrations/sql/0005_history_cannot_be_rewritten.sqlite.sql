-- History cannot be rewritten (issue 19): INSERT OR REPLACE deletes the stored row and inserts
-- the new one without firing the DELETE trigger (recursive_triggers is off), and an UPSERT's
-- DO UPDATE is not the UPDATE a trigger can be relied on for. This trigger runs before any
-- insert whose event id or position is already stored and refuses it. The store's idempotent
-- append (INSERT ... ON CONFLICT DO NOTHING) never reaches here for a known id: it filters
-- known ids first, and a conflict it does meet is refused all the same (ABORT), never applied.
CREATE TRIGGER events_no_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE event_id = NEW.event_id OR position = NEW.position)
BEGIN
    SELECT RAISE(ABORT, 'the events table is append-only: a stored event cannot be replaced');
END;
