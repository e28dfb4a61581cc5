"""``stripe-ledger event-types``: every Stripe event type and what the projections do with it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ledger.settings import Settings
from projections import catalogue


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "event-types",
        help="list every Stripe event type and what the projections do with it",
        description=(
            "Every Stripe event type (the project's copy of Stripe's list), grouped by resource, "
            "with the projection(s) that use it and what they change, or 'stored only'. "
            "Needs no database."
        ),
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default, for people) or json (for tools)",
    )
    parser.set_defaults(handler=run_event_types)


def run_event_types(args: argparse.Namespace, settings: Settings) -> int:
    """The handler (cli/main.py has read the settings and configured logging)."""
    text = catalogue.render_json() if args.format == "json" else catalogue.render_table()
    sys.stdout.write(text + "\n")
    return 0
