"""Rebuild: fold the whole store into a NEW generation of each projection's tables, then swap.

The projections being rebuilt are folded in ONE pass over the store: each batch is read, decoded
and upcast once and applied to every new generation in one transaction. While the new
generations fill, the live ones keep serving (and the live worker keeps updating them). Once the
new generations have caught up with the store, one transaction repoints the views at them and
moves each ``projection_state`` row to (new generation, position); then the old tables are
dropped. A report query sees the old state or the new one, never a half-built one.

Interplay with a running ``project`` worker: the worker's batches compare-and-set
``projection_state`` on (live generation, position) in the same transaction as their rows, and
the swap locks that row. A worker batch racing the swap fails its compare-and-set, rolls back,
reloads the state and continues on the new generation from the new position. Two rebuilds of one
projection are excluded by a lease row (rebuild_leases.py); a killed rebuild's lease expires and
its half-built tables are dropped by the next rebuild.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ledger.database import WRITE
from ledger.logs import get_logger
from ledger.retry import TRANSIENT_DB_ERRORS
from ledger.store import EventStore, StoredEvent, Wanted
from projections import registry
from projections.base import Counts, Plan, Projection, upcast_all, wanted
from projections.rebuild_leases import (
    RebuildBusy,
    acquire_lease,
    lease_holder,
    release_lease,
    renew_lease,
)
from projections.shard import SHARDS_MAX, Shard
from projections.state_cache import StateCache
from projections.worker import fold

REBUILD_BATCH_EVENTS_MAX = 2000
# Merged states kept in memory per projection, so that a batch folds into the states the
# previous batches wrote without reading them back (state_cache.StateCache); bounds the RSS.
REBUILD_STATES_CACHED_MAX = 10_000
SWAP_CATCH_UP_EVENTS_MAX = 5000  # events applied inside the swap transaction, at most
# Python's collector runs a pass each time 700 more containers are allocated than freed, and a
# full one (every live container) each time enough of them survived. A pass allocates a tree of
# dicts per decoded payload (JSON: no cycles) and keeps two or three batches of them alive, so
# those passes walked hundreds of thousands of objects and found nothing: 9% of a demo
# rebuild's time (docs/PERFORMANCE.md). During a pass the automatic collector is off, and one
# full collection every COLLECT_EVERY_BATCHES batches keeps any cyclic garbage bounded.
COLLECT_EVERY_BATCHES = 50
log = get_logger("projections.rebuild")

ViewHook = Callable[[sa.Connection], None]
Progress = Callable[[int, int], None]  # (events done, events total)
Batch = tuple[list[StoredEvent], list[dict[str, Any]]]  # events and their upcast payloads

# A write that failed with these is not the batch's fault: the pass stops (outage, lost lease).
NOT_REPLAYED: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, RebuildBusy)


@dataclass
class RebuildResult:
    name: str
    old_generation: int
    new_generation: int
    position: int
    events: int
    counts: Counts
    shards: int = 1  # how many shards the new generation is split into


class Prefetch:
    """Reads, decodes and upcasts the NEXT batch on a helper thread while the current one is
    applied: decoding is client CPU, applying mostly waits on the database, so the two overlap.
    At most one batch is read ahead (bounded memory)."""

    def __init__(self, store: EventStore, wanted: Wanted | None = None) -> None:
        self.store = store
        self.wanted = wanted  # which events to decode (base.wanted): the rest are not needed
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rebuild-read")
        self.ahead: tuple[int, Future[Batch]] | None = None  # (after position, its read)

    def _read(self, after: int) -> Batch:
        events = self.store.read(after, REBUILD_BATCH_EVENTS_MAX, self.wanted)
        return events, upcast_all(events)

    def read(self, after: int) -> Batch:
        """The batch after ``after``; starts reading the one after it when this one is full."""
        ahead, self.ahead = self.ahead, None
        future = ahead[1] if ahead and ahead[0] == after else self.pool.submit(self._read, after)
        events, payloads = future.result()
        if len(events) == REBUILD_BATCH_EVENTS_MAX:
            last = events[-1].position
            self.ahead = (last, self.pool.submit(self._read, last))
        return events, payloads

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ordered(projections: list[Projection]) -> list[Projection]:
    """Projections with shared rows last: those rows (the journal's balances) are locked from
    their write to the commit, which the rebuild's workers all wait on."""
    return sorted(projections, key=lambda p: bool(p.shared_tables))


def _chunk_transaction(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        # No wait for the WAL flush of each chunk: a chunk lost in a server crash is part of a
        # half-built generation the next rebuild drops, and the swap's commit (which does
        # wait) makes every chunk before it durable, the WAL being one sequence.
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _apply_chunk(
    engine: sa.Engine,
    projections: list[Projection],
    batch: Batch,
    generations: dict[str, int],
    holder: str | None,
    caches: dict[str, StateCache],
    shard: Shard | None = None,
) -> dict[str, Counts]:
    """Apply one batch to every projection's new generation, in one transaction, event by
    event where a fold raises (``worker.fold``): the way a batch goes when its plan or its
    write failed. A failed transaction fails the rebuild, so the caches never hold a state
    that was not committed. ``holder`` None: a worker process, whose parent renews the lease."""
    events, payloads = batch
    if not events:
        return {}
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        _chunk_transaction(connection)
        counts = {
            p.name: fold(
                connection,
                p,
                events,
                payloads,
                generations[p.name],
                cache=caches[p.name],
                shard=shard,
                own_rows=True,  # a new generation
            )
            for p in _ordered(projections)
        }
        if holder is not None:
            renew_lease(connection, (p.name for p in projections), holder)
    return counts


def _write_chunk(
    engine: sa.Engine,
    projections: list[Projection],
    plans: dict[str, Plan[Any]],
    generations: dict[str, int],
    holder: str | None,
) -> None:
    """The writes of one planned batch, in one transaction (on the writer thread)."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        _chunk_transaction(connection)
        for p in _ordered(projections):
            changes = plans[p.name].changes
            if changes:
                tables = p.cached_tables(generations[p.name])
                p.write(connection, tables, changes, own_rows=True)  # a new generation
        if holder is not None:
            renew_lease(connection, (p.name for p in projections), holder)


@dataclass
class Written:
    """The batch whose write runs on the writer thread, and what its plans counted."""

    future: Future[None]
    batch: Batch
    plans: dict[str, Plan[Any]]


@contextlib.contextmanager
def collections_deferred() -> Iterator[Callable[[], None]]:
    """The collector's automatic passes off (``COLLECT_EVERY_BATCHES``); yields what a pass
    calls once per batch, which collects every that many calls. The collector is as it was
    after (off stays off: someone else turned it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    batches = 0

    def collect_due() -> None:
        nonlocal batches
        batches += 1
        if batches % COLLECT_EVERY_BATCHES == 0:
            gc.collect()

    try:
        yield collect_due
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Fill:
    """What one pass that fills the new generations holds: where it is, what it folded.

    A pass is a pipeline: batch N+1 is planned (merged in memory, ``Projection.plan``) while
    batch N is written by a second thread on its own connection, so that the fold's CPU and
    the database's work overlap. One batch is written at a time, in store order; the plan of
    N+1 folds into N's states through the caches, which hold them until N commits
    (``StateCache.hold``). A plan that raises, or a write that fails, sends its batch (and a
    batch planned on a failed one) through ``_apply_chunk``: event by event, failures
    recorded, the caches emptied first where a failed write left them ahead of the tables."""

    engine: sa.Engine
    projections: list[Projection]
    generations: dict[str, int]
    holder: str | None
    caches: dict[str, StateCache]
    counts: dict[str, Counts]
    shard: Shard | None = None
    position: int = 0  # the last store position folded and committed
    done: int = 0  # events folded and committed
    on_progress: Callable[[int], None] | None = None

    def run(
        self,
        reader: Prefetch,
        until: int | None,
        on_progress: Callable[[int], None] | None,
        stop: threading.Event | Any,
    ) -> bool:
        """Fold batches from ``position`` until a short batch (the head, as far as this pass
        can tell) or past ``until``; False when stopped first (what was read is committed)."""
        self.on_progress = on_progress
        writer = ThreadPoolExecutor(1, thread_name_prefix="rebuild-write")
        # The plans' reads (states no cache holds): one connection for the pass, each batch's
        # reads ended before the next (a checkout per batch cost a ping).
        reads = self.engine.connect()
        try:
            with collections_deferred() as collect_due:
                return self._pass(reader, until, stop, writer, reads, collect_due)
        finally:
            writer.shutdown(wait=True)
            reads.close()

    def _pass(
        self,
        reader: Prefetch,
        until: int | None,
        stop: threading.Event | Any,
        writer: ThreadPoolExecutor,
        reads: sa.Connection,
        collect_due: Callable[[], None],
    ) -> bool:
        written: Written | None = None
        read_to = self.position
        while not stop.is_set():
            batch, full = _next_batch(reader, read_to, until)
            read_to = batch[0][-1].position if batch[0] else read_to
            plans = self._plan(batch, reads)  # meanwhile the previous batch is written
            reads.rollback()
            if not self._settle(written):
                plans = None  # planned on the failed batch's states: replayed too
            written = None
            if plans is None:
                self._apply(batch)
            elif batch[0]:
                for name, plan in plans.items():
                    self.caches[name].hold({c.key: c.after for c in plan.changes})
                future = writer.submit(
                    _write_chunk,
                    self.engine,
                    self.projections,
                    plans,
                    self.generations,
                    self.holder,
                )
                written = Written(future, batch, plans)
            collect_due()
            if not full:
                self._settle(written)
                return True
        self._settle(written)
        return False

    def _plan(self, batch: Batch, reads: sa.Connection) -> dict[str, Plan[Any]] | None:
        """Every projection's plan of ``batch``; None when one raises (an event it cannot
        take: ``_apply`` finds which). A database outage raises."""
        events, payloads = batch
        try:
            return {
                p.name: p.plan(
                    reads,
                    events,
                    self.generations[p.name],
                    payloads,
                    self.caches[p.name],
                    self.shard,
                )
                for p in self.projections
            }
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - found by _apply, event by event
            return None

    def _settle(self, written: Written | None) -> bool:
        """Wait for the batch being written; True when it committed, False when its write
        failed and it was applied again event by event. A database outage or a lost lease
        raises."""
        if written is None:
            return True
        try:
            written.future.result()
        except NOT_REPLAYED:
            raise
        except Exception as error:  # noqa: BLE001 - the batch again, event by event
            events = written.batch[0]
            log.warning(
                "rebuild_batch_replayed",
                first=events[0].position,
                last=events[-1].position,
                error=f"{type(error).__name__}: {error}".splitlines()[0][:200],
            )
            for cache in self.caches.values():
                cache.forget_all()  # it holds the failed batch's states: the tables do not
            self._apply(written.batch)
            return False
        for cache in self.caches.values():
            cache.settle()
        self._count(written.batch, {name: plan.counts for name, plan in written.plans.items()})
        return True

    def _apply(self, batch: Batch) -> None:
        chunk = _apply_chunk(
            self.engine,
            self.projections,
            batch,
            self.generations,
            self.holder,
            self.caches,
            self.shard,
        )
        self._count(batch, chunk)

    def _count(self, batch: Batch, chunk: dict[str, Counts]) -> None:
        """A committed batch: its counts, the position and progress move on."""
        events = batch[0]
        for name, counted in chunk.items():
            self.counts[name].add(counted)
        self.position = events[-1].position if events else self.position
        self.done += len(events)
        if self.on_progress and events:
            self.on_progress(self.done)


def _next_batch(reader: Prefetch, after: int, until: int | None) -> tuple[Batch, bool]:
    """The batch after ``after`` (only its events up to ``until``), and whether it was full."""
    events, payloads = reader.read(after)
    full = len(events) == REBUILD_BATCH_EVENTS_MAX
    if until is not None:
        kept = [i for i, event in enumerate(events) if event.position <= until]
        full = full and len(kept) == len(events)
        events, payloads = [events[i] for i in kept], [payloads[i] for i in kept]
    return (events, payloads), full


def _swap(
    engine: sa.Engine,
    projections: list[Projection],
    store: EventStore,
    generations: dict[str, int],
    shards: dict[str, int],
    fill: Fill,
    hooks: tuple[ViewHook, ViewHook] | None,
) -> dict[str, int] | None:
    """Catch up and swap every projection in ONE transaction, splitting each new generation into
    ``shards``; None if too far behind to do it in one go. The old generations."""
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        rows = {p.name: registry.state(connection, p.name, lock=True) for p in projections}
        tail = store.read(fill.position, SWAP_CATCH_UP_EVENTS_MAX, wanted(projections))
        if len(tail) == SWAP_CATCH_UP_EVENTS_MAX:
            return None  # still far behind: roll back, catch up outside the lock first
        payloads = upcast_all(tail)
        for p in projections:
            cache = fill.caches[p.name]
            tail_counts = fold(
                connection, p, tail, payloads, generations[p.name], cache=cache, own_rows=True
            )
            fill.counts[p.name].add(tail_counts)
        position = tail[-1].position if tail else fill.position
        if hooks:
            hooks[0](connection)  # drop the views that read the projections' views
        for projection in projections:
            name, generation = projection.name, generations[projection.name]
            registry.point_views(connection, projection, generation)
            connection.execute(
                sa.update(registry.projection_state)
                .where(registry.projection_state.c.name == name)
                .values(live_generation=generation, position=position)
            )
            registry.set_shards(connection, name, generation, shards[name], position)
        if hooks:
            hooks[1](connection)
        old = {name: int(row.live_generation) for name, row in rows.items() if row is not None}
        assert len(old) == len(projections), "every projection was registered by ensure()"
    fill.position, fill.done = position, fill.done + len(tail)
    return old


def rebuild_many(
    store: EventStore,
    projections: list[Projection],
    *,
    hooks: tuple[ViewHook, ViewHook] | None = None,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    shards: int | None = None,
) -> list[RebuildResult] | None:
    """Rebuild ``projections`` in ONE pass over the store (each batch is read and decoded once
    and folded into every projection's new generation) and swap them together; None when
    stopped (the live generations are untouched). ``workers`` > 1: the store up to its head is
    folded by that many processes, one shard of the objects each (rebuild_workers.py), then
    the rest by this one. ``shards``: how many shards the new generations are split into for
    ``project --shard`` (default: as many as the live ones)."""
    assert projections, "nothing to rebuild"
    assert 1 <= workers <= SHARDS_MAX, workers
    engine = store.engine
    stop = stop or threading.Event()
    holder = lease_holder()
    leased: list[str] = []
    reader = Prefetch(store, wanted(projections))
    try:
        for projection in sorted(projections, key=lambda p: p.name):  # one order: no deadlock
            acquire_lease(engine, projection.name, holder)
            leased.append(projection.name)
        generations = _new_generations(engine, projections)
        splits = _shard_counts(engine, projections, shards)
        total = store.count()
        counts = {projection.name: Counts() for projection in projections}
        caches = {p.name: StateCache(REBUILD_STATES_CACHED_MAX) for p in projections}
        fill = Fill(engine, projections, generations, holder, caches, counts)
        log.info("rebuild_started", generations=generations, workers=workers, shards=splits)
        if workers > 1:
            from projections import rebuild_workers  # only a parallel rebuild starts processes

            parallel = rebuild_workers.fill(store, fill, workers, total, on_progress, stop)
            if parallel is None:
                log.warning("rebuild_stopped", live="untouched")
                return None
            for cache in caches.values():
                cache.holds_all = False  # the workers wrote rows no cache of this process holds

        def progress(done: int) -> None:
            if on_progress:
                on_progress(done, max(total, done))

        old = None
        while old is None:
            if not fill.run(reader, None, progress, stop):
                log.warning("rebuild_stopped", live="untouched")
                return None
            old = _swap(engine, projections, store, generations, splits, fill, hooks)
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            for projection in projections:
                projection.drop_tables(connection, old[projection.name])
        log.info(
            "rebuild_swapped", old=old, new=generations, position=fill.position, events=fill.done
        )
        return [
            RebuildResult(
                p.name,
                old[p.name],
                generations[p.name],
                fill.position,
                fill.done,
                counts[p.name],
                splits[p.name],
            )
            for p in projections
        ]
    finally:
        reader.close()
        for name in leased:
            release_lease(engine, name, holder)


def _shard_counts(
    engine: sa.Engine, projections: list[Projection], shards: int | None
) -> dict[str, int]:
    """How many shards each new generation is split into: ``shards``, or the live count."""
    assert shards is None or 1 <= shards <= SHARDS_MAX, shards
    with engine.connect() as connection:
        return {
            p.name: shards or int(registry.state(connection, p.name).shards) for p in projections
        }


def _new_generations(engine: sa.Engine, projections: list[Projection]) -> dict[str, int]:
    """Create generation live+1 of each projection (dropping a killed rebuild's leftovers)."""
    generations = {}
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        for projection in projections:
            live_generation, _ = registry.ensure(connection, projection)
            generations[projection.name] = live_generation + 1
            projection.drop_tables(connection, live_generation + 1)
            projection.create_tables(connection, live_generation + 1)
    return generations


def rebuild_one(
    store: EventStore,
    projection: Projection,
    *,
    hooks: tuple[ViewHook, ViewHook] | None = None,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RebuildResult | None:
    """Rebuild one projection; None when stopped (the live generation is untouched)."""
    results = rebuild_many(store, [projection], hooks=hooks, on_progress=on_progress, stop=stop)
    return results[0] if results else None


def rebuild(
    store: EventStore,
    names: Iterable[str] | None = None,
    *,
    hooks: tuple[ViewHook, ViewHook] | None = None,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    shards: int | None = None,
) -> list[RebuildResult]:
    """Rebuild the named projections (all by default) in one pass; [] when stopped."""
    projections = registry.get(names)
    results = rebuild_many(
        store,
        projections,
        hooks=hooks,
        on_progress=on_progress,
        stop=stop,
        workers=workers,
        shards=shards,
    )
    return results or []
