"""``rebuild --workers N``: the new generations filled by N processes, then swapped once.

Each worker is a process of its own (one interpreter each: folding is Python CPU, which threads
would share) that folds ONE shard of the objects (shard.py) from the store's start up to the
head the rebuild saw when it started, into the same new generations. Workers never write the
same row: an object is one shard's, and the one kind of row several objects add to (the
journal's ``balances``) is written as deltas the database commutes. The parent holds the leases
(renewing them while it waits), folds what arrived after that head, and swaps, as a one-process
rebuild does (rebuild.py): the swap, and what a reader sees, are the same.

A worker that fails fails the rebuild (the others are stopped; the live generations are
untouched, the half-built ones dropped by the next rebuild). Stopping the rebuild stops the
workers after their current chunk. The database URL reaches the workers through the pipe
``multiprocessing`` starts them with, never a command line.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ledger.database import WRITE, create_engine
from ledger.logs import configure, get_logger
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store
from projections import registry
from projections.base import Counts, wanted
from projections.rebuild_leases import renew_lease
from projections.shard import Shard
from projections.state_cache import StateCache

WAIT_TICK_S = 1.0  # how often the parent renews the leases and reports progress while it waits
JOIN_TIMEOUT_S = 30.0  # a stopped worker finishes its chunk within this, or is terminated
log = get_logger("projections.rebuild")


def fill(
    store: EventStore,
    filling: Any,  # rebuild.Fill (not imported: rebuild.py imports this module)
    workers: int,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    stop: threading.Event,
) -> int | None:
    """Fold the store up to its current head into ``filling``'s generations with ``workers``
    processes; the head folded (``filling.position`` is moved to it), None when stopped."""
    until = store.head_position()
    context = multiprocessing.get_context("spawn")  # no fork of a process holding connections
    halt = context.Event()
    results: Any = context.Queue()
    done = [context.Value("q", 0) for _ in range(workers)]
    url = store.engine.url.render_as_string(hide_password=False)
    names = [projection.name for projection in filling.projections]
    generations = filling.generations
    processes = [
        context.Process(
            target=_worker,
            args=(url, names, generations, Shard(i, workers), until, done[i], halt, results),
            name=f"rebuild-worker-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    log.info("rebuild_workers_started", workers=workers, until=until)
    try:
        outcome = _wait(store.engine, filling, processes, done, results, total, on_progress, stop)
    finally:
        halt.set()
        for process in processes:
            process.join(JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
    if outcome is None:
        return None
    for name, counted in outcome.items():
        filling.counts[name].add(counted)
    filling.position, filling.done = until, min(value.value for value in done)
    return until


def _wait(
    engine: sa.Engine,
    filling: Any,
    processes: list[Any],
    done: list[Any],
    results: Any,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    stop: threading.Event,
) -> dict[str, Counts] | None:
    """Renew the leases and report progress until every worker reported; the summed counts, or
    None when stopped. A worker's error (or death) raises."""
    counts: dict[str, Counts] = {name: Counts() for name in filling.counts}
    reported = 0
    while reported < len(processes):
        if stop.is_set():
            return None
        try:
            index, outcome = results.get(timeout=WAIT_TICK_S)
        except queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:  # killed, or died before it could report
                raise RebuildWorkerFailed(
                    f"rebuild worker {dead[0].name} exited with {dead[0].exitcode} "
                    "before it finished; the live projections are untouched"
                ) from None
        else:
            if isinstance(outcome, str):
                raise RebuildWorkerFailed(
                    f"rebuild worker {index}/{len(processes)}: {outcome}; "
                    "the live projections are untouched"
                )
            for name, values in outcome.items():
                counts[name].add(Counts(**values))
            reported += 1
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            renew_lease(connection, filling.counts, filling.holder)
        if on_progress:
            folded = min(value.value for value in done)
            on_progress(folded, max(total, folded))
    return counts


class RebuildWorkerFailed(RuntimeError):
    """A worker of ``rebuild --workers`` raised or died: the rebuild fails, the live is kept."""


def _worker(
    url: str,
    names: list[str],
    generations: dict[str, int],
    shard: Shard,
    until: int,
    done: Any,
    halt: Any,
    results: Any,
) -> None:
    """One worker process: fold ``shard`` of the store up to ``until``; report counts (or the
    error's first line) on ``results``."""
    from projections.rebuild import REBUILD_STATES_CACHED_MAX, Fill, Prefetch

    settings = Settings.from_env()
    configure(settings.log_format, settings.log_level)
    engine = create_engine(url, create=False)
    reader = None
    try:
        store = open_event_store(engine)
        projections = registry.get(names)
        # Each worker's objects are its own, in tables that started empty: its cache is exact.
        caches = {name: StateCache(REBUILD_STATES_CACHED_MAX) for name in names}
        counts = {name: Counts() for name in names}
        filling = Fill(engine, projections, generations, None, caches, counts, shard)
        reader = Prefetch(store, wanted(projections, shard))  # its own objects' events only

        def progress(read: int) -> None:
            done.value = read

        while filling.position < until:
            before = filling.position
            if not filling.run(reader, until, progress, halt):
                results.put((shard.index, "stopped"))
                return
            assert filling.position > before, ("the store ended before", until)
        results.put((shard.index, {name: c.as_dict() for name, c in counts.items()}))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the rebuild
        log.error("rebuild_worker_failed", shard=str(shard), error=str(error).splitlines()[0])
        results.put((shard.index, f"{type(error).__name__}: {str(error).splitlines()[0]}"))
    finally:
        if reader is not None:
            reader.close()
        engine.dispose()
