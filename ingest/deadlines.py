"""How a sink's request futures end: ``settle``, and ``Deadlines``, one timer for all puts.

A sink answers each request once its event is durable, or 503 when that takes longer than the
sink's timeout. ``asyncio.timeout`` per request costs a context object and a timer handle each
(~5% of ingest's event-loop CPU in its profile, issue 21). Every put of a sink has the same
timeout, so the deadlines arrive in order: one queue, oldest first, and one timer armed for the
oldest one cover them all.
"""

from __future__ import annotations

import asyncio
import collections


def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """On the loop: end a sink's request future (a result, or ``error``) unless it ended
    already (timed out, answered, or its request gone). Every sink ends its futures here."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Deadlines:
    """Fails each added future with ``late`` (a fresh exception from it) once ``timeout_s``
    passed without its result. On the event loop only."""

    def __init__(self, timeout_s: float, late: type[Exception], message: str) -> None:
        assert timeout_s > 0, timeout_s
        self.timeout_s = timeout_s
        self._late = late
        self._message = message
        self._queue: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        queue = self._queue
        while queue and queue[0][1].done():  # answered (mostly in order): drop them now
            queue.popleft()
        queue.append((loop.time() + self.timeout_s, future))
        if self._timer is None:
            self._timer = loop.call_at(queue[0][0], self._expire_due, loop)

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        queue = self._queue
        now = loop.time()
        while queue and queue[0][0] <= now:
            settle(queue.popleft()[1], self._late(self._message))
        while queue and queue[0][1].done():
            queue.popleft()
        if queue:
            self._timer = loop.call_at(queue[0][0], self._expire_due, loop)

    def fail_all(self, error: BaseException) -> None:
        """At stop: every future still waiting fails with ``error`` now, not at its deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            settle(self._queue.popleft()[1], error)
