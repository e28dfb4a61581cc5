"""``ingest.deadlines.Deadlines``: the one timer behind every sink's per-request timeout."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ingest import store_sink
from ingest.deadlines import Deadlines
from ingest.sink import SinkUnavailable
from ledger import kafka_wire
from ledger.database import create_engine, migrate
from ledger.envelope import parse_event
from ledger.store import open_event_store
from tests.support.ingest import event_body

TIMEOUT_S = 0.2


def test_unanswered_futures_fail_at_their_deadline_and_answered_ones_keep_their_result() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(TIMEOUT_S, SinkUnavailable, "too slow")
        failed_at: dict[int, float] = {}
        added_at: dict[int, float] = {}

        def add(number: int) -> asyncio.Future[None]:
            future: asyncio.Future[None] = loop.create_future()
            future.add_done_callback(lambda _f: failed_at.__setitem__(number, loop.time()))
            added_at[number] = loop.time()
            deadlines.add(loop, future)
            return future

        first = [add(n) for n in range(3)]
        first[1].set_result(None)
        await asyncio.sleep(TIMEOUT_S / 2)
        later = add(3)  # its deadline is half a timeout after the first ones'
        await asyncio.wait([first[0], first[2], later], timeout=TIMEOUT_S * 20)
        for future in (first[0], first[2], later):
            with pytest.raises(SinkUnavailable, match="too slow"):
                future.result()
        assert first[1].result() is None
        for number in (0, 2, 3):  # none failed before its own deadline
            assert failed_at[number] >= added_at[number] + TIMEOUT_S, (number, failed_at)
        assert len(deadlines) == 0

    asyncio.run(run())


def test_answered_futures_leave_the_queue_and_fail_all_fails_the_rest_now() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(60.0, SinkUnavailable, "too slow")
        answered = [loop.create_future() for _ in range(100)]
        for future in answered:
            deadlines.add(loop, future)
            future.set_result(None)
        waiting = loop.create_future()
        deadlines.add(loop, waiting)
        assert len(deadlines) == 1, "answered futures were kept until their deadline"
        deadlines.fail_all(SinkUnavailable("stopping"))
        with pytest.raises(SinkUnavailable, match="stopping"):
            waiting.result()
        assert len(deadlines) == 0

    asyncio.run(run())


def test_the_store_sink_answers_503_when_the_database_does_not_commit_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded mode's sink through its ``Deadlines``: a database held by another writer
    makes the put fail with the sink's timeout message, and nothing is lost once it is free."""
    monkeypatch.setattr(store_sink, "PUT_TIMEOUT_S", TIMEOUT_S)
    path = tmp_path / "ledger.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    store = open_event_store(engine)
    body = event_body("charge.succeeded")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database

    async def run() -> None:
        sink = store_sink.StoreSink(store)
        await sink.start()
        try:
            with pytest.raises(SinkUnavailable, match="did not commit the event within"):
                await sink.put(body, parse_event(body), kafka_wire.now_ms())
            blocker.execute("ROLLBACK")
            await sink.put(body, parse_event(body), kafka_wire.now_ms())  # Stripe's retry
        finally:
            await sink.stop()

    try:
        asyncio.run(run())
    finally:
        blocker.close()
    assert [event.event_id for event in store.iter_events()] == [parse_event(body).event_id]
    engine.dispose()
