"""Rebuild: fold the whole store into a NEW generation of a projection's tables, then swap.

While the new generation fills, the live one keeps serving (and the live worker keeps updating
it). Once the new generation has caught up with the store, one transaction repoints the views at
it and moves ``projection_state`` to (new generation, its position); then the old tables are
dropped. A report query sees the old state or the new one, never a half-built one.

Interplay with a running ``project`` worker: the worker's batches compare-and-set
``projection_state`` on (live generation, position) in the same transaction as their rows, and
the swap locks that row. A worker batch racing the swap fails its compare-and-set, rolls back,
reloads the state and continues on the new generation from the new position. Two rebuilds of one
projection are excluded by a lease row (``projection_leases``); a killed rebuild's lease expires
after ``LEASE_MS`` and its half-built tables are dropped by the next rebuild.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from ledger.database import WRITE
from ledger.logs import get_logger
from ledger.store import EventStore
from projections import registry
from projections.base import Counts, Projection

REBUILD_BATCH_EVENTS = 1000
SWAP_CATCH_UP_EVENTS_MAX = 5000  # events applied inside the swap transaction, at most
LEASE_MS = 60_000
log = get_logger("projections.rebuild")

leases = sa.Table(
    "projection_leases",
    sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
)

ViewHook = Callable[[sa.Connection], None]
Progress = Callable[[int, int], None]  # (events done, events total)


class RebuildBusy(RuntimeError):
    """Another rebuild of the same projection holds the lease."""


@dataclass
class RebuildResult:
    name: str
    old_generation: int
    new_generation: int
    position: int
    events: int
    counts: Counts


def _now_ms() -> int:
    return int(time.time() * 1000)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def acquire_lease(engine: sa.Engine, name: str, holder: str) -> None:
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        now = _now_ms()
        connection.execute(
            sa.delete(leases).where(leases.c.name == name, leases.c.expires_at_ms < now)
        )
        current = connection.execute(sa.select(leases).where(leases.c.name == name)).first()
        if current is not None and current.holder != holder:
            raise RebuildBusy(
                f"a rebuild of {name!r} is already running ({current.holder}); "
                f"its lease expires within {LEASE_MS // 1000} s of its last progress"
            )
        if current is None:
            connection.execute(
                sa.insert(leases).values(name=name, holder=holder, expires_at_ms=now + LEASE_MS)
            )


def renew_lease(connection: sa.Connection, name: str, holder: str) -> None:
    renewed = connection.execute(
        sa.update(leases)
        .where(leases.c.name == name, leases.c.holder == holder)
        .values(expires_at_ms=_now_ms() + LEASE_MS)
    )
    if renewed.rowcount != 1:
        raise RebuildBusy(f"the rebuild lease of {name!r} was lost (expired and taken over)")


def release_lease(engine: sa.Engine, name: str, holder: str) -> None:
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        connection.execute(
            sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder)
        )


def _apply_chunk(
    engine: sa.Engine,
    projection: Projection,
    store: EventStore,
    generation: int,
    after: int,
    holder: str,
) -> tuple[int, int, Counts]:
    """Apply one batch to ``generation``; (new position, events read, counts)."""
    events = store.read(after, REBUILD_BATCH_EVENTS)
    if not events:
        return after, 0, Counts()
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        counts = projection.apply(connection, events, generation)
        renew_lease(connection, projection.name, holder)
    return events[-1].position, len(events), counts


def _swap(
    engine: sa.Engine,
    projection: Projection,
    store: EventStore,
    new_generation: int,
    position: int,
    hooks: tuple[ViewHook, ViewHook] | None,
) -> tuple[int, int, Counts] | None:
    """Catch up and swap in ONE transaction; None if too far behind to do it in one go."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        row = registry.state(connection, projection.name, lock=True)
        assert row is not None, projection.name
        tail = store.read(position, SWAP_CATCH_UP_EVENTS_MAX)
        if len(tail) == SWAP_CATCH_UP_EVENTS_MAX:
            return None  # still far behind: roll back, catch up outside the lock first
        counts = projection.apply(connection, tail, new_generation)
        position = tail[-1].position if tail else position
        if hooks:
            hooks[0](connection)  # drop the views that read the projection's views
        registry.point_views(connection, projection, new_generation)
        connection.execute(
            sa.update(registry.projection_state)
            .where(registry.projection_state.c.name == projection.name)
            .values(live_generation=new_generation, position=position)
        )
        if hooks:
            hooks[1](connection)
        old_generation = int(row.live_generation)
    return old_generation, position, counts


def rebuild_one(
    store: EventStore,
    projection: Projection,
    *,
    hooks: tuple[ViewHook, ViewHook] | None = None,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RebuildResult | None:
    """Rebuild one projection; None when stopped (the live generation is untouched)."""
    engine = store.engine
    stop = stop or threading.Event()
    holder = _holder()
    acquire_lease(engine, projection.name, holder)
    try:
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            live_generation, _ = registry.ensure(connection, projection)
            new_generation = live_generation + 1
            projection.drop_tables(connection, new_generation)  # a killed rebuild's leftovers
            projection.create_tables(connection, new_generation)
        total = store.count()
        position = done = 0
        counts = Counts()
        log.info("rebuild started", projection=projection.name, generation=new_generation)
        while not stop.is_set():
            position, read, chunk_counts = _apply_chunk(
                engine, projection, store, new_generation, position, holder
            )
            done += read
            counts.add(chunk_counts)
            if on_progress:
                on_progress(done, max(total, done))
            if read < REBUILD_BATCH_EVENTS:
                swapped = _swap(engine, projection, store, new_generation, position, hooks)
                if swapped is not None:
                    old_generation, position, tail_counts = swapped
                    counts.add(tail_counts)
                    break
        else:
            log.warning(
                "rebuild stopped; the live projection is untouched", projection=projection.name
            )
            return None
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            projection.drop_tables(connection, old_generation)
        log.info(
            "rebuild swapped",
            projection=projection.name,
            old_generation=old_generation,
            new_generation=new_generation,
            position=position,
            events=done,
        )
        return RebuildResult(
            projection.name, old_generation, new_generation, position, done, counts
        )
    finally:
        release_lease(engine, projection.name, holder)


def rebuild(
    store: EventStore,
    names: Iterable[str] | None = None,
    *,
    hooks: tuple[ViewHook, ViewHook] | None = None,
    on_progress: Callable[[str], Progress] | None = None,
    stop: threading.Event | None = None,
) -> list[RebuildResult]:
    """Rebuild the named projections (all by default), one after the other."""
    results = []
    for projection in registry.get(names):
        progress = on_progress(projection.name) if on_progress else None
        result = rebuild_one(store, projection, hooks=hooks, on_progress=progress, stop=stop)
        if result is None:
            break
        results.append(result)
    return results
