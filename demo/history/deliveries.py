"""The order a webhook endpoint sees a history in: by created, then neighbours swapped, some
deliveries delayed, ~3% delivered again later (Stripe delivers at least once), and the forced
pairs (a payout's failed before its paid, ...) delivered newest first."""

from __future__ import annotations

import json
import random

from demo.history.ids import Json

DUPLICATE_SHARE = 0.03  # deliveries that repeat an earlier delivery
SWAP_SHARE = 0.02  # neighbours delivered in swapped order
DELAY_SHARE = 0.01  # deliveries held back by a few to a few dozen positions
DELAY_POSITIONS_MIN = 2
DELAY_POSITIONS_MAX = 40
DUPLICATE_LATER_POSITIONS_MAX = 200  # a repeat comes up to this many deliveries later


def deliveries(
    rng: random.Random, events: list[Json], forced_pairs: list[tuple[str, str]]
) -> list[Json]:
    """``events`` (by created) in delivery order; duplicates are copies."""
    keys = _shuffled_keys(rng, len(events))
    forced = {event_id for pair in forced_pairs for event_id in pair}
    where = {event["id"]: i for i, event in enumerate(events) if event["id"] in forced}
    for older, newer in forced_pairs:
        older_key = keys[where[older]]
        if keys[where[newer]] > older_key:
            keys[where[newer]] = older_key - 0.125  # delivered right before the older one
    order: list[tuple[float, int, Json]] = [
        (key, position, event)
        for position, (key, event) in enumerate(zip(keys, events, strict=True))
    ]
    extra = len(events)
    for position, event in enumerate(events):
        if rng.random() < DUPLICATE_SHARE and event["id"] not in forced:
            copy = json.loads(json.dumps(event))
            later = rng.randint(1, DUPLICATE_LATER_POSITIONS_MAX)
            order.append((position + later + 0.25, extra, copy))
            extra += 1
    order.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in order]


def _shuffled_keys(rng: random.Random, count: int) -> list[float]:
    """A sort key per position: some neighbours swapped, some positions held back."""
    keys: list[float] = [float(index) for index in range(count)]
    index = 0
    while index < count - 1:
        if rng.random() < SWAP_SHARE:
            keys[index], keys[index + 1] = keys[index + 1], keys[index]
            index += 2
            continue
        if rng.random() < DELAY_SHARE:
            keys[index] += rng.randint(DELAY_POSITIONS_MIN, DELAY_POSITIONS_MAX) + 0.5
        index += 1
    return keys
