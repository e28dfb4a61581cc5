"""Projection lag for ``project --metrics-port``: per projection, its checkpoint, how many
stored positions it is behind the head, and how long the oldest of those has waited."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.metrics import NAMESPACE, oldest_unprojected_age_s
from ledger.schema import events
from projections.registry import checkpoint, projection_failures, projection_state


def projection_lag(connection: sa.Connection) -> tuple[int, dict[str, int]]:
    """(store head position, each projection's checkpoint): what ``verify`` and the metrics
    say about how far behind the projections are."""
    head = int(connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0)
    rows = connection.execute(
        sa.select(projection_state.c.name, checkpoint().label("position"))
    )  # a sharded projection is as far as its slowest shard
    return head, {row.name: int(row.position) for row in rows}


def failures_by_projection(connection: sa.Connection) -> dict[str, int]:
    """Events each projection's live generation could not fold."""
    rows = connection.execute(
        sa.select(projection_failures.c.name, sa.func.count())
        .select_from(
            projection_failures.join(
                projection_state,
                sa.and_(
                    projection_state.c.name == projection_failures.c.name,
                    projection_state.c.live_generation == projection_failures.c.generation,
                ),
            )
        )
        .group_by(projection_failures.c.name)
    )
    return {str(name): int(count) for name, count in rows}


class ProjectionCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock, self.engine.connect() as connection:
            head, positions = projection_lag(connection)
            ages = {n: oldest_unprojected_age_s(connection, at) for n, at in positions.items()}
            failed = failures_by_projection(connection)
        checkpoint = GaugeMetricFamily(
            f"{NAMESPACE}_projection_position", "Store position the projection has folded up to.",
            labels=["projection"],
        )  # fmt: skip
        behind = GaugeMetricFamily(
            f"{NAMESPACE}_projection_lag_positions",
            "Store head position minus the projection's checkpoint.",
            labels=["projection"],
        )
        waited = GaugeMetricFamily(
            f"{NAMESPACE}_projection_lag_seconds",
            "Seconds the oldest event the projection has not folded has been stored (0: none).",
            labels=["projection"],
        )
        not_folded = GaugeMetricFamily(
            f"{NAMESPACE}_projection_failed_events",
            "Stored events the projection could not fold (skipped; `verify` names them).",
            labels=["projection"],
        )
        for name, position in sorted(positions.items()):
            checkpoint.add_metric([name], position)
            behind.add_metric([name], max(head - position, 0))
            waited.add_metric([name], round(ages[name], 3))
            not_folded.add_metric([name], failed.get(name, 0))
        yield from (checkpoint, behind, waited, not_folded)
