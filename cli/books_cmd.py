"""``stripe-ledger export`` (the journal as books for Beancount, hledger, Xero, QuickBooks Online
or any general ledger) and ``close-period`` (a month whose books never change again).
reports/export.py and reports/closing.py do the work; this only wires the command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cli.errors import CommandError, one_line
from ledger.database import create_engine, reachable, require_migrated
from ledger.logs import get_logger
from ledger.settings import Settings
from reports import closing, export, periods

log = get_logger("cli")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the journal as books: beancount, hledger, csv-gl, xero-csv, qbo-csv",
        description="Write the double-entry journal (report_journal) in an accounting tool's "
        "import layout, amounts in the currency's major units. --group-by payout (default) "
        "sums everything an automatic payout paid out, and the payout itself, into one entry "
        "per payout, the rest per day; day and transaction give finer books. One account and "
        "mode per export (default: the platform, test mode unless --livemode). Xero and "
        "QuickBooks Online take one currency per file (and Xero 300 lines): with several, "
        "--output FILE writes FILE's name with .CUR (.CUR.2, ...) before its suffix for each. "
        "Same store, same bytes.",
    )
    parser.add_argument(
        "--format", choices=export.FORMATS, help="the layout (required but with --print-mapping)"
    )
    parser.add_argument("--since", metavar="DATE", help="from this instant (inclusive; a date "
                        "is midnight UTC)")  # fmt: skip
    parser.add_argument("--until", metavar="DATE", help="up to this instant (exclusive)")
    parser.add_argument("--group-by", dest="group_by", choices=export.GROUPS, default="payout")
    parser.add_argument(
        "--accounts", metavar="MAPPING.toml", type=Path,
        help="ledger account -> your chart of accounts ([accounts] table; replaces the "
        "default, see docs/BOOKS.md); --print-mapping shows the default",
    )  # fmt: skip
    parser.add_argument("--print-mapping", action="store_true",
                        help="print the default mapping as TOML and exit")  # fmt: skip
    parser.add_argument("--account", default="platform",
                        help="the Connect account (acct_...) or 'platform' (default)")  # fmt: skip
    parser.add_argument("--livemode", action="store_true", help="live-mode postings")
    parser.add_argument("--currency", help="only this currency (e.g. usd)")
    parser.add_argument("--output", metavar="FILE", type=Path, help="write here, not stdout")
    parser.set_defaults(handler=cmd_export)

    close = subparsers.add_parser(
        "close-period",
        help="close a month: its export never changes again; late facts become adjustments",
        description="Freeze the books of one account and mode up to the end of MONTH (the "
        "first close freezes all history before it; months close in order). A fact that "
        "arrives later for a closed month posts, in every export, as an adjustment entry dated "
        "the first instant of the first open month, naming the entry it adjusts. --reopen "
        "unfreezes the last closed month; every close and reopen is logged (period_close_log).",
    )
    close.add_argument("period", metavar="MONTH", help="the month, YYYY-MM (e.g. 2026-11)")
    close.add_argument("--account", default="platform",
                       help="the Connect account (acct_...) or 'platform' (default)")  # fmt: skip
    close.add_argument("--livemode", action="store_true", help="live mode (default: test mode)")
    close.add_argument("--reopen", action="store_true", help="reopen the last closed month")
    close.set_defaults(handler=cmd_close_period)


def _targets(output: Path | None, files: dict[str, str]) -> list[tuple[Path | None, str]]:
    if len(files) == 1:
        return [(output, next(iter(files.values())))]
    if output is None:
        raise export.ExportError(
            f"this format takes one currency (and for Xero 300 lines) per file and the export "
            f"makes {len(files)} ({', '.join(sorted(files))}): give --currency or --output FILE"
        )
    return [
        (output.with_name(f"{output.stem}.{code}{output.suffix}"), text)
        for code, text in sorted(files.items())
    ]


def _write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a file: write beside it, then rename over it."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=".export-")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    if args.print_mapping:
        sys.stdout.write(export.default_mapping_toml())
        return 0
    try:
        if args.format is None:
            raise export.ExportError(f"--format is required: {', '.join(export.FORMATS)}")
        mapping = export.load_mapping(args.accounts) if args.accounts else None
        since = periods.parse_instant(args.since) if args.since else None
        until = periods.parse_instant(args.until) if args.until else None
    except ValueError as error:  # ExportError and parse_instant's
        raise CommandError(str(error)) from None
    engine = create_engine(settings.database_url, create=False, read_only=True)
    require_migrated(engine)
    try:
        with reachable():
            files = export.export(
                engine, args.format, args.group_by, mapping,
                account=None if args.account == "platform" else args.account,
                livemode=args.livemode, since=since, until=until, currency=args.currency,
            )  # fmt: skip
        targets = _targets(args.output, files)
    except ValueError as error:
        raise CommandError(str(error)) from None
    except sa.exc.DBAPIError as error:
        detail = one_line(str(error.orig or error))
        raise CommandError(
            f"cannot read the journal ({detail}); has `stripe-ledger migrate` run?"
        ) from None
    finally:
        engine.dispose()
    for path, text in targets:
        if path is None:
            sys.stdout.write(text)
            continue
        try:
            _write_atomically(path, text)
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from None
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_close_period(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    account = None if args.account == "platform" else args.account
    scope = f"{args.account}, {'live' if args.livemode else 'test'} mode"
    now_s = int(time.time())
    try:
        if args.reopen:
            released = closing.reopen_period(engine, args.period, account, args.livemode, now_s)
            log.warning("period_reopened", period=args.period, scope=scope, postings=released)
            print(f"reopened {args.period} ({scope}): {released} frozen postings released")
            return 0
        closure = closing.close_period(engine, args.period, account, args.livemode, now_s)
    except ValueError as error:  # PeriodError
        raise CommandError(str(error)) from None
    print(
        f"closed {closure.period} ({scope}): {closure.postings} postings frozen, "
        f"sha256 {closure.digest}"
    )
    return 0
