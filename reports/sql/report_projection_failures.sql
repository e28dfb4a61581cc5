-- Events a projection could not fold (recorded by the fold, skipped, the worker went on), for
-- each projection's live generation: what `verify` fails on, what the pipeline page lists.
CREATE VIEW report_projection_failures AS
SELECT
    f.name AS projection,
    f.position,
    f.event_id,
    f.error,
    f.failed_at_ms
FROM projection_failures AS f
JOIN projection_state AS s ON s.name = f.name AND s.live_generation = f.generation;
