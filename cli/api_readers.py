"""What the commands that read Stripe's API share: ``backfill``, ``reconcile``, ``balance-sync``
and ``thin-events fetch``.

The signals that stop them at a page boundary, the API client and the event store, the flags
they have in common (``--account/--all-accounts``, ``--once/--every``), and their loop: the
scopes of a pass (``--restart`` forgets the first pass's progress), a progress bar per pass, the
warnings, the wait for the next pass.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from cli.progress import Progress
from ledger.backfill import iter_accounts
from ledger.database import create_engine, require_migrated
from ledger.logs import get_logger
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store
from ledger.stripe_api import StripeApi, api_key_from_env

log = get_logger("cli.backfill")


class _Listed(Protocol):
    listed: int  # what a pass has listed so far: the progress bar's count


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event: the worker stops after the current page."""
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        log.info("stop_requested", signal=signum, then="finish the current page")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def stripe_api(stop: threading.Event, settings: Settings) -> StripeApi:
    """The API client of STRIPE_API_KEY(_FILE) and STRIPE_API_BASE; its retry waits end on
    ``stop``."""
    return StripeApi(api_key_from_env(), base=settings.stripe_api_base, wait=stop.wait)


def event_store(settings: Settings) -> EventStore:
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    return open_event_store(engine)


def account_arguments(parser: argparse.ArgumentParser) -> None:
    """--account ACCT | --all-accounts (neither: the platform), as every API reader takes."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--account", metavar="ACCT", help="one connected account (Stripe-Account: acct_...)"
    )
    scope.add_argument(
        "--all-accounts",
        action="store_true",
        help="the platform and every connected account listed by GET /v1/accounts",
    )


def once_or_every_arguments(parser: argparse.ArgumentParser, *, once: str, every: str) -> None:
    """--once (the default) | --every DURATION; ``once``/``every`` are their help lines."""
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--once", action="store_true", help=once)
    runs.add_argument("--every", metavar="DURATION", help=every)


def pass_scopes(
    api: StripeApi, args: argparse.Namespace, forget: Callable[[str | None], object]
) -> list[str | None]:
    """The account scopes of this pass (None: the platform). With --restart, ``forget`` each
    scope's progress first, on the first pass only."""
    accounts = list(iter_accounts(api, args.account, args.all_accounts))
    if args.restart:
        for account in accounts:
            forget(account)
        args.restart = False  # only the first pass starts over
    return accounts


@contextlib.contextmanager
def progress_bar(label: str, logger: Any) -> Iterator[Callable[[_Listed], None]]:
    """A pass's ``on_page``: a progress bar on stderr (log lines to ``logger`` off a terminal)
    counting what the pass has listed; finished when the block ends."""
    bar = Progress(label, 0, logger)
    try:
        yield lambda totals: bar.update(totals.listed, totals.listed)
    finally:
        bar.finish()


def warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def last_pass(every_s: float | None, stop: threading.Event) -> bool:
    """After a pass: True when the command is done (one pass, a stop asked, or asked while
    waiting ``every_s`` for the next pass)."""
    return every_s is None or stop.is_set() or stop.wait(every_s)
