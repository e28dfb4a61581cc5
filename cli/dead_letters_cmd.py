"""``stripe-ledger dead-letters list | show ID | retry ID | retry --all``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.errors import CommandError
from ledger import dead_letters
from ledger.database import create_engine, require_migrated
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store

LIST_ROWS_MAX = dead_letters.DEAD_LETTERS_PAGE_ROWS_MAX
REASON_CHARS_SHOWN_MAX = 60
RAW_BYTES_SHOWN_MAX = 64 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="inspect dead letters (records that were not Stripe events) and retry them",
        description="Dead letters are the Kafka records the parser refused, kept byte for byte "
        "with the reason. `list` shows them with their status now (refused: the parser still "
        "refuses it; retriable: accepted now; stored: accepted and in the store), `show ID` one "
        "of them with its bytes, `retry ID` / `retry --all` appends those the parser now "
        "accepts (idempotent; the dead-letter row stays as history).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the dead letters, oldest first")
    listing.add_argument(
        "--limit", type=int, default=50, help=f"at most this many (50, up to {LIST_ROWS_MAX})"
    )
    listing.add_argument("--after", type=int, default=0, metavar="ID", help="from this id on")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    show = actions.add_parser("show", help="one dead letter, with its raw bytes")
    show.add_argument("id", type=int, metavar="ID")
    again = actions.add_parser("retry", help="append what the parser now accepts")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", metavar="ID")
    which.add_argument("--all", action="store_true", help="every dead letter")
    parser.set_defaults(handler=run)


def _store(settings: Settings) -> EventStore:
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    return open_event_store(engine)


def _summary(letter: dead_letters.Letter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "received_at": letter.received_at.isoformat(),
        "kafka": f"{letter.topic}/{letter.partition}@{letter.offset}" if letter.topic else None,
        "bytes": len(letter.raw),
        "status": letter.status,
        "event_id": letter.event.event_id if letter.event else None,
        "error": letter.error,
    }


def _list(store: EventStore, args: argparse.Namespace) -> int:
    if not 0 < args.limit <= LIST_ROWS_MAX:
        raise CommandError(f"--limit must be between 1 and {LIST_ROWS_MAX}, got {args.limit}")
    letters = dead_letters.page(store, args.after, args.limit, args.sources)
    rows = [_summary(letter) for letter in letters]
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    columns = ("id", "received_at", "kafka", "bytes", "status", "error")
    cells = [[str(row[c]) if row[c] is not None else "" for c in columns] for row in rows]
    for cell in cells:
        if len(cell[-1]) > REASON_CHARS_SHOWN_MAX:
            cell[-1] = cell[-1][: REASON_CHARS_SHOWN_MAX - 1] + "…"
    widths = [max([len(c), *(len(cell[i]) for cell in cells)]) for i, c in enumerate(columns)]
    for line in ([*columns], *cells):
        padded = (value.ljust(width) for value, width in zip(line, widths, strict=True))
        print("  ".join(padded).rstrip())
    total = dead_letters.count(store)
    print(f"({len(rows)} of {total} dead letters)")
    return 0


def _show(store: EventStore, letter_id: int, sources: tuple[str, ...]) -> int:
    letter = dead_letters.get(store, letter_id, sources)
    if letter is None:
        raise CommandError(f"no dead letter with id {letter_id}")
    for key, value in _summary(letter).items():
        print(f"{key}: {value if value is not None else '-'}")
    if letter.reason_now is not None and letter.reason_now != letter.error:
        print(f"refused now because: {letter.reason_now}")
    shown = letter.raw[:RAW_BYTES_SHOWN_MAX].decode("utf-8", errors="replace")
    print(f"raw ({len(letter.raw)} bytes):")
    print(shown)
    if len(letter.raw) > RAW_BYTES_SHOWN_MAX:
        print(f"... {len(letter.raw) - RAW_BYTES_SHOWN_MAX} more bytes")
    return 0


def _retry(store: EventStore, args: argparse.Namespace) -> int:
    if args.all:
        totals = dead_letters.RetryTotals()
        for letters in dead_letters.all_letters(store, args.sources):
            done = dead_letters.retry(store, letters)
            totals.appended += done.appended
            totals.already_stored += done.already_stored
            totals.refused += done.refused
    else:
        letter = dead_letters.get(store, args.id, args.sources)
        if letter is None:
            raise CommandError(f"no dead letter with id {args.id}")
        totals = dead_letters.retry(store, [letter])
        if letter.event is None:
            print(f"dead letter {args.id}: still refused: {letter.reason_now}", file=sys.stderr)
            return 1
    print(
        f"retried: {totals.appended} appended, {totals.already_stored} already stored, "
        f"{totals.refused} still refused (the dead-letter rows are kept)"
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    args.sources = settings.eventbridge_sources  # consume-sqs's dead letters are EventBridge's
    store = _store(settings)
    try:
        if args.action == "list":
            return _list(store, args)
        if args.action == "show":
            return _show(store, args.id, args.sources)
        return _retry(store, args)
    finally:
        store.engine.dispose()
