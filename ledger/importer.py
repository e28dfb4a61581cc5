"""``stripe-ledger import``: Stripe event JSON from files into the store, all or nothing.

Every file is validated completely before anything is appended, so one bad event changes
nothing and the error names the file and line (or item) of each problem. A file holds JSON
lines, a JSON array, one (pretty-printed) event, or Stripe's list object. An id already stored
with a different payload is a conflict: reported, never silently counted as known. Then the
events go through the same idempotent append as the consumer's: a second import of the same
files stores nothing new.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ledger.envelope import EnvelopeError, StripeEvent, decode_json, event_from_dict
from ledger.settings import EVENT_BODY_BYTES_MAX
from ledger.store import EventStore, Incoming, KafkaCoordinates, utc_now

IMPORT_BATCH_EVENTS_MAX = 1000
IMPORT_ARRAY_BYTES_MAX = 512 * 1024 * 1024  # a JSON array is parsed whole; past this use lines
ERRORS_REPORTED_MAX = 20


class ImportFileError(ValueError):
    """The files cannot be imported; nothing was stored. The message lists the problems."""


@dataclass(frozen=True)
class ImportResult:
    events: int
    appended: int
    duplicates: int
    conflicts: tuple[str, ...] = ()  # ids stored with another payload: kept as stored


@dataclass(frozen=True)
class Source:
    """One file to import and the name its errors show (``<stdin>`` for a spooled pipe)."""

    path: Path
    label: str


Item = tuple[str, StripeEvent | EnvelopeError]  # (where in the file, the event or the problem)


def _expand(value: Any, where: str) -> Iterator[Item]:
    """The events of one decoded JSON value: an array, Stripe's list object, or one event."""
    if isinstance(value, list):
        items: list[Any] = value
        prefix = f"{where} item" if where else "item"
    elif isinstance(value, dict) and value.get("object") == "list":
        data = value.get("data")
        if not isinstance(data, list):
            yield where or "list", EnvelopeError("a list object whose 'data' is not an array")
            return
        items, prefix = data, f"{where} data" if where else "data"
    else:
        try:
            yield where or "event", event_from_dict(value)
        except EnvelopeError as error:
            yield where or "event", error
        return
    for index, item in enumerate(items):
        try:
            yield f"{prefix}[{index}]", event_from_dict(item)
        except EnvelopeError as error:
            yield f"{prefix}[{index}]", error


def _json_position(raw: bytes) -> str:
    """' line L column C' of the first JSON syntax error in ``raw`` (to name it), or ''."""
    try:
        json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as error:
        return f" (line {error.lineno} column {error.colno}: {error.msg})"
    except (RecursionError, ValueError):  # ValueError: an integer of thousands of digits
        return ""
    return ""


def _decode(raw: bytes, bytes_max: int = EVENT_BODY_BYTES_MAX) -> Any:
    """decode_json, whose error names the line and column of a syntax error."""
    try:
        return decode_json(raw, bytes_max=bytes_max)
    except EnvelopeError as error:
        if "not valid JSON" in str(error):
            raise EnvelopeError(f"{error}{_json_position(raw)}") from None
        raise


def _line_events(path: Path) -> Iterator[Item]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            if len(line) > EVENT_BODY_BYTES_MAX:
                yield where, EnvelopeError(f"longer than {EVENT_BODY_BYTES_MAX} bytes")
                continue
            try:
                value = _decode(line)
            except EnvelopeError as error:
                yield where, error
                continue
            yield from _expand(value, where)


def _document(path: Path) -> Any:
    """The whole file as one JSON value (a pretty-printed event, an array, a list object)."""
    size = path.stat().st_size
    if size > IMPORT_ARRAY_BYTES_MAX:
        raise EnvelopeError(f"one JSON document over {IMPORT_ARRAY_BYTES_MAX} bytes; use lines")
    # Larger than one event may be (an array, a list object), but through the one decoder all
    # the same: no NaN, Infinity or integer outside int64 (issue 19).
    return _decode(path.read_bytes(), IMPORT_ARRAY_BYTES_MAX)


def _first_line(path: Path) -> bytes | None:
    with path.open("rb") as handle:
        for line in iter(lambda: handle.readline(EVENT_BODY_BYTES_MAX + 1), b""):
            if line.strip():
                return line.strip()
    return None


def read_events(path: Path) -> Iterator[Item]:
    """(location, event or error) for each event of a file in any shape Stripe gives:
    JSON lines, a JSON array, one (pretty-printed) event, or a list object (GET /v1/events)."""
    first = _first_line(path)
    if first is None:
        return iter(())
    if not first.startswith(b"["):
        try:
            if isinstance(decode_json(first), dict):  # a whole object on its first line
                return _line_events(path)
        except EnvelopeError:
            pass  # "{" alone (pretty-printed), or a bad first line of a JSON-lines file
    try:
        document = _document(path)
    except EnvelopeError as error:
        if first.endswith(b"}"):  # a pretty-printed document's first line is "{" or ends in ","
            return _line_events(path)  # lines, the first of them bad: name each bad line
        return iter([("file", error)])
    return _expand(document, "")


def validate(sources: Sequence[Source]) -> int:
    """Count the events of every source, or raise ImportFileError listing their problems."""
    count = total_errors = 0
    errors: list[str] = []
    for source in sources:
        for where, item in read_events(source.path):
            if isinstance(item, EnvelopeError):
                total_errors += 1
                if len(errors) < ERRORS_REPORTED_MAX:
                    errors.append(f"  {source.label} {where}: {item}")
            else:
                count += 1
    if total_errors:
        more = total_errors - len(errors)
        tail = [f"  ... and {more} more"] if more else []
        names = ", ".join(source.label for source in sources)
        header = f"{names}: {total_errors} invalid event(s), nothing imported:"
        raise ImportFileError("\n".join([header, *errors, *tail]))
    return count


def _batches(sources: Sequence[Source]) -> Iterator[list[StripeEvent]]:
    batch: list[StripeEvent] = []
    for source in sources:
        for _where, item in read_events(source.path):
            assert isinstance(item, StripeEvent), "validated before"
            batch.append(item)
            if len(batch) >= IMPORT_BATCH_EVENTS_MAX:
                yield batch
                batch = []
    if batch:
        yield batch


def _digest(payload: Any) -> bytes:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def find_conflicts(store: EventStore, sources: Sequence[Source]) -> list[str]:
    """Ids stored, or met earlier in these files, with a different payload (the store keeps
    the first one it got, always)."""
    conflicts: list[str] = []
    first_seen: dict[str, bytes] = {}  # id -> digest of its first payload in these files
    for batch in _batches(sources):
        stored = store.payloads_of(sorted({event.event_id for event in batch}))
        for event in batch:
            digest = _digest(event.payload)
            known = first_seen.setdefault(event.event_id, digest)
            if event.event_id in stored:
                differs = stored[event.event_id] != event.payload
            else:
                differs = known != digest
            if differs:
                conflicts.append(event.event_id)
    return conflicts


def import_files(
    store: EventStore,
    sources: Sequence[Source],
    on_progress: Callable[[int, int], None] | None = None,
    *,
    allow_conflicts: bool = False,
) -> ImportResult:
    """Validate every file, check for conflicts, then append them all in batches.

    A known id with a different payload is a conflict: nothing is imported unless
    ``allow_conflicts`` (then the stored payload stays, the rest is imported)."""
    total = validate(sources)
    conflicts = find_conflicts(store, sources)
    if conflicts and not allow_conflicts:
        shown = ", ".join(conflicts[:ERRORS_REPORTED_MAX])
        hidden = len(conflicts) - ERRORS_REPORTED_MAX
        more = f" and {hidden} more" if hidden > 0 else ""
        raise ImportFileError(
            f"{len(conflicts)} event id(s) already stored with a different payload, nothing "
            f"imported (--allow-conflicts imports the rest and keeps the stored ones):\n"
            f"  {shown}{more}"
        )
    appended = duplicates = done = 0
    received_at = utc_now()
    for batch in _batches(sources):
        result = store.append([Incoming(event, "import", received_at) for event in batch])
        appended += result.appended
        duplicates += result.duplicates
        done += len(batch)
        if on_progress:
            on_progress(done, total)
    assert done == total, (done, total)
    return ImportResult(total, appended, duplicates, tuple(conflicts))


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
        page = source.read(position, IMPORT_BATCH_EVENTS_MAX)
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
