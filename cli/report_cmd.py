"""``stripe-ledger report NAME``: one report view (``report_NAME``) as a table, JSON or CSV.

Read-only, and only the read side: it imports SQLAlchemy and the report modules, not the
store, the projections' folds or prometheus_client (start-up, issue 21)."""

from __future__ import annotations

import argparse
import sys

import sqlalchemy as sa

from cli.errors import CommandError
from ledger.database import create_engine, first_line, reachable
from ledger.settings import Settings
from reports import periods, render
from reports.query import NotScoped, PeriodNotSupported, UnknownReport, cli_names, run_report


def _views_missing(engine: sa.Engine, view: str) -> bool:
    """Whether ``view`` is absent; an error while looking counts as "cannot tell" (False)."""
    try:
        inspector = sa.inspect(engine)
        return not inspector.has_table(view) and view not in inspector.get_view_names()
    except sa.exc.SQLAlchemyError:
        return False


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    # Read-only: a read-only SQLite file or directory, or the ledger_reporting role, which may
    # read the report_* views and nothing else (no schema check, no view creation here).
    engine = create_engine(settings.database_url, read_only=True)
    try:
        instants = {
            name: periods.parse_instant(getattr(args, name))
            for name in ("since", "until", "as_of")
            if getattr(args, name) is not None
        }
        with reachable():
            columns, rows = run_report(engine, args.name, args.account, args.livemode, **instants)
    except (UnknownReport, PeriodNotSupported, NotScoped, ValueError) as error:
        raise CommandError(str(error)) from None
    except sa.exc.DBAPIError as error:
        if _views_missing(engine, f"report_{args.name.replace('-', '_')}"):
            raise CommandError(
                "the report views do not exist yet: run `stripe-ledger migrate` first"
            ) from None
        raise CommandError(f"cannot read the report: {first_line(error)}") from None
    finally:
        engine.dispose()
    sys.stdout.write(render.render(columns, rows, args.format, render.terminal_width(args.wide)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = subparsers.add_parser(
        "report",
        help="print a report view (report_NAME) as a table, JSON or CSV",
        description="Run the SQL view report_NAME. Tables are for people: amounts in major "
        "units with their currency. JSON and CSV are for machines: amounts as integer minor "
        "units, timestamps ISO-8601 UTC. Reports: " + ", ".join(cli_names()) + ". "
        "balance-summary, balance-categories, balance-itemized and payout-reconciliation "
        "reproduce Stripe's Balance and Payout reconciliation reports from the synced balance "
        "transactions (see `stripe-ledger balance-sync`); journal and trial-balance show the "
        "double-entry books.",
    )
    report.add_argument("name", metavar="NAME", help="the report: " + ", ".join(cli_names()))
    report.add_argument(
        "--since", metavar="DATE",
        help="balance-summary, journal, balance-itemized: from this instant (inclusive; a date "
        "is midnight UTC)",
    )  # fmt: skip
    report.add_argument("--until", metavar="DATE", help="... up to this instant (exclusive)")
    report.add_argument(
        "--as-of", dest="as_of", metavar="DATE",
        help="trial-balance: only what was posted before this instant",
    )  # fmt: skip
    report.add_argument("--account", help="only this Connect account (acct_...), or 'platform'")
    mode = report.add_mutually_exclusive_group()
    mode.add_argument("--livemode", dest="livemode", action="store_const", const=True,
                      help="only live-mode rows")  # fmt: skip
    mode.add_argument("--testmode", dest="livemode", action="store_const", const=False,
                      help="only test-mode rows")  # fmt: skip
    report.add_argument("--format", choices=render.FORMATS, default="table")
    report.add_argument(
        "--wide", action="store_true",
        help="every column, however wide (a table on a terminal otherwise fits its width)",
    )  # fmt: skip
    report.set_defaults(handler=cmd_report, livemode=None)
