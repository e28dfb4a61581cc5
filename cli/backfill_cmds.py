"""``backfill`` and ``reconcile``: read Stripe's API to close the gaps webhooks leave.

The only commands that need STRIPE_API_KEY (or STRIPE_API_KEY_FILE). The Kafka path
(``--via-kafka``) produces the records ingest produces (ledger/kafka_wire.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import api_readers
from cli.errors import CommandError
from cli.progress import Progress
from cli.run import standalone
from ledger import kafka_wire
from ledger.backfill import (
    DEFAULT_STATE_FILE,
    BackfillError,
    BackfillState,
    BackfillTotals,
    PageOutcome,
    ReconcileReport,
    Sink,
    backfill,
    iter_accounts,
    parse_duration_s,
    parse_since,
    parse_types,
    reconcile_events,
    scope_key,
    store_sink,
)
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.settings import Settings
from ledger.stripe_api import (
    Interrupted,
    StripeApiError,
)
from ledger.timespec import TimeSpecError

if TYPE_CHECKING:
    from projections.fee_report import FeeReport

DEFAULT_SINCE = "30d"  # everything the Events API still has

log = get_logger("cli.backfill")


def kafka_sink(settings: Settings, topic: str) -> tuple[Sink, Any]:
    """Produce each event like ingest does (ledger/kafka_wire.py); a page counts as done only
    when the broker acknowledged every record of it."""
    producer = kafka_wire.new_producer(settings, client_id="stripe-ledger-backfill")

    def sink(page: Sequence[StripeEvent]) -> PageOutcome:
        sent = kafka_wire.produce_acknowledged(
            producer, topic, page, received_at_ms=kafka_wire.now_ms()
        )
        return PageOutcome(sent, None, None)

    return sink, producer


def _since(args: argparse.Namespace, now: dt.datetime) -> int:
    return parse_since(args.since or DEFAULT_SINCE, now)


def _summary(totals: BackfillTotals, via_kafka: bool) -> str:
    counts = (
        f"{totals.matched} produced to Kafka (the consumer skips the known ones)"
        if via_kafka
        else f"{totals.appended} new, {totals.known} already known"
    )
    return (
        f"backfill: {totals.listed} events listed in {totals.pages} pages over {totals.scopes} "
        f"account scope(s); {totals.matched} matching: {counts}"
        + ("; interrupted, resume by running again" if totals.interrupted else "")
    )


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    try:
        patterns = parse_types(args.types)
        every_s = parse_duration_s(args.every) if args.every else None
        parse_since(args.since or DEFAULT_SINCE, dt.datetime.now(dt.UTC))  # fail early
    except (BackfillError, TimeSpecError) as error:
        raise CommandError(str(error)) from None
    stop = api_readers.stop_on_signals()
    api = api_readers.stripe_api(stop, settings)
    producer = None
    if args.via_kafka:
        topic = args.topic or settings.kafka_topic
        sink, producer = kafka_sink(settings, topic)
        sink_id = f"kafka:{settings.kafka_bootstrap}/{topic}"
    else:
        store = api_readers.event_store(settings)
        sink = store_sink(store)
        sink_id = "store:" + store.engine.url.render_as_string(hide_password=True)
    state_path = None if args.state_file == "-" else Path(args.state_file)
    try:
        state = BackfillState(state_path)
        while True:
            now = dt.datetime.now(dt.UTC)
            accounts = api_readers.pass_scopes(
                api,
                args,
                lambda account: state.scopes.pop(scope_key(api, account, patterns, sink_id), None),
            )
            with api_readers.progress_bar("backfill", log) as show:
                totals = backfill(
                    api,
                    sink,
                    state,
                    since=_since(args, now),
                    now=now,
                    accounts=accounts,
                    patterns=patterns,
                    sink_id=sink_id,
                    should_stop=stop.is_set,
                    on_page=show,
                )
            api_readers.warn(totals.warnings)
            print(_summary(totals, args.via_kafka), flush=True)
            if api_readers.last_pass(every_s, stop):
                return 0
    except Interrupted:
        print("backfill: stopped while waiting to retry; resume by running again", flush=True)
        return 0
    except (StripeApiError, BackfillError) as error:
        print(f"stripe-ledger backfill: error: {error}", file=sys.stderr)
        return 1
    finally:
        if producer is not None:
            producer.close(timeout=10)


def _print_reconcile(report: ReconcileReport) -> None:
    window = (
        f"{dt.datetime.fromtimestamp(report.since, dt.UTC).isoformat()} .. "
        f"{dt.datetime.fromtimestamp(report.until, dt.UTC).isoformat()}"
    )
    print(
        f"reconcile {window}: Stripe lists {report.listed} events, {report.stored} stored, "
        f"{report.missing_count} missing"
    )
    for event_type in sorted(report.missing):
        ids = report.missing[event_type]
        print(f"  missing {event_type}: {len(ids)}: {' '.join(ids)}")
    if report.backfilled:
        print(f"  backfilled {report.backfilled} missing events (source 'backfill')")


def _print_fees(report: FeeReport) -> None:
    print("balance-transaction fees (minor units) by account and currency:")
    if report.note:
        print(f"  note: {report.note}")
    if not report.rows:
        print("  no balance transactions in the window")
    for row in report.rows:
        journal = row.journal_fees if report.journal_available else "n/a"
        drift = row.drift if report.journal_available else "n/a"
        print(
            f"  {row.account or 'platform'} {row.currency}: {row.transactions} transactions, "
            f"stripe fees {row.stripe_fees}, journal fees {journal}, drift {drift}, "
            f"unposted {row.unposted if report.journal_available else 'n/a'}"
        )
    print("  (posting these fees into the journal is left to the projections)")


def _as_json(report: ReconcileReport, fees: FeeReport | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "since": report.since,
        "until": report.until,
        "listed": report.listed,
        "stored": report.stored,
        "missing": {k: v for k, v in sorted(report.missing.items())},
        "missing_count": report.missing_count,
        "backfilled": report.backfilled,
        "warnings": report.warnings,
    }
    if fees is not None:
        out["fees"] = {
            "journal_available": fees.journal_available,
            "note": fees.note,
            "rows": [
                {
                    "account": row.account,
                    "currency": row.currency,
                    "transactions": row.transactions,
                    "stripe_fees": row.stripe_fees,
                    "journal_fees": row.journal_fees if fees.journal_available else None,
                    "drift": row.drift if fees.journal_available else None,
                    "unposted": row.unposted if fees.journal_available else None,
                }
                for row in fees.rows
            ],
        }
    return out


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    try:
        patterns = parse_types(args.types)
        now = dt.datetime.now(dt.UTC)
        since = _since(args, now)
    except (BackfillError, TimeSpecError) as error:
        raise CommandError(str(error)) from None
    # The fee side reads the journal's view: the projections' code, loaded only for reconcile.
    from projections.fee_report import fee_report

    stop = api_readers.stop_on_signals()
    api = api_readers.stripe_api(stop, settings)
    store = api_readers.event_store(settings)
    try:
        accounts = list(iter_accounts(api, args.account, args.all_accounts))
        progress = Progress("reconcile", 0, log)
        try:
            report = reconcile_events(
                api,
                store.engine,
                since=since,
                now=now,
                accounts=accounts,
                patterns=patterns,
                sink=store_sink(store) if args.backfill else None,
                on_page=lambda n: progress.update(n, n),
            )
            fees = (
                fee_report(api, store.engine, since=report.since, now=now, accounts=accounts)
                if args.balance_transactions
                else None
            )
        finally:
            progress.finish()
    except Interrupted:
        print("reconcile: stopped", file=sys.stderr)
        return 130
    except (StripeApiError, BackfillError) as error:
        print(f"stripe-ledger reconcile: error: {error}", file=sys.stderr)
        return 1
    api_readers.warn(report.warnings)
    if args.json:
        print(json.dumps(_as_json(report, fees), indent=1))
    else:
        _print_reconcile(report)
        if fees is not None:
            _print_fees(fees)
    unresolved = report.missing_count - report.backfilled
    return 1 if unresolved > 0 else 0


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help=f"start of the window: a date (2026-11-01, UTC), an ISO datetime, or a duration "
        f"back from now (72h, 30d); default {DEFAULT_SINCE}, all the Events API keeps",
    )
    parser.add_argument(
        "--types",
        metavar="PATTERNS",
        help="comma-separated event types, '*' wildcards allowed (charge.*,invoice.paid)",
    )
    api_readers.account_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backfill_parser = subparsers.add_parser(
        "backfill",
        help="append the events of Stripe's Events API (last 30 days) webhooks may have missed",
        description="Page through GET /v1/events for the window and append every event through "
        "the idempotent store path (source 'backfill'), or onto the Kafka topic with "
        "--via-kafka. Resumable: a state file records which time ranges are complete, so a "
        "rerun only reads the rest. Needs STRIPE_API_KEY or STRIPE_API_KEY_FILE; STRIPE_API_BASE "
        "points at another API base (stripe-mock). SIGTERM/SIGINT stop after the current page, "
        "exit 0. See docs/BACKFILL.md.",
    )
    _scope_arguments(backfill_parser)
    backfill_parser.add_argument(
        "--via-kafka",
        action="store_true",
        help="produce to the Kafka topic (as ingest does) instead of appending to the store",
    )
    backfill_parser.add_argument(
        "--topic", help="with --via-kafka: the topic (default LEDGER_KAFKA_TOPIC)"
    )
    backfill_parser.add_argument(
        "--state-file",
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help=f"where completed time ranges are kept (default ./{DEFAULT_STATE_FILE}; "
        "- keeps none: every run reads its whole window)",
    )
    backfill_parser.add_argument(
        "--restart",
        action="store_true",
        help="forget the completed ranges of these scopes and read the whole window again",
    )
    backfill_parser.add_argument(
        "--every",
        metavar="DURATION",
        help="keep running: a pass every DURATION (10m); SIGTERM exits 0 after the current page",
    )
    backfill_parser.set_defaults(handler=cmd_backfill)

    reconcile = subparsers.add_parser(
        "reconcile",
        help="report events Stripe lists that the store lacks; fees vs balance transactions",
        description="List the window's events from Stripe and report, by type, the ids the "
        "event store does not have (--backfill appends them). --balance-transactions also "
        "lists GET /v1/balance_transactions and compares their fees per currency with the fees "
        "the journal posted. Exit 1 when events are missing (and not backfilled).",
    )
    _scope_arguments(reconcile)
    reconcile.add_argument(
        "--backfill", action="store_true", help="append the missing events (source 'backfill')"
    )
    reconcile.add_argument(
        "--balance-transactions",
        action="store_true",
        help="compare balance-transaction fees with the journal's, per account and currency",
    )
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON")
    reconcile.set_defaults(handler=cmd_reconcile)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.backfill_cmds backfill ...``: these commands without cli/main.py, with the
    same settings, logging and error handling (used by the tests)."""
    return standalone(register, argv)


if __name__ == "__main__":
    sys.exit(main())
