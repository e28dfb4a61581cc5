-- Each projection's live generation and checkpoint (the store position it has folded up to),
-- and its lag: how many positions the store's head is ahead of it (positions may have holes,
-- so the lag is an upper bound of the events still to fold).
CREATE VIEW report_projection_checkpoints AS
SELECT
    s.name AS projection,
    s.live_generation,
    s.position AS checkpoint,
    COALESCE((SELECT MAX(position) FROM events), 0) - s.position AS lag_positions
FROM projection_state AS s;
