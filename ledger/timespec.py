"""The command line's instants and durations: ``--since``, ``--until``, ``--every`` ...

One definition for every command: a date (``2026-11-01``, midnight UTC), an ISO datetime
(``2026-11-01T12:00:00Z``; without a zone it is UTC), unix seconds, and for a window's start a
duration back from now (``72h``). Errors are one line, safe to show (``TimeSpecError``).
"""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
TEXT_CHARS_MAX = 64  # longer than any instant or duration: refused before parsing


class TimeSpecError(ValueError):
    """Not an instant or duration; the message says what is accepted."""


def parse_duration_s(text: str) -> int:
    """'90s', '10m', '72h', '30d', '2w' -> seconds."""
    match = _DURATION.match(text.strip().lower()) if len(text) <= TEXT_CHARS_MAX else None
    if not match or int(match.group(1)) <= 0:
        raise TimeSpecError(f"not a duration: {text!r} (use e.g. 90s, 10m, 72h, 30d)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _instant_s(text: str) -> int | None:
    """A date, ISO datetime or unix seconds -> unix seconds; None if ``text`` is none of them."""
    if len(text) > TEXT_CHARS_MAX:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def parse_instant(text: str) -> int:
    """``2026-11-01`` (midnight UTC), ``2026-11-01T12:00:00Z``, or unix seconds -> unix s."""
    found = _instant_s(text.strip())
    if found is None:
        raise TimeSpecError(
            f"not a date, datetime or unix time: {text.strip()!r} (e.g. 2026-11-01, "
            "2026-11-01T12:00:00Z, 1793491200)"
        )
    return found


def parse_since(text: str, now: dt.datetime) -> int:
    """--since: a duration back from now (72h), a date (2026-11-01, UTC), an ISO datetime, or
    unix seconds -> unix seconds."""
    text = text.strip()
    if _DURATION.match(text.lower()):
        return int(now.timestamp()) - parse_duration_s(text)
    found = _instant_s(text)
    if found is None:
        raise TimeSpecError(
            f"--since: not a date, datetime, duration or unix time: {text!r} "
            "(e.g. 2026-11-01, 2026-11-01T12:00:00Z, 72h, 30d)"
        )
    return found
