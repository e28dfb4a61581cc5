"""The snapshot merge: commutative, associative and idempotent, so a fold over any arrival
order (with any duplicates) of an object's snapshots gives the same state.

Each projection declares its objects' fields as a typed ``Fields`` dataclass whose every field
carries its merge rule (``status: str | None = rule(RANK)``): the class IS the rule table, and
``merge`` is generic over it. A *snapshot* is what one event says about one object: a ``Fields``
instance plus its tie-break key ``(event created, status rank, event id)``. The merged *state*
(``MergedState``) is stored as a JSON-able dict, the same shape as before the fields were typed:

    {"key": [...], "status_key": [...], "fields": {field: value, ...}}

Rules:

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
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar


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
_UNIONS = (Rule.UNION, Rule.UNION_MIN, Rule.UNION_LATEST)

TieKey = list[Any]  # [created, status rank, event id]: JSON-able and totally ordered
# A ``{"k": order key, "v": value}`` item (UNION_LATEST values, LATEST_KNOWN fields).
Item = dict[str, Any]


def rule(merge_rule: Rule) -> Any:
    """A ``Fields`` field merged by ``merge_rule``. Unknown is None; a union starts empty (the
    join of two unknown unions is an empty one, so a merged union is never None)."""
    metadata = {"rule": merge_rule}
    if merge_rule in _UNIONS:
        return field(default_factory=dict, metadata=metadata)
    return field(default=None, metadata=metadata)


@dataclass(frozen=True)
class Lifecycle:
    """Status ranks of one object type. Unknown statuses rank below every known one."""

    ranks: Mapping[str, int]

    def rank(self, status: Any) -> int:
        return self.ranks.get(status, -1) if isinstance(status, str) else -1

    def terminal(self) -> frozenset[str]:
        top = max(self.ranks.values())
        return frozenset(status for status, rank in self.ranks.items() if rank == top)


@dataclass(slots=True)
class Fields:
    """What is known of one object, one typed field per merge rule (subclass per object type).
    ``lifecycle`` ranks the RANK field's statuses (None: the object has no RANK field)."""

    lifecycle: ClassVar[Lifecycle | None] = None

    @classmethod
    def rules(cls) -> tuple[tuple[str, Rule], ...]:
        """The rule table: (field, rule) in declaration order."""
        return _rules(cls)

    @classmethod
    def from_json(cls: type[F], values: Mapping[str, Any]) -> F:
        return cls(*(values.get(name) for name, _rule in _rules(cls)))

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _rule in _rules(type(self))}


F = TypeVar("F", bound=Fields)


_RULES: dict[type[Fields], tuple[tuple[str, Rule], ...]] = {}  # one entry per Fields class


def _rules(cls: type[Fields]) -> tuple[tuple[str, Rule], ...]:
    found = _RULES.get(cls)
    if found is None:
        found = tuple((f.name, _rule_of(f)) for f in fields(cls))
        ranked = [name for name, merge_rule in found if merge_rule is Rule.RANK]
        assert len(ranked) <= 1 and (not ranked or cls.lifecycle is not None), (cls, ranked)
        _RULES[cls] = found
    return found


def _rule_of(declared: Field[Any]) -> Rule:
    merge_rule = declared.metadata.get("rule")
    assert isinstance(merge_rule, Rule), f"{declared.name} has no merge rule"
    return merge_rule


@dataclass(slots=True)
class Snapshot(Generic[F]):
    key: TieKey
    fields: F


@dataclass(slots=True)
class MergedState(Generic[F]):
    """An object's merged state: the greatest tie-break key seen, the key of the snapshot whose
    status won, and the merged fields."""

    key: TieKey
    status_key: TieKey
    fields: F

    @classmethod
    def from_json(cls, fields_type: type[F], stored: Mapping[str, Any]) -> MergedState[F]:
        return cls(stored["key"], stored["status_key"], fields_type.from_json(stored["fields"]))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "status_key": self.status_key, "fields": self.fields.to_json()}


def tie_key(created: int, rank: int, event_id: str) -> TieKey:
    return [created, rank, event_id]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _latest_wins(new: Item, old: Item) -> bool:
    """UNION_LATEST: the greater order key wins; equal keys (the same snapshot seen twice, or
    two facts of one second) fall to the greater canonical JSON, so the join stays order-free."""
    if new["k"] != old["k"]:
        return bool(new["k"] > old["k"])
    return _canonical(new) > _canonical(old)


def _join(merge_rule: Rule, old: Any, new: Any, old_key: TieKey, new_key: TieKey) -> Any:
    if merge_rule is Rule.LATEST:
        return new if new_key > old_key else old
    if merge_rule in (Rule.MAX, Rule.MIN):
        if old is None:
            return new
        if new is None:
            return old
        return max(old, new) if merge_rule is Rule.MAX else min(old, new)
    if merge_rule is Rule.UNION:
        merged = dict(old or {})
        for item_id, item in (new or {}).items():
            if item_id not in merged or _canonical(item) > _canonical(merged[item_id]):
                merged[item_id] = item
        return merged
    if merge_rule is Rule.UNION_MIN:
        merged = dict(old or {})
        for item_id, value in (new or {}).items():
            merged[item_id] = value if item_id not in merged else min(merged[item_id], value)
        return merged
    if merge_rule is Rule.UNION_LATEST:
        merged = dict(old or {})
        for item_id, item in (new or {}).items():
            if item_id not in merged or _latest_wins(item, merged[item_id]):
                merged[item_id] = item
        return merged
    if merge_rule is Rule.LATEST_KNOWN:
        if old is None or new is None:
            return new if old is None else old
        return new if _latest_wins(new, old) else old
    raise AssertionError(merge_rule)  # RANK is joined in merge() with its key


def merge(state: MergedState[F] | None, snapshot: Snapshot[F]) -> MergedState[F]:
    """Join a snapshot into a merged state (None = nothing known yet). Pure: returns a new one.

    A snapshot carries every field of its ``Fields`` type (None when the payload does not say),
    so that LATEST is simply "the value of the greatest key" and MAX/MIN ignore what is unknown.
    """
    new_fields = snapshot.fields
    fields_type = type(new_fields)
    old_fields = state.fields if state is not None else None
    assert old_fields is None or type(old_fields) is fields_type, (old_fields, fields_type)
    old_key: TieKey = state.key if state is not None else []
    status_key: TieKey = state.status_key if state is not None else []
    new_key = snapshot.key
    values = []
    for name, merge_rule in _rules(fields_type):
        old = getattr(old_fields, name) if old_fields is not None else None
        new = getattr(new_fields, name)
        if merge_rule is Rule.RANK:
            lifecycle = fields_type.lifecycle
            assert lifecycle is not None, name
            if [lifecycle.rank(new), new_key] > [lifecycle.rank(old), status_key]:
                values.append(new)
                status_key = new_key
            else:
                values.append(old)
        else:
            values.append(_join(merge_rule, old, new, old_key, new_key))
    return MergedState(max(old_key, new_key), status_key, fields_type(*values))
