"""``stripe-ledger thin-events``: what the store holds of v2 thin events, and their fetch worker.

The worker is ``ledger.thin_events``; only the flags and the loop live here (the signals, the
store and --once/--every are cli/api_readers.py's: the same API-side worker shape).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cli import api_readers
from ledger.settings import Settings
from ledger.stripe_api import (
    Interrupted,
    StripeApi,
    StripeApiError,
    api_key_from_env,
)
from ledger.thin_events import (
    EVENTS_PER_RUN_DEFAULT,
    EVENTS_PER_RUN_MAX,
    REQUESTS_PER_S_DEFAULT,
    REQUESTS_PER_S_MAX,
    RateLimit,
    counts,
    fetch,
)
from ledger.timespec import TimeSpecError, parse_duration_s

KEY_REFUSED_STATUSES = (401, 403)  # the key is wrong or lacks a permission: waiting won't help


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    found = counts(api_readers.event_store(settings).engine)
    if args.json:
        print(json.dumps(dataclasses.asdict(found)))
    else:
        print(
            f"thin events: {found.stored} stored, {found.fetched} fetched "
            f"({found.gone} gone at Stripe), {found.pending} pending"
        )
    return 0


def _checked(args: argparse.Namespace) -> tuple[float | None, str | None]:
    """(--every in seconds or None, a one-line error or None)."""
    if not 0 < args.limit <= EVENTS_PER_RUN_MAX:
        return None, f"--limit must be between 1 and {EVENTS_PER_RUN_MAX}"
    if not 0 < args.rate <= REQUESTS_PER_S_MAX:
        return None, f"--rate must be above 0 and at most {REQUESTS_PER_S_MAX:g} requests/s"
    if args.every is None:
        return None, None
    try:
        return float(parse_duration_s(args.every)), None
    except TimeSpecError as error:
        return None, f"--every: {error}"


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    every_s, problem = _checked(args)
    if problem:
        print(f"stripe-ledger thin-events fetch: {problem}", file=sys.stderr)
        return 2
    api_key = api_key_from_env()  # SettingsError (exit 2) when no key is configured
    store = api_readers.event_store(settings)
    stop = api_readers.stop_on_signals()
    api = StripeApi(api_key, base=settings.stripe_api_base, wait=stop.wait)
    limit = RateLimit(args.rate, stop.wait)
    while True:
        try:
            totals = fetch(store, api, limit, events_max=args.limit, should_stop=stop.is_set)
            print(totals.summary(), flush=True)
        except Interrupted:
            print("thin-events fetch: stopped while waiting to retry", flush=True)
            return 0
        except StripeApiError as error:
            print(f"stripe-ledger thin-events fetch: {error}", file=sys.stderr, flush=True)
            if every_s is None or error.status in KEY_REFUSED_STATUSES:
                return 1
        if api_readers.last_pass(every_s, stop):
            return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "thin-events",
        help="v2 thin events: how many are stored, and fetch the objects they refer to",
        description="Thin events (object 'v2.core.event') are stored by every door as what "
        "they are; the projections skip them. 'fetch' reads, for each stored thin event without "
        "one, GET /v2/core/events/{id} and then its related object, and appends what it read as "
        "a ledger.thin_event_object fact (docs/INGEST.md, 'Thin events').",
    )
    commands = parser.add_subparsers(dest="thin_command", metavar="SUBCOMMAND")
    commands.required = True
    status = commands.add_parser("status", help="thin events stored, fetched, gone, pending")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.set_defaults(handler=cmd_status)
    fetcher = commands.add_parser(
        "fetch",
        help="fetch the related objects of pending thin events (needs STRIPE_API_KEY)",
        description="Fetch, at most --limit per run and --rate requests a second, the full "
        "event and the related object of each stored thin event of the key's mode that has no "
        "fact yet, and append each as a ledger.thin_event_object fact (source 'backfill', "
        "idempotent by content hash). Needs STRIPE_API_KEY or STRIPE_API_KEY_FILE; "
        "STRIPE_API_BASE points at another API base. 429 and 5xx are retried (Retry-After "
        "honoured). Exit 1 when a request fails for good; SIGTERM/SIGINT exit 0 after the "
        "thin event in flight.",
    )
    api_readers.once_or_every_arguments(
        fetcher,
        once="one run, then exit (the default)",
        every="keep running: a run every DURATION (1m, 10m)",
    )
    fetcher.add_argument(
        "--limit",
        type=int,
        default=EVENTS_PER_RUN_DEFAULT,
        metavar="N",
        help=f"thin events per run (default {EVENTS_PER_RUN_DEFAULT}, "
        f"at most {EVENTS_PER_RUN_MAX})",
    )
    fetcher.add_argument(
        "--rate",
        type=float,
        default=REQUESTS_PER_S_DEFAULT,
        metavar="PER_S",
        help=f"requests a second at most (default {REQUESTS_PER_S_DEFAULT:g})",
    )
    fetcher.set_defaults(handler=cmd_fetch)
