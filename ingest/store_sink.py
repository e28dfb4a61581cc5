"""``StoreSink``: the embedded mode's sink. Verified events go straight to the event store.

Concurrent requests are group-committed: one writer thread drains whatever is queued (up to
``GROUP_EVENTS_MAX``) and appends it in ONE transaction, then answers every request of the
group. A request is answered 200 only after the commit that holds its event; when the database
cannot take it within ``PUT_TIMEOUT_S`` the answer is 503 and Stripe retries (a late commit
then makes the retry a counted duplicate, never a loss).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ingest.sink import SinkUnavailable
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.store import EventStore, Incoming

GROUP_EVENTS_MAX = 500
QUEUE_EVENTS_MAX = 20_000
PUT_TIMEOUT_S = 5.0
READY_CACHE_S = 1.0
WRITER_POLL_S = 0.2
log = get_logger("ingest.store_sink")


@dataclass(slots=True)
class _Pending:
    incoming: Incoming
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request timed out already
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class StoreSink:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        # What the start-up line names: the store (no password), not a Kafka topic.
        self.destination = "store:" + store.engine.url.render_as_string(hide_password=True)
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=QUEUE_EVENTS_MAX)
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._ready_cache: tuple[float, bool] = (0.0, False)

    async def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join, PUT_TIMEOUT_S * 2)

    async def ready(self) -> bool:
        checked_at, ok = self._ready_cache
        if time.monotonic() - checked_at < READY_CACHE_S:
            return ok
        ok = await asyncio.to_thread(self._ping)
        self._ready_cache = (time.monotonic(), ok)
        return ok

    def _ping(self) -> bool:
        try:
            with self.store.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None:
        if self._stop.is_set() or self._writer is None:
            raise SinkUnavailable("the event store sink is not running")
        loop = asyncio.get_running_loop()
        received_at = dt.datetime.fromtimestamp(received_at_ms / 1000, dt.UTC)
        pending = _Pending(Incoming(event, "webhook", received_at), loop, loop.create_future())
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise SinkUnavailable("too many events waiting for the database") from None
        try:
            async with asyncio.timeout(PUT_TIMEOUT_S):
                await pending.future
        except TimeoutError:
            raise SinkUnavailable(
                f"the database did not commit the event within {PUT_TIMEOUT_S:g} s"
            ) from None

    def _write_loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=WRITER_POLL_S)
            except queue.Empty:
                continue
            group = [first]
            while len(group) < GROUP_EVENTS_MAX:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self.store.append([pending.incoming for pending in group])
        except sa.exc.SQLAlchemyError as failure:
            log.warning("store_append_failed", events=len(group), error=type(failure).__name__)
            error = SinkUnavailable("the event store is unavailable")
        for pending in group:
            try:
                pending.loop.call_soon_threadsafe(_settle, pending.future, error)
            except RuntimeError:  # the loop is closed: the server is gone
                pass
