"""``stripe-ledger``: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import signal
import sys
from collections.abc import Sequence

import sqlalchemy as sa

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
from cli.errors import CommandError, one_line
from ledger.database import DatabaseError, first_line
from ledger.importer import ImportFileError
from ledger.logs import configure
from ledger.settings import Settings, SettingsError

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


def run_handler(args: argparse.Namespace) -> int:
    """Settings from the environment, logging, the subcommand; configuration errors -> exit 2.

    The one place that does this: handlers take ``(args, settings)`` and do neither again."""
    try:
        settings = Settings.from_env()
        configure(settings.log_format, settings.log_level)
        return int(args.handler(args, settings))
    except ImportFileError as error:  # its first line, then each bad line of the file
        return fail(args.command, str(error), details=True)
    except (SettingsError, DatabaseError, CommandError) as error:
        return fail(args.command, str(error))
    except sa.exc.OperationalError as error:  # the database went away, or never answered
        return fail(args.command, f"cannot reach the database: {first_line(error)}")
    except sa.exc.DBAPIError as error:  # e.g. a role without the privilege, a read-only file
        return fail(args.command, f"the database refused: {first_line(error)}")
    except KeyboardInterrupt:
        print(f"stripe-ledger {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stripe-ledger report ... | head`: the reader left; say nothing
        _quiet_stdout()
        return 128 + signal.SIGPIPE


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (a test's capture): nothing left to flush
    finally:
        os.close(devnull)


def fail(command: str, message: str, details: bool = False) -> int:
    """Every command's error line (stderr) and exit status: configuration and input errors.

    ``details``: the lines after the first are printed too (import's list of bad lines)."""
    print(f"stripe-ledger {command}: error: {one_line(message)}", file=sys.stderr)
    if details:
        for line in message.strip().splitlines()[1:]:
            print(line, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
