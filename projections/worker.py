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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa

from ledger.database import WRITE
from ledger.logs import get_logger
from ledger.retry import TRANSIENT_DB_ERRORS, retrying
from ledger.store import EventStore, StoredEvent
from projections import registry
from projections.base import Counts, Projection, upcast_all, wanted
from projections.shard import Shard
from projections.state_cache import StateCache

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
                log.warning("listen_unavailable", error=str(error)[:200])
                self.connection = None

    def wait(self, stop: threading.Event) -> None:
        if self.connection is not None:
            try:
                for _notify in self.connection.notifies(timeout=self.interval_s, stop_after=1):
                    pass
                return
            except Exception as error:  # noqa: BLE001
                log.warning("listen_lost", error=str(error)[:200])
                self.close()
        stop.wait(self.interval_s)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None


def prepare(
    engine: sa.Engine,
    projections: Iterable[Projection],
    shard: Shard | None = None,
    *,
    worker: bool = True,
) -> dict[str, tuple[int, int]]:
    """Register the projections, create live tables and views: name -> (generation, position),
    the position being ``shard``'s checkpoint for a shard worker. For a worker, raises
    ShardMismatch when the live generation is not split the way it was told (the read side,
    ``worker=False``, only needs the tables and views)."""
    shards = shard.count if shard else 1
    try:
        return _prepare(engine, projections, shard, shards, worker)
    except sa.exc.IntegrityError:  # another worker registered it first (two shards starting)
        return _prepare(engine, projections, shard, shards, worker)


def _prepare(
    engine: sa.Engine,
    projections: Iterable[Projection],
    shard: Shard | None,
    shards: int,
    worker: bool,
) -> dict[str, tuple[int, int]]:
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        found = {}
        for projection in projections:
            generation, position = registry.ensure(connection, projection, shards)
            registry.require_current(connection, projection, generation)
            if worker:
                registry.require_shards(connection, projection.name, shards)
            if shard is not None:
                at = registry.shard_position(connection, projection.name, generation, shard.index)
                assert at is not None, (projection.name, generation, str(shard))
                position = at
            found[projection.name] = (generation, position)
        return found


def apply_batch(
    engine: sa.Engine,
    projection: Projection,
    events: list[StoredEvent],
    payloads: list[dict[str, Any]],
    generation: int,
    checkpoint: int,
    shard: Shard | None = None,
) -> tuple[Counts, int] | None:
    """Apply the events after ``checkpoint`` and move the checkpoint to the batch's last position,
    in one transaction. None when the checkpoint moved under us (nothing was written). A shard
    worker holds the projection's row FOR SHARE (its batches run beside the other shards', the
    rebuild's swap waits for them) and compare-and-sets its own shard's checkpoint."""
    assert len(payloads) == len(events), "one upcast payload per event"
    pending = [i for i, event in enumerate(events) if event.position > checkpoint]
    new_checkpoint = events[-1].position
    name = projection.name
    with engine.connect().execution_options(**WRITE) as connection:
        with connection.begin() as transaction:
            if not _holds_checkpoint(connection, name, generation, checkpoint, shard):
                transaction.rollback()
                return None
            counts = fold(
                connection,
                projection,
                [events[i] for i in pending],
                [payloads[i] for i in pending],
                generation,
                shard=shard,
            )
            if shard is None:
                moved = registry.advance(connection, name, generation, checkpoint, new_checkpoint)
            else:
                moved = registry.advance_shard(
                    connection, name, generation, shard.index, checkpoint, new_checkpoint
                )
            if not moved:
                transaction.rollback()
                return None
    return counts, new_checkpoint


def _holds_checkpoint(
    connection: sa.Connection, name: str, generation: int, checkpoint: int, shard: Shard | None
) -> bool:
    """Whether the live generation and this worker's checkpoint are still the ones it folds from
    (locked until the transaction ends)."""
    row = registry.state(connection, name, lock=shard is None, share=shard is not None)
    if row is None or int(row.live_generation) != generation:
        return False
    if shard is None:
        return int(row.shards) == 1 and int(row.position) == checkpoint
    if int(row.shards) != shard.count:
        return False
    at = registry.shard_position(connection, name, generation, shard.index, lock=True)
    return at == checkpoint


def fold(
    connection: sa.Connection,
    projection: Projection,
    events: list[StoredEvent],
    payloads: Sequence[dict[str, Any]],
    generation: int,
    *,
    record: bool = True,
    cache: StateCache | None = None,
    shard: Shard | None = None,
    own_rows: bool = False,
) -> Counts:
    """``projection.apply`` for the worker, rebuild and verify alike. The batch in one
    savepoint; when the fold raises (an event it cannot take: an amount beyond the column, a
    shape it does not expect), each event in its own savepoint, and the events that still raise
    are recorded in projection_failures and skipped. One stored event must never stop the
    projector: the store is append-only, it cannot be taken out (issue 19). An outage of the
    database is not the event's fault: it raises, and the batch is retried. ``cache``: see
    ``state_cache.StateCache`` (a state is put in it once its writes are done); ``shard``: only
    the objects that shard owns; ``own_rows``: a rebuild's new generation (``Projection.apply``)."""
    apply = partial(projection.apply, cache=cache, shard=shard, own_rows=own_rows)
    try:
        with connection.begin_nested():
            return apply(connection, events, generation, payloads)
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception:  # noqa: BLE001 - found below, event by event
        pass
    counts = Counts()
    for event, payload in zip(events, payloads, strict=True):
        try:
            with connection.begin_nested():
                counts.add(apply(connection, [event], generation, [payload]))
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - recorded, counted, reported by verify
            counts.failed += 1
            if record:  # verify's scratch fold only counts: it may run on a read-only store
                _record_failure(connection, projection.name, generation, event, error)
    return counts


def _record_failure(
    connection: sa.Connection, name: str, generation: int, event: StoredEvent, error: Exception
) -> None:
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    reason = reason[: registry.FAILURE_ERROR_CHARS_MAX]
    log.error(
        "event_not_projected",
        projection=name,
        position=event.position,
        event_id=event.event_id,
        error=reason,
    )
    connection.execute(
        sa.insert(registry.projection_failures).values(
            name=name,
            generation=generation,
            position=event.position,
            event_id=event.event_id,
            error=reason,
            failed_at_ms=time.time_ns() // 1_000_000,
        )
    )


def run(
    store: EventStore,
    names: Iterable[str] | None = None,
    until_idle_s: float | None = None,
    stop: threading.Event | None = None,
    batch_events_max: int = BATCH_EVENTS_MAX,
    poll_interval_s: float = POLL_INTERVAL_S,
    shard: Shard | None = None,
) -> RunStats:
    """Project the store until ``stop`` is set, or until no new event came for ``until_idle_s``.

    A stop request finishes the current batch first. Database outages are retried with capped
    backoff (logged); anything else (a bug) raises. ``shard``: fold only the objects that shard
    owns, from its own checkpoints (``project --shard I/N``; one worker per shard).
    """
    assert 0 < batch_events_max <= 10_000, batch_events_max
    stop = stop or threading.Event()
    projections = registry.get(names)
    stats = RunStats(per_projection={p.name: Counts() for p in projections})
    ready = retrying("database", lambda: prepare(store.engine, projections, shard), stop)
    if ready is None:
        return stats
    generations = {name: generation for name, (generation, _position) in ready.items()}
    positions = {name: position for name, (_generation, position) in ready.items()}
    waiter = _Waiter(store.engine, poll_interval_s)
    needs = wanted(projections, shard)  # the events no projection (of this shard) folds: undecoded
    idle_since = time.monotonic()
    log.info(
        "projecting",
        projections=list(positions),
        positions=positions,
        shard=str(shard) if shard else None,
    )
    try:
        while not stop.is_set():
            low = min(positions.values())
            events = retrying("database", partial(store.read, low, batch_events_max, needs), stop)
            if events is None:
                break
            if not events:
                if until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                    break
                waiter.wait(stop)
                continue
            idle_since = time.monotonic()
            stats.batches += 1
            stats.events += len(events)
            _project_batch(
                store, projections, events, generations, positions, stats, stop, shard
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


def _project_batch(
    store: EventStore,
    projections: list[Projection],
    events: list[StoredEvent],
    generations: dict[str, int],
    positions: dict[str, int],
    stats: RunStats,
    stop: threading.Event,
    shard: Shard | None,
) -> None:
    """Apply one batch to every projection still behind it, moving ``generations`` and
    ``positions`` along (stopped while the database was away: the rest is left for later)."""
    payloads = upcast_all(events)  # once for all projections
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
                shard,
            ),
            stop,
        )
        if done is None:  # stopped while the database was away, or the checkpoint moved
            fresh = retrying("database", partial(prepare, store.engine, [projection], shard), stop)
            if fresh is None:
                break
            generations[name], positions[name] = fresh[name]
            log.warning("checkpoint_moved", projection=name, position=positions[name])
            continue
        counts, positions[name] = done
        stats.per_projection[name].add(counts)
        batch_counts[name] = counts.as_dict()
    log.info(
        "batch_projected",
        events=len(events),
        first=events[0].position,
        last=events[-1].position,
        counts=batch_counts,
    )
