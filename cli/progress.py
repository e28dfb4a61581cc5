"""Progress for long work: a live bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

LOG_EVERY_S = 5.0
BAR_WIDTH_CHARS = 30


class Progress:
    def __init__(self, what: str, total: int, log: Any, *, stream: Any = None) -> None:
        self.what = what
        self.total = max(total, 0)
        self.log = log
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.last_log = self.started
        self.done = 0

    def update(self, done: int, total: int | None = None) -> None:
        # Senders on several threads report out of order: the count shown never goes back.
        done = max(done, self.done)
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        rate = done / max(now - self.started, 1e-6)
        remaining = max(self.total - done, 0)
        eta_s = remaining / rate if rate > 0 else 0.0
        if self.tty:
            filled = int(BAR_WIDTH_CHARS * done / self.total) if self.total else BAR_WIDTH_CHARS
            bar = "#" * filled + "-" * (BAR_WIDTH_CHARS - filled)
            self.stream.write(
                f"\r{self.what} [{bar}] {done}/{self.total} {rate:,.0f}/s ETA {eta_s:,.0f}s "
            )
            self.stream.flush()
        elif now - self.last_log >= LOG_EVERY_S or done >= self.total:
            self.last_log = now
            self.log.info(
                "progress",  # a fixed event name; what is progressing is a field
                task=self.what,
                done=done,
                total=self.total,
                per_s=round(rate),
                eta_s=round(eta_s),
            )

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
