"""Capped exponential backoff for a worker whose database or broker is away.

Workers never crash-loop silently: each failed attempt is logged with the reason and the next
delay, and the delay is capped so recovery is noticed within RETRY_BACKOFF_MS_MAX.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ledger.logs import get_logger

T = TypeVar("T")
log = get_logger("ledger.retry")

RETRY_BACKOFF_MS_MIN = 200
RETRY_BACKOFF_MS_MAX = 30_000
ERROR_CHARS_MAX = 300  # of the error's first line in the log: enough to say what is away

# Errors that mean "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
)


def backoff_ms(attempt: int) -> int:
    """Delay before retry ``attempt`` (1-based): doubling from the minimum, capped, jittered."""
    assert attempt >= 1
    base = min(RETRY_BACKOFF_MS_MAX, RETRY_BACKOFF_MS_MIN * 2 ** min(attempt - 1, 20))
    return int(base * random.uniform(0.8, 1.0))


def retrying(
    what: str,
    action: Callable[[], T],
    stop: threading.Event,
    transient: tuple[type[BaseException], ...] = TRANSIENT_DB_ERRORS,
) -> T | None:
    """Run ``action`` until it succeeds or ``stop`` is set (then None).

    Non-transient errors raise: they are bugs or bad data, and retrying would hide them.
    """
    attempt = 0
    while True:
        try:
            result = action()
        except transient as error:
            attempt += 1
            delay_ms = backoff_ms(attempt)
            log.warning(
                "dependency_unavailable",
                dependency=what,
                attempt=attempt,
                retry_in_ms=delay_ms,
                error=str(getattr(error, "orig", None) or error).splitlines()[0][:ERROR_CHARS_MAX],
            )
            if stop.wait(delay_ms / 1000):
                return None
            continue
        if attempt:
            log.info("dependency_available", dependency=what, attempts=attempt)
        return result


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: a worker finishes its batch, then exits 0."""

    def handle(signum: int, _frame: Any) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name, then="finish the batch")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
