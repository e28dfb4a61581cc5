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
from projections.registry import projection_state


class ProjectionCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock, self.engine.connect() as connection:
            head = int(connection.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0)
            rows = list(connection.execute(sa.select(projection_state)))
            ages = {
                row.name: oldest_unprojected_age_s(connection, int(row.position)) for row in rows
            }
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
        for row in sorted(rows, key=lambda r: r.name):
            checkpoint.add_metric([row.name], int(row.position))
            behind.add_metric([row.name], max(head - int(row.position), 0))
            waited.add_metric([row.name], round(ages[row.name], 3))
        yield from (checkpoint, behind, waited)
