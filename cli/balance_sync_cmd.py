"""``balance-sync``: wires ledger/balance_sync.py to the command line (see docs/BALANCE_SYNC.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence

from cli import api_readers
from cli.errors import CommandError
from cli.run import standalone
from ledger.balance_sync import (
    RUN_S_MAX_DEFAULT,
    BalanceSyncError,
    SyncTotals,
    balance_sync,
    forget_cursor,
)
from ledger.logs import get_logger
from ledger.settings import Settings
from ledger.stripe_api import Interrupted, StripeApiError
from ledger.timespec import TimeSpecError, parse_duration_s, parse_since

DEFAULT_SINCE = "30d"
PROG = "stripe-ledger balance-sync"

log = get_logger("cli.balance_sync")


def _summary(totals: SyncTotals) -> str:
    line = (
        f"balance-sync: {totals.listed} balance transactions listed in {totals.pages} pages, "
        f"{totals.payout_listed} more under {totals.payouts} automatic payouts, over "
        f"{totals.scopes} scope(s) ({totals.complete_scopes} complete); facts: "
        f"{totals.appended} new, {totals.known} already stored; {totals.openings} opening "
        "balance(s) recorded"
    )
    if totals.interrupted:
        line += f"; stopped ({totals.stop_reason}): run again to continue"
    return line


def _parse(args: argparse.Namespace) -> tuple[int | None, float]:
    every_s = parse_duration_s(args.every) if args.every else None
    run_s_max = parse_duration_s(args.max_run_time) if args.max_run_time else RUN_S_MAX_DEFAULT
    now = dt.datetime.now(dt.UTC)
    since_s = parse_since(args.since, now)  # fail before touching anything
    if args.until and parse_since(args.until, now) < since_s:
        raise TimeSpecError("--until is before --since")
    return every_s, float(run_s_max)


def _clock(args: argparse.Namespace) -> Callable[[], int]:
    """The top of each pass: now, or --until (read again each pass: '1h' moves with time)."""
    if not args.until:
        return lambda: int(time.time())
    return lambda: parse_since(args.until, dt.datetime.now(dt.UTC))


def cmd_balance_sync(args: argparse.Namespace, settings: Settings) -> int:
    try:
        every_s, run_s_max = _parse(args)
    except TimeSpecError as error:
        raise CommandError(str(error)) from None
    stop = api_readers.stop_on_signals()
    api = api_readers.stripe_api(stop, settings)
    store = api_readers.event_store(settings)
    try:
        while True:
            accounts = api_readers.pass_scopes(
                api, args, lambda account: forget_cursor(store.engine, account, api.livemode)
            )
            with api_readers.progress_bar("balance-sync", log) as show:
                totals = balance_sync(
                    api,
                    store,
                    accounts=accounts,
                    since_s=parse_since(args.since, dt.datetime.now(dt.UTC)),
                    run_s_max=run_s_max,
                    clock=_clock(args),
                    should_stop=stop.is_set,
                    on_page=show,
                )
            api_readers.warn(totals.warnings)
            print(_summary(totals), flush=True)
            if api_readers.last_pass(every_s, stop):
                return 0
    except Interrupted:
        print("balance-sync: stopped while waiting to retry; run again to continue", flush=True)
        return 0
    except (StripeApiError, BalanceSyncError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "balance-sync",
        help="append Stripe's balance transactions (fees, payouts, settlement) as facts",
        description="Page through GET /v1/balance_transactions (created ranges, source "
        "expanded) and, for every automatic payout seen, GET /v1/balance_transactions?payout=, "
        "appending each transaction as an immutable fact (type ledger.balance_transaction, "
        "source 'backfill'); a changed transaction is a new fact. At the end of each complete "
        "pass GET /v1/balance is stored, and on the first one the opening balance at --since. "
        "Resumable: the cursor lives in the database (table balance_sync_cursors), moved in the "
        "same transaction as each page's facts. Needs STRIPE_API_KEY or STRIPE_API_KEY_FILE "
        "(never logged); STRIPE_API_BASE points at another API base (the demo's stand-in, "
        "stripe-mock). SIGTERM/SIGINT stop after the current page, exit 0. Progress goes to "
        "stderr, the summary to stdout. See docs/BALANCE_SYNC.md.",
    )
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        metavar="WHEN",
        help="start of the synced range: a date (2026-11-01, UTC), an ISO datetime, unix "
        f"seconds or a duration back from now (30d); default {DEFAULT_SINCE}. Balance "
        "transactions are kept by Stripe for the account's whole life.",
    )
    parser.add_argument(
        "--until",
        metavar="WHEN",
        help="end of the synced range, in the same forms as --since; default now. A range "
        "ending before now stores no balance and no opening balance (Stripe's balance is "
        "today's); a later --until treats that moment as now (a stand-in's dated history, as "
        "the demo's)",
    )
    api_readers.once_or_every_arguments(
        parser,
        once="one pass, then exit (the default)",
        every="keep running: a pass every DURATION (10m); each pass reads only what is new or "
        "still pending",
    )
    api_readers.account_arguments(parser)
    parser.add_argument(
        "--max-run-time",
        metavar="DURATION",
        help="stop a pass (resumably, at a page boundary) after this long; default "
        f"{RUN_S_MAX_DEFAULT // 60}m",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="forget these scopes' cursors and read the whole range again (stores nothing twice)",
    )
    parser.set_defaults(handler=cmd_balance_sync)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.balance_sync_cmd balance-sync ...`` (the tests' entry point)."""
    return standalone(register, argv)


if __name__ == "__main__":
    sys.exit(main())
