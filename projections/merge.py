"""The snapshot merge: commutative, associative and idempotent, so a fold over any arrival
order (with any duplicates) of an object's snapshots gives the same state.

A *snapshot* is what one event says about one object: a dict of normalized fields plus its
tie-break key ``(event created, status rank, event id)``. The merged *state* is a JSON-able dict:

    {"key": [...], "status_key": [...], "fields": {field: value, ...}}

Rules (each projection lists its own as a table of ``(field, rule)`` rows):

- ``MAX``     the largest non-null value (monotonic quantities: amount_refunded, attempt_count).
- ``MIN``     the smallest non-null value (set-once timestamps: finalized_at, created).
- ``RANK``    the status with the highest lifecycle rank; equal ranks (terminal ties such as
              paid vs void) go to the greater tie-break key. Terminal states rank last, so an
              object never leaves one.
- ``LATEST``  the value of the snapshot with the greatest tie-break key (null included).
- ``UNION``   a dict id -> item: the union of the ids; for one id seen twice with different
              contents the greater canonical JSON wins (balance transactions, reached statuses).
- ``UNION_MIN`` a dict key -> number: the union, keeping the smallest number per key.
- ``UNION_LATEST`` a dict id -> ``{"k": order key, "v": value}``: the union of the ids, keeping
              per id the item with the greatest order key (a refund's or a balance
              transaction's own progression: pending -> succeeded -> failed, pending -> available).
- ``LATEST_KNOWN`` one ``{"k": order key, "v": value}`` item, or null: the item with the greatest
              key among the snapshots that know the field (a refund event folded into its
              charge says nothing of the charge's own fields, and must not erase them).

Every rule is a semilattice join (max over a total order, or a union of those), which is what
makes the fold order-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Rule(Enum):
    MAX = "max"
    MIN = "min"
    RANK = "rank"
    LATEST = "latest"
    UNION = "union"
    UNION_MIN = "union_min"
    UNION_LATEST = "union_latest"
    LATEST_KNOWN = "latest_known"


MAX, MIN, RANK, LATEST, UNION, UNION_MIN, UNION_LATEST, LATEST_KNOWN = (
    Rule.MAX,
    Rule.MIN,
    Rule.RANK,
    Rule.LATEST,
    Rule.UNION,
    Rule.UNION_MIN,
    Rule.UNION_LATEST,
    Rule.LATEST_KNOWN,
)

Rules = Sequence[tuple[str, Rule]]
TieKey = list[Any]  # [created, status rank, event id]: JSON-able and totally ordered


@dataclass(frozen=True)
class Lifecycle:
    """Status ranks of one object type. Unknown statuses rank below every known one."""

    ranks: Mapping[str, int]

    def rank(self, status: Any) -> int:
        return self.ranks.get(status, -1) if isinstance(status, str) else -1

    def terminal(self) -> frozenset[str]:
        top = max(self.ranks.values())
        return frozenset(status for status, rank in self.ranks.items() if rank == top)


@dataclass
class Snapshot:
    key: TieKey
    fields: dict[str, Any] = field(default_factory=dict)


def tie_key(created: int, rank: int, event_id: str) -> TieKey:
    return [created, rank, event_id]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _latest_wins(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """UNION_LATEST: the greater order key wins; equal keys (the same snapshot seen twice, or
    two facts of one second) fall to the greater canonical JSON, so the join stays order-free."""
    if new["k"] != old["k"]:
        return bool(new["k"] > old["k"])
    return _canonical(new) > _canonical(old)


def _join(rule: Rule, old: Any, new: Any, old_key: TieKey, new_key: TieKey) -> Any:
    if rule is Rule.LATEST:
        return new if new_key > old_key else old
    if rule in (Rule.MAX, Rule.MIN):
        if old is None:
            return new
        if new is None:
            return old
        return max(old, new) if rule is Rule.MAX else min(old, new)
    if rule is Rule.UNION:
        merged = dict(old or {})
        for item_id, item in (new or {}).items():
            if item_id not in merged or _canonical(item) > _canonical(merged[item_id]):
                merged[item_id] = item
        return merged
    if rule is Rule.UNION_MIN:
        merged = dict(old or {})
        for item_id, value in (new or {}).items():
            merged[item_id] = value if item_id not in merged else min(merged[item_id], value)
        return merged
    if rule is Rule.UNION_LATEST:
        merged = dict(old or {})
        for item_id, item in (new or {}).items():
            if item_id not in merged or _latest_wins(item, merged[item_id]):
                merged[item_id] = item
        return merged
    if rule is Rule.LATEST_KNOWN:
        if old is None or new is None:
            return new if old is None else old
        return new if _latest_wins(new, old) else old
    raise AssertionError(rule)  # RANK is joined in merge() with its key


def merge(
    state: dict[str, Any] | None, snapshot: Snapshot, rules: Rules, lifecycle: Lifecycle | None
) -> dict[str, Any]:
    """Join a snapshot into a merged state (None = nothing known yet). Pure: returns a new dict.

    A snapshot carries every field of ``rules`` (None when the payload does not say), so that
    LATEST is simply "the value of the greatest key" and MAX/MIN ignore what is unknown.
    """
    if state is None:
        state = {"key": [], "status_key": [], "fields": {}}
    old_key: TieKey = state["key"]
    new_key = snapshot.key
    old_fields: dict[str, Any] = state["fields"]
    status_key: TieKey = state["status_key"]
    fields: dict[str, Any] = {}
    for name, rule in rules:
        old = old_fields.get(name)
        new = snapshot.fields.get(name)
        if rule is Rule.RANK:
            assert lifecycle is not None, name
            if [lifecycle.rank(new), new_key] > [lifecycle.rank(old), status_key]:
                fields[name], status_key = new, new_key
            else:
                fields[name] = old
        else:
            fields[name] = _join(rule, old, new, old_key, new_key)
    return {"key": max(old_key, new_key), "status_key": status_key, "fields": fields}


def fold(
    snapshots: Sequence[Snapshot], rules: Rules, lifecycle: Lifecycle | None
) -> dict[str, Any] | None:
    state: dict[str, Any] | None = None
    for snapshot in snapshots:
        state = merge(state, snapshot, rules, lifecycle)
    return state
