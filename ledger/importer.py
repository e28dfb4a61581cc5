"""``stripe-ledger import``: Stripe event JSON from a file into the store, all or nothing.

The file is validated completely before anything is appended, so a file with one bad event
changes nothing and the error names the line (or array index) of each problem. Then the events
go through the same idempotent append as the consumer's: a second import of the same file
stores nothing new.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ledger.envelope import EnvelopeError, StripeEvent, decode_json, event_from_dict
from ledger.settings import EVENT_BODY_BYTES_MAX
from ledger.store import EventStore, Incoming, KafkaCoordinates, utc_now

IMPORT_BATCH_EVENTS = 1000
IMPORT_ARRAY_BYTES_MAX = 512 * 1024 * 1024  # a JSON array is parsed whole; past this use lines
ERRORS_REPORTED_MAX = 20


class ImportFileError(ValueError):
    """The file cannot be imported; nothing was stored. The message lists the problems."""


@dataclass(frozen=True)
class ImportResult:
    events: int
    appended: int
    duplicates: int


def _is_array(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith(b"[")
    return False


def _array_events(path: Path) -> Iterator[tuple[str, StripeEvent | EnvelopeError]]:
    if path.stat().st_size > IMPORT_ARRAY_BYTES_MAX:
        raise ImportFileError(
            f"{path}: a JSON array over {IMPORT_ARRAY_BYTES_MAX} bytes; use one event per line"
        )
    try:  # the one decoder of every door (no NaN, Infinity or integer outside int64)
        items = decode_json(path.read_bytes(), bytes_max=IMPORT_ARRAY_BYTES_MAX)
    except EnvelopeError as error:
        raise ImportFileError(f"{path}: {error}") from None
    if not isinstance(items, list):
        raise ImportFileError(f"{path}: expected a JSON array or one JSON object per line")
    for index, item in enumerate(items):
        try:
            yield f"item {index}", event_from_dict(item)
        except EnvelopeError as error:
            yield f"item {index}", error


def _line_events(path: Path) -> Iterator[tuple[str, StripeEvent | EnvelopeError]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            if len(line) > EVENT_BODY_BYTES_MAX:
                yield where, EnvelopeError(f"longer than {EVENT_BODY_BYTES_MAX} bytes")
                continue
            try:
                yield where, event_from_dict(decode_json(line))
            except EnvelopeError as error:
                yield where, error


def read_events(path: Path) -> Iterator[tuple[str, StripeEvent | EnvelopeError]]:
    """(location, event or error) for each event in a JSON-array or JSON-lines file."""
    return _array_events(path) if _is_array(path) else _line_events(path)


def validate(path: Path, label: str | None = None) -> int:
    """Count the events of ``path``, or raise ImportFileError listing its problems."""
    count = 0
    errors: list[str] = []
    total_errors = 0
    for where, item in read_events(path):
        if isinstance(item, EnvelopeError):
            total_errors += 1
            if len(errors) < ERRORS_REPORTED_MAX:
                errors.append(f"  {where}: {item}")
        else:
            count += 1
    if total_errors:
        more = total_errors - len(errors)
        tail = [f"  ... and {more} more"] if more else []
        raise ImportFileError(
            "\n".join(
                [
                    f"{label or path}: {total_errors} invalid event(s), nothing imported:",
                    *errors,
                    *tail,
                ]
            )
        )
    return count


def import_file(
    store: EventStore,
    path: Path,
    on_progress: Callable[[int, int], None] | None = None,
    label: str | None = None,
) -> ImportResult:
    """Validate all of ``path``, then append it in batches. ``on_progress(done, total)``."""
    total = validate(path, label)
    appended = duplicates = done = 0
    batch: list[Incoming] = []

    def flush() -> None:
        nonlocal appended, duplicates, done
        result = store.append(batch)
        appended += result.appended
        duplicates += result.duplicates
        done += len(batch)
        batch.clear()
        if on_progress:
            on_progress(done, total)

    received_at = utc_now()
    for _where, item in read_events(path):
        assert isinstance(item, StripeEvent), "validated above"
        batch.append(Incoming(item, "import", received_at))
        if len(batch) >= IMPORT_BATCH_EVENTS:
            flush()
    if batch:
        flush()
    assert done == total, (done, total)
    return ImportResult(events=total, appended=appended, duplicates=duplicates)


def spool_stdin(stream: IO[bytes] | None = None) -> Path:
    """Copy standard input to a temporary file: validation needs a second pass."""
    source = stream if stream is not None else sys.stdin.buffer
    handle = tempfile.NamedTemporaryFile(
        prefix="stripe-ledger-import-", suffix=".json", delete=False
    )
    with handle:
        shutil.copyfileobj(source, handle)
    return Path(handle.name)


def copy_store(
    source: EventStore,
    target: EventStore,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Every event of ``source`` into ``target`` (e.g. SQLite -> PostgreSQL), in position order,
    keeping each event's id, source, received time and Kafka coordinates. Idempotent: a second
    copy appends nothing. Positions are the target's own."""
    total = source.count()
    appended = duplicates = done = 0
    position = 0
    while True:
        page = source.read(position, IMPORT_BATCH_EVENTS)
        if not page:
            break
        batch = [
            Incoming(
                event_from_dict(stored.payload),
                stored.source,
                stored.received_at,
                KafkaCoordinates(stored.kafka_topic, stored.kafka_partition, stored.kafka_offset)
                if stored.kafka_topic is not None
                and stored.kafka_partition is not None
                and stored.kafka_offset is not None
                else None,
            )
            for stored in page
        ]
        result = target.append(batch)
        appended += result.appended
        duplicates += result.duplicates
        done += len(page)
        position = page[-1].position
        if on_progress:
            on_progress(done, max(total, done))
    return ImportResult(events=done, appended=appended, duplicates=duplicates)
