-- Each projection's live generation and checkpoint (the store position it has folded up to),
-- and its lag: how many positions the store's head is ahead of it (positions may have holes,
-- so the lag is an upper bound of the events still to fold). A projection split into shards
-- (`project --shard I/N`) is as far as its slowest shard; `shards` says how many it has.
CREATE VIEW report_projection_checkpoints AS
SELECT
    p.projection,
    p.live_generation,
    p.checkpoint,
    COALESCE((SELECT MAX(position) FROM events), 0) - p.checkpoint AS lag_positions,
    p.shards
FROM (
    SELECT
        s.name AS projection,
        s.live_generation,
        s.shards,
        COALESCE(
            (SELECT MIN(h.position) FROM projection_shards AS h
             WHERE h.name = s.name AND h.generation = s.live_generation),
            s.position
        ) AS checkpoint
    FROM projection_state AS s
) AS p;
