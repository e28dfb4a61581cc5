"""``stripe-ledger``: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import signal
import sys
from collections.abc import Sequence

from cli import (
    backfill_cmds,
    balance_sync_cmd,
    books_cmd,
    dashboard_cmd,
    dead_letters_cmd,
    demo_cmd,
    event_types_cmd,
    ingest_cmd,
    ledger_cmds,
    project_cmd,
    reports_cmds,
    serve_cmd,
    sqs_cmd,
    thin_events_cmd,
)
from cli.run import quiet_stdout as _quiet_stdout
from cli.run import run_handler

# Each module adds its subcommands; the order is the data flow: ingest -> ledger -> projections.
COMMAND_MODULES = [
    ingest_cmd,
    ledger_cmds,
    sqs_cmd,
    dead_letters_cmd,
    backfill_cmds,
    balance_sync_cmd,
    thin_events_cmd,
    project_cmd,
    reports_cmds,
    books_cmd,
    dashboard_cmd,
    serve_cmd,
    demo_cmd,
    event_types_cmd,
]

ENVIRONMENT_HELP = """\
environment:
  LEDGER_DATABASE_URL     event store and projections (default sqlite:///stripe-ledger.db)
  LEDGER_KAFKA_BOOTSTRAP  Kafka bootstrap servers, host:port[,host:port]
  LEDGER_KAFKA_TOPIC      topic of Stripe events (default stripe.events)
  LEDGER_KAFKA_GROUP      consumer group (default stripe-ledger)
  STRIPE_WEBHOOK_SECRET   endpoint signing secret(s), whsec_..., comma-separated while rolling
                          (or STRIPE_WEBHOOK_SECRET_FILE: a file holding them)
  LEDGER_EVENTBRIDGE_SOURCES  consume-sqs: accepted partner event source(s), comma-separated
  STRIPE_API_KEY          sk_/rk_ key for backfill, reconcile, balance-sync and
                          thin-events fetch (or STRIPE_API_KEY_FILE)
  STRIPE_API_BASE         another Stripe API base URL, e.g. a local stripe-mock
  LEDGER_DASHBOARD_TOKEN  the dashboard's token, required when it binds off loopback
  LEDGER_LOG_FORMAT       auto | json | console (default auto: console on a terminal)
  LEDGER_LOG_LEVEL        debug | info | warning (default info)
"""


def version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" outside an install."""
    try:
        return importlib.metadata.version("stripe-ledger")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-ledger",
        description="An event-sourced payment ledger for Stripe: verified webhooks -> Kafka -> "
        "append-only event store -> rebuildable projections -> SQL reports.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stripe-ledger {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


# The workers decode thousands of JSON payloads a second, each a few hundred short-lived
# containers: with the default gen-0 threshold (700) the cyclic collector ran every few events
# and rescanned the import-time heap (about a third of the consumer's decode time). Start-up
# objects are frozen out of collection; cycles are still collected, just in larger steps.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what start-up allocated and collect in larger steps (see GC_THRESHOLDS)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_gc()
    code = run_handler(args)
    try:
        sys.stdout.flush()  # here, not at exit: a reader that left is then a quiet exit
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
