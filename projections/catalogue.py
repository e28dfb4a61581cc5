"""The event-type catalogue: every Stripe event type, by resource, with what the projections do.

The list of types is the project's own copy (``projections/event_types.json``, copied from
Stripe's generated SDK list); what each projection does comes from the projections' handler
tables, so the catalogue cannot claim more than the code does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from projections.registry import PROJECTIONS

STORED_ONLY = "stored only"


@dataclass(frozen=True)
class EventType:
    type: str
    object: str
    description: str
    resource: str
    effects: tuple[tuple[str, str], ...]  # (projection, what it changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "object": self.object,
            "resource": self.resource,
            "description": self.description,
            "projections": [
                {"projection": name, "effect": effect} for name, effect in self.effects
            ],
        }


@cache
def known_types() -> tuple[dict[str, str], ...]:
    text = resources.files("projections").joinpath("event_types.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


def resource_of(event_type: str) -> str:
    """``charge.dispute.created`` -> ``charge.dispute``; ``balance.available`` -> ``balance``."""
    return event_type.rsplit(".", 1)[0] if "." in event_type else event_type


def catalogue() -> list[EventType]:
    rows = []
    for item in known_types():
        effects = tuple(
            (name, projection.handlers[item["type"]])
            for name, projection in PROJECTIONS.items()
            if item["type"] in projection.handlers
        )
        rows.append(
            EventType(
                type=item["type"],
                object=item["object"],
                description=item["description"],
                resource=resource_of(item["type"]),
                effects=effects,
            )
        )
    return sorted(rows, key=lambda row: (row.resource, row.type))


def grouped() -> dict[str, list[EventType]]:
    groups: dict[str, list[EventType]] = {}
    for row in catalogue():
        groups.setdefault(row.resource, []).append(row)
    return groups


def render_table() -> str:
    lines = []
    for resource, rows in grouped().items():
        lines.append(f"{resource}")
        for row in rows:
            if row.effects:
                first, *rest = row.effects
                lines.append(f"  {row.type:<48} {first[0]}: {first[1]}")
                lines.extend(f"  {'':<48} {name}: {effect}" for name, effect in rest)
            else:
                lines.append(f"  {row.type:<48} {STORED_ONLY}")
    handled = sum(1 for row in catalogue() if row.effects)
    lines.append(f"\n{len(catalogue())} event types, {handled} projected, the rest {STORED_ONLY}")
    return "\n".join(lines)


def render_json() -> str:
    return json.dumps(
        {resource: [row.as_dict() for row in rows] for resource, rows in grouped().items()},
        indent=2,
    )
