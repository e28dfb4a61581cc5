"""``stripe-ledger``: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from cli import (
    backfill_cmds,
    books_cmd,
    demo_cmd,
    event_types_cmd,
    ingest_cmd,
    ledger_cmds,
    project_cmd,
    reports_cmds,
    serve_cmd,
    sqs_cmd,
)
from ledger.database import DatabaseError
from ledger.importer import ImportFileError
from ledger.logs import configure
from ledger.settings import Settings, SettingsError

# Each module adds its subcommands; the order is the data flow: ingest -> ledger -> projections.
COMMAND_MODULES = [
    ingest_cmd,
    ledger_cmds,
    sqs_cmd,
    backfill_cmds,
    project_cmd,
    reports_cmds,
    books_cmd,
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
  STRIPE_API_KEY          sk_/rk_ key for backfill and reconcile only (or STRIPE_API_KEY_FILE)
  STRIPE_API_BASE         another Stripe API base URL, e.g. a local stripe-mock
  LEDGER_LOG_FORMAT       auto | json | console (default auto: console on a terminal)
  LEDGER_LOG_LEVEL        debug | info | warning (default info)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-ledger",
        description="An event-sourced payment ledger for Stripe: verified webhooks -> Kafka -> "
        "append-only event store -> rebuildable projections -> SQL reports.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    return run_handler(args)


def run_handler(args: argparse.Namespace) -> int:
    """Settings from the environment, logging, the subcommand; configuration errors -> exit 2.

    The one place that does this: handlers take ``(args, settings)`` and do neither again."""
    try:
        settings = Settings.from_env()
        configure(settings.log_format, settings.log_level)
        return int(args.handler(args, settings))
    except (SettingsError, DatabaseError, ImportFileError) as error:
        print(f"stripe-ledger {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
