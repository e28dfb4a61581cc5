"""The projection checkpoint's compare-and-set, on every backend: a batch's rows and the
checkpoint move together, and only from the checkpoint the batch started from (a stale writer
loses and writes nothing)."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from ledger.envelope import parse_event
from ledger.store import EventStore, Incoming, StoredEvent, utc_now
from projections import registry, worker
from projections.base import upcast_all
from tests.support.factory import charge_event, encode

THREAD_JOIN_S = 60


def _append(store: EventStore, numbers: range) -> list[StoredEvent]:
    now = utc_now()
    store.append([Incoming(parse_event(encode(charge_event(n))), "webhook", now) for n in numbers])
    return store.read(0, 1000)


def _checkpoint(store: EventStore) -> int:
    with store.engine.connect() as connection:
        return int(registry.state(connection, "journal").position)


def _rows(store: EventStore, generation: int) -> dict[str, list[Any]]:
    tables = registry.PROJECTIONS["journal"].cached_tables(generation)
    with store.engine.connect() as connection:
        return {
            name: sorted(tuple(map(str, row)) for row in connection.execute(sa.select(table)))
            for name, table in tables.items()
        }


def _apply(store: EventStore, events: list[StoredEvent], generation: int, checkpoint: int) -> Any:
    journal = registry.PROJECTIONS["journal"]
    return worker.apply_batch(
        store.engine, journal, events, upcast_all(events), generation, checkpoint
    )


def test_a_batch_moves_the_checkpoint_from_where_it_started(store: EventStore) -> None:
    found = worker.prepare(store.engine, [registry.PROJECTIONS["journal"]])
    generation, checkpoint = found["journal"]
    assert checkpoint == 0
    events = _append(store, range(3))
    applied = _apply(store, events, generation, 0)
    assert applied is not None
    assert applied[1] == events[-1].position == _checkpoint(store)
    assert any(_rows(store, generation).values()), "the batch wrote the projection's rows"


def test_a_stale_writer_loses_and_writes_nothing(store: EventStore) -> None:
    generation, _ = worker.prepare(store.engine, [registry.PROJECTIONS["journal"]])["journal"]
    first = _append(store, range(3))
    assert _apply(store, first, generation, 0) is not None
    rows, checkpoint = _rows(store, generation), _checkpoint(store)
    everything = _append(store, range(6))
    assert _apply(store, everything, generation, 0) is None  # it started before the first batch
    assert _apply(store, everything, generation + 1, checkpoint) is None  # not the live one
    assert (_rows(store, generation), _checkpoint(store)) == (rows, checkpoint)
    assert _apply(store, everything, generation, checkpoint) is not None
    assert _checkpoint(store) == everything[-1].position


def test_of_two_concurrent_writers_from_one_checkpoint_one_wins(store: EventStore) -> None:
    generation, _ = worker.prepare(store.engine, [registry.PROJECTIONS["journal"]])["journal"]
    events = _append(store, range(20))
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write() -> None:
        try:
            start.wait(THREAD_JOIN_S)
            results.append(_apply(store, events, generation, 0))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_JOIN_S)
    assert not errors, errors
    assert sorted(result is None for result in results) == [False, True]
    assert _checkpoint(store) == events[-1].position
