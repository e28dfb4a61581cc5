"""The projection worker: the event store, in position order, into every projection.

Exactly-once per projection: a batch's rows and the projection's checkpoint are written in ONE
transaction, and the checkpoint moves only from the value the batch started from (a compare-and-
set on ``projection_state``). A crash before the commit leaves rows and checkpoint as they were
(the batch is read again); after it, both have moved. Two workers cannot both apply a batch: the
second one's compare-and-set fails and it rolls back.

Lag: on PostgreSQL the worker LISTENs on ``ledger_events`` (the store's AFTER INSERT trigger
NOTIFYs) with a short timeout; SQLite polls every ``POLL_INTERVAL_S``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa

from ledger.database import WRITE
from ledger.logs import get_logger
from ledger.retry import retrying
from ledger.store import EventStore, StoredEvent
from projections import registry
from projections.base import Counts, Projection, upcast_all

BATCH_EVENTS_MAX = 500
POLL_INTERVAL_S = 0.2
LISTEN_CHANNEL = "ledger_events"
log = get_logger("projections.worker")


@dataclass
class RunStats:
    batches: int = 0
    events: int = 0  # events read from the store
    per_projection: dict[str, Counts] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)


class _Waiter:
    """Waits for new events: LISTEN/NOTIFY on PostgreSQL (else polling), polling on SQLite."""

    def __init__(self, engine: sa.Engine, interval_s: float) -> None:
        self.interval_s = interval_s
        self.connection: Any = None
        if engine.dialect.name == "postgresql":
            try:
                import psycopg

                url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                self.connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
                self.connection.execute(f"LISTEN {LISTEN_CHANNEL}")
            except Exception as error:  # noqa: BLE001 - polling is always a correct fallback
                log.warning("LISTEN unavailable, polling instead", error=str(error)[:200])
                self.connection = None

    def wait(self, stop: threading.Event) -> None:
        if self.connection is not None:
            try:
                for _notify in self.connection.notifies(timeout=self.interval_s, stop_after=1):
                    pass
                return
            except Exception as error:  # noqa: BLE001
                log.warning("LISTEN connection lost, polling instead", error=str(error)[:200])
                self.close()
        stop.wait(self.interval_s)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None


def prepare(engine: sa.Engine, projections: Iterable[Projection]) -> dict[str, tuple[int, int]]:
    """Register the projections, create live tables and views: name -> (generation, position)."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        found = {}
        for projection in projections:
            found[projection.name] = registry.ensure(connection, projection)
            registry.require_current(connection, projection, found[projection.name][0])
        return found


def apply_batch(
    engine: sa.Engine,
    projection: Projection,
    events: list[StoredEvent],
    payloads: list[dict[str, Any]],
    generation: int,
    checkpoint: int,
) -> tuple[Counts, int] | None:
    """Apply the events after ``checkpoint`` and move the checkpoint to the batch's last position,
    in one transaction. None when the checkpoint moved under us (nothing was written)."""
    assert len(payloads) == len(events), "one upcast payload per event"
    pending = [i for i, event in enumerate(events) if event.position > checkpoint]
    new_checkpoint = events[-1].position
    with engine.connect().execution_options(**WRITE) as connection:
        with connection.begin() as transaction:
            row = registry.state(connection, projection.name, lock=True)
            if row is None or (row.live_generation, row.position) != (generation, checkpoint):
                transaction.rollback()
                return None
            counts = projection.apply(
                connection, [events[i] for i in pending], generation, [payloads[i] for i in pending]
            )
            if not registry.advance(
                connection, projection.name, generation, checkpoint, new_checkpoint
            ):
                transaction.rollback()
                return None
    return counts, new_checkpoint


def run(
    store: EventStore,
    names: Iterable[str] | None = None,
    until_idle_s: float | None = None,
    stop: threading.Event | None = None,
    batch_size: int = BATCH_EVENTS_MAX,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> RunStats:
    """Project the store until ``stop`` is set, or until no new event came for ``until_idle_s``.

    A stop request finishes the current batch first. Database outages are retried with capped
    backoff (logged); anything else (a bug) raises.
    """
    assert 0 < batch_size <= 10_000, batch_size
    stop = stop or threading.Event()
    projections = registry.get(names)
    stats = RunStats(per_projection={p.name: Counts() for p in projections})
    ready = retrying("database", lambda: prepare(store.engine, projections), stop)
    if ready is None:
        return stats
    generations = {name: generation for name, (generation, _position) in ready.items()}
    positions = {name: position for name, (_generation, position) in ready.items()}
    waiter = _Waiter(store.engine, poll_interval_s)
    idle_since = time.monotonic()
    log.info("projecting", projections=list(positions), positions=positions)
    try:
        while not stop.is_set():
            low = min(positions.values())
            events = retrying("database", partial(store.read, low, batch_size), stop)
            if events is None:
                break
            if not events:
                if until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                    break
                waiter.wait(stop)
                continue
            idle_since = time.monotonic()
            payloads = upcast_all(events)  # once for all projections
            stats.batches += 1
            stats.events += len(events)
            batch_counts: dict[str, dict[str, int]] = {}
            for projection in projections:
                name = projection.name
                if positions[name] >= events[-1].position:
                    continue
                done = retrying(
                    "database",
                    partial(
                        apply_batch,
                        store.engine,
                        projection,
                        events,
                        payloads,
                        generations[name],
                        positions[name],
                    ),
                    stop,
                )
                if done is None:  # stopped while the database was away, or the checkpoint moved
                    fresh = retrying("database", partial(prepare, store.engine, [projection]), stop)
                    if fresh is None:
                        break
                    generations[name], positions[name] = fresh[name]
                    log.warning(
                        "checkpoint moved by another worker: reloaded",
                        projection=name,
                        position=positions[name],
                    )
                    continue
                counts, positions[name] = done
                stats.per_projection[name].add(counts)
                batch_counts[name] = counts.as_dict()
            log.info(
                "batch projected",
                events=len(events),
                first=events[0].position,
                last=events[-1].position,
                counts=batch_counts,
            )
    finally:
        waiter.close()
    stats.positions = dict(positions)
    log.info(
        "stopped",
        positions=stats.positions,
        totals={name: counts.as_dict() for name, counts in stats.per_projection.items()},
    )
    return stats
