"""``StoreSink``: the embedded mode's sink. Verified events go straight to the event store.

Concurrent requests are group-committed: while one append is running on the writer thread, the
events that arrive wait in a list on the event loop; when it commits, the next append takes all
of them (up to ``GROUP_EVENTS_MAX``) in ONE transaction. A request is answered 200 only after
the commit that holds its event; when the database cannot take it within ``PUT_TIMEOUT_S`` the
answer is 503 and Stripe retries (a late commit then makes the retry a counted duplicate, never
a loss).

The event loop hands the writer thread a whole group and gets one wake-up back per group: a
queue put and a ``call_soon_threadsafe`` per request (the previous design) cost the event loop
a lock, a notify and a wake-up each, with the writer thread taking the interpreter lock for
every one of them (issue 21).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from ingest.deadlines import Deadlines, settle
from ingest.sink import SinkUnavailable
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.store import EventStore, Incoming

GROUP_EVENTS_MAX = 500
QUEUE_EVENTS_MAX = 20_000
PUT_TIMEOUT_S = 5.0
READY_CACHE_S = 1.0
log = get_logger("ingest.store_sink")


@dataclass(slots=True)
class _Pending:
    incoming: Incoming
    future: asyncio.Future[None]


class StoreSink:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        # What the start-up line names: the store (no password), not a Kafka topic.
        self.destination = "store:" + store.engine.url.render_as_string(hide_password=True)
        self._waiting: list[_Pending] = []  # on the event loop only
        self._writing: asyncio.Future[None] | None = None  # the group being appended
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = False
        self._ready_cache: tuple[float, bool] = (0.0, False)
        self._deadlines = Deadlines(
            PUT_TIMEOUT_S,
            SinkUnavailable,
            f"the database did not commit the event within {PUT_TIMEOUT_S:g} s",
        )

    async def start(self) -> None:
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    async def stop(self) -> None:
        """Refuse new events, let every event already waiting be appended (each request waits
        at most ``PUT_TIMEOUT_S`` for it anyway), then stop the writer thread."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUT_TIMEOUT_S * 2
        while self._writing is not None and loop.time() < deadline:
            await asyncio.wait({self._writing}, timeout=deadline - loop.time())
            await asyncio.sleep(0)  # the done callback hands over the next group
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=False)
        error = SinkUnavailable("the event store sink is not running")
        for pending in self._waiting:  # only when the database stalled past the deadline
            settle(pending.future, error)
        self._waiting.clear()
        self._deadlines.fail_all(error)

    async def ready(self) -> bool:
        loop = asyncio.get_running_loop()
        checked_at, ok = self._ready_cache
        if loop.time() - checked_at < READY_CACHE_S:
            return ok
        ok = await asyncio.to_thread(self._ping)
        self._ready_cache = (loop.time(), ok)
        return ok

    def _ping(self) -> bool:
        try:
            with self.store.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None:
        if self._stopping or self._writer is None:
            raise SinkUnavailable("the event store sink is not running")
        if len(self._waiting) >= QUEUE_EVENTS_MAX:
            raise SinkUnavailable("too many events waiting for the database")
        loop = asyncio.get_running_loop()
        received_at = dt.datetime.fromtimestamp(received_at_ms / 1000, dt.UTC)
        pending = _Pending(Incoming(event, "webhook", received_at), loop.create_future())
        self._waiting.append(pending)
        if self._writing is None:
            self._write_next(loop)
        self._deadlines.add(loop, pending.future)
        await pending.future

    def _write_next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the events waiting (up to ``GROUP_EVENTS_MAX``) to the writer thread; when
        their append ends, settle them and hand over the next group. On the event loop."""
        assert self._writing is None, "one append at a time"
        group = self._waiting[:GROUP_EVENTS_MAX]
        del self._waiting[:GROUP_EVENTS_MAX]
        if not group:
            return
        if self._writer is None:  # stopped past its deadline: ``stop`` answers the rest
            self._waiting[:0] = group
            return
        writing = loop.run_in_executor(self._writer, self._append, group)
        self._writing = writing

        def done(finished: asyncio.Future[None]) -> None:
            self._writing = None
            error = (
                SinkUnavailable("the event store sink stopped")
                if finished.cancelled()
                else finished.exception()
            )
            for pending in group:
                settle(pending.future, error)
            self._write_next(loop)

        writing.add_done_callback(done)

    def _append(self, group: list[_Pending]) -> None:
        """On the writer thread: one transaction for the group; SinkUnavailable if it failed."""
        try:
            self.store.append([pending.incoming for pending in group])
        except sa.exc.SQLAlchemyError as failure:
            log.warning("store_append_failed", events=len(group), error=type(failure).__name__)
            raise SinkUnavailable("the event store is unavailable") from None
