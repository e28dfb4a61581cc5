"""``stripe-ledger``: one console script, one subcommand per job.

Start-up imports only what the command that runs needs (issue 21: ``--help`` took 1.7 s when
every command module, and with them stripe, SQLAlchemy, Kafka, uvicorn and boto3, was imported
at start). ``COMMANDS`` names each subcommand's module and its one-line help; the parser lists
every command from that table and only the module of the command on the line is imported, to
add its real sub-parser (tests/test_cli_start.py checks both the imports and that the table's
help lines are the modules' own).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from cli.run import quiet_stdout as _quiet_stdout
from cli.run import run_handler

# Subcommand -> (the module whose ``register`` adds it, its one-line help). The order is the
# data flow (ingest -> ledger -> projections) and the order of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": (
        "cli.ingest_cmd",
        "serve the Stripe webhook endpoint and put verified events on Kafka",
    ),
    "migrate": (
        "cli.ledger_cmds",
        "create or upgrade the database schema (Alembic) to the newest revision",
    ),
    "consume": (
        "cli.ledger_cmds",
        "append Stripe events from Kafka to the event store (long-running worker)",
    ),
    "import": (
        "cli.ledger_cmds",
        "append Stripe events from files (JSON lines, an array, one event, a list object)",
    ),
    "copy-store": (
        "cli.ledger_cmds",
        "copy every event of another store (e.g. the SQLite file) into LEDGER_DATABASE_URL",
    ),
    "consume-sqs": (
        "cli.sqs_cmd",
        "append Stripe events from Amazon EventBridge via an SQS queue (long-running)",
    ),
    "dead-letters": (
        "cli.dead_letters_cmd",
        "inspect dead letters (records that were not Stripe events) and retry them",
    ),
    "backfill": (
        "cli.backfill_cmds",
        "append the events of Stripe's Events API (last 30 days) webhooks may have missed",
    ),
    "reconcile": (
        "cli.backfill_cmds",
        "report events Stripe lists that the store lacks; fees vs balance transactions",
    ),
    "balance-sync": (
        "cli.balance_sync_cmd",
        "append Stripe's balance transactions (fees, payouts, settlement) as facts",
    ),
    "thin-events": (
        "cli.thin_events_cmd",
        "v2 thin events: how many are stored, and fetch the objects they refer to",
    ),
    "project": (
        "cli.project_cmd",
        "fold the event store into the projections (journal, invoices, disputes)",
    ),
    "rebuild": (
        "cli.projections_cmds",
        "rebuild projections from the event store, swapping them in atomically",
    ),
    "verify": ("cli.projections_cmds", "check the ledger's invariants; exit 1 if one fails"),
    "report": ("cli.report_cmd", "print a report view (report_NAME) as a table, JSON or CSV"),
    "export": (
        "cli.books_cmd",
        "export the journal as books: beancount, hledger, csv-gl, xero-csv, qbo-csv",
    ),
    "close-period": (
        "cli.books_cmd",
        "close a month: its export never changes again; late facts become adjustments",
    ),
    "dashboard": (
        "cli.dashboard_cmd",
        "read-only web pages over the report views (balances, payouts, journal, ...)",
    ),
    "serve": (
        "cli.serve_cmd",
        "embedded mode: webhook endpoint + event store + projections in one command",
    ),
    "demo": (
        "cli.demo_cmd",
        "post a realistic, signed Stripe history and print the reports (no services needed)",
    ),
    "event-types": (
        "cli.event_types_cmd",
        "list every Stripe event type and what the projections do with it",
    ),
}
# Each module once, in the table's order.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))

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
    import importlib.metadata  # only for --version: it imports email, zipfile, csv (start-up)

    try:
        return importlib.metadata.version("stripe-ledger")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: like argparse's "version" action, the version read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(f"stripe-ledger {version()}")  # stdout, as argparse's own version action
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that command's module is imported (the others
    are listed by name and help: enough for ``--help`` and for an unknown command's error)."""
    parser = argparse.ArgumentParser(
        prog="stripe-ledger",
        description="An event-sourced payment ledger for Stripe: verified webhooks -> Kafka -> "
        "append-only event store -> rebuildable projections -> SQL reports.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show program's version number and exit"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    wanted = set(COMMAND_MODULES) if command is None else {COMMANDS.get(command, ("", ""))[0]}
    for name, (module_name, help_line) in COMMANDS.items():
        if name in subparsers.choices:  # added by its module, with the module's other commands
            continue
        if module_name in wanted:
            command_module(module_name).register(subparsers)
            assert name in subparsers.choices, f"{module_name} does not add {name}"
        else:
            subparsers.add_parser(name, help=help_line, add_help=False)
    return parser


def command_module(name: str) -> ModuleType:
    """One of ``COMMAND_MODULES``, imported now (each has ``register(subparsers)``)."""
    assert name in COMMAND_MODULES, name
    return importlib.import_module(name)


def command_named(argv: Sequence[str]) -> str:
    """The subcommand of a command line: its first word that is not an option ("" if none).
    (The top-level options, --help and --version, take no value.)"""
    return next((word for word in argv if not word.startswith("-")), "")


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
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_named(words)).parse_args(words)
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
