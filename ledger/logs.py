"""Structured logging (structlog): JSON lines by default, a readable console format on a terminal.

Every process configures logging once through ``configure``. A last processor redacts anything
that looks like a Stripe secret or a webhook signature, so that a mistake elsewhere cannot leak
one into a log line (the secrets test checks the whole output of a run).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# whsec_/sk_/rk_ secrets, and the v1=/v0= hex signatures of a Stripe-Signature header.
_SECRET_PATTERN = re.compile(
    r"(whsec_[A-Za-z0-9+/=_-]+|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|\bv[01]=[0-9a-fA-F]{16,})"
)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    return _SECRET_PATTERN.sub(REDACTED, text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(item) for item in value]
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: _redact(value) for key, value in event_dict.items()}


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Configure structlog for this process. ``log_format``: auto | json | console."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )
    # Libraries (kafka-python, alembic, uvicorn) log through the standard library: keep their
    # warnings, on stderr, also redacted, and in JSON mode as JSON lines like ours.
    handler = _StderrHandler()
    handler.setFormatter(
        _RedactingFormatter("%(levelname)s %(name)s: %(message)s")
        if use_console
        else _JsonRecordFormatter()
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at that moment (not at configure time: a
    stream swapped out later, as test runners and daemonizers do, must not break logging)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


LIBRARY_EVENT = "library_log"  # the one event name of every standard-library record


class _JsonRecordFormatter(logging.Formatter):
    """A library's record as one JSON line shaped like ours: the fixed event name, the logger
    and the message as fields (a message is the library's sentence, never our event name)."""

    def format(self, record: logging.LogRecord) -> str:
        created = dt.datetime.fromtimestamp(record.created, dt.UTC)
        fields: dict[str, Any] = {
            "event": LIBRARY_EVENT,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "level": record.levelname.lower(),
            "timestamp": created.isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info:
            fields["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(fields, default=str)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
