"""Commands over the projections: rebuild and verify (``report``, which only reads the report
views, is cli/report_cmd.py: its start-up imports neither the store nor the folds)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

import sqlalchemy as sa

from cli.errors import CommandError
from cli.progress import Progress
from ledger.database import create_engine, reachable, require_migrated
from ledger.logs import get_logger
from ledger.settings import Settings
from ledger.store import open_event_store
from projections import rebuild, registry, verify
from projections.metrics import projection_lag
from projections.shard import SHARDS_MAX
from reports import views
from reports.money import parse_major
from reports.read_side import prepare_read_side

log = get_logger("cli")


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    for option, value in (("--workers", args.workers), ("--shards", args.shards)):
        if value is not None and not 1 <= value <= SHARDS_MAX:
            raise CommandError(f"{option} must be between 1 and {SHARDS_MAX}, got {value}")
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    prepare_read_side(engine)
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        log.warning("rebuild_interrupted", live="untouched")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    names = [projection.name for projection in registry.get(args.names or None)]
    bar = Progress(f"rebuild {', '.join(names)}", 0, log)
    try:
        results = rebuild.rebuild(
            open_event_store(engine),
            names,
            hooks=(views.drop_views, views.create_views),
            on_progress=bar.update,
            stop=stop,
            workers=args.workers,
            shards=args.shards,
        )
    finally:
        bar.finish()
    for result in results:
        print(
            f"{result.name}: rebuilt {result.events} events into generation "
            f"{result.new_generation} (was {result.old_generation}), live at position "
            f"{result.position}"
            + (f", split into {result.shards} shards" if result.shards > 1 else "")
        )
    return 1 if stop.is_set() else 0


def _lag_of(connection: sa.Connection) -> tuple[int, dict[str, int]]:
    """projection_lag from the report views (all the reporting role may read)."""
    rows = connection.execute(
        sa.text("SELECT projection, checkpoint, lag_positions FROM report_projection_checkpoints")
    ).all()
    head = max((int(r.checkpoint) + int(r.lag_positions) for r in rows), default=0)
    return head, {r.projection: int(r.checkpoint) for r in rows}


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        parse_major(args.drift_tolerance, "usd")
    except ValueError as error:
        raise CommandError(f"--drift-tolerance: {error}") from None
    # Checks only, read-only: the scratch fold uses temporary tables; the views are migrate's.
    engine = create_engine(settings.database_url, read_only=True)
    try:
        with reachable():
            full = verify.can_read_store(engine)
        if full:
            require_migrated(engine)
        with reachable():
            checks, drift = verify.verify(open_event_store(engine), args.drift_tolerance)
            with engine.connect() as connection:
                head, positions = projection_lag(connection) if full else _lag_of(connection)
    finally:
        engine.dispose()
    if not full:
        print("verify as a reporting role: the checks the report views can show")
    behind = {name: max(head - position, 0) for name, position in sorted(positions.items())}
    lagging = max(behind.values(), default=0)
    print(
        f"projection lag (store head at position {head}): "
        + (", ".join(f"{name} {n}" for name, n in behind.items()) or "no projection yet")
        + (f"; {lagging} stored event(s) not projected yet: is `stripe-ledger project` "
           "running?" if lagging else "")
    )  # fmt: skip
    for check in checks:
        mark = "skip" if check.skipped else "ok" if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}")
        for failure in check.failures:
            print(f"       {failure}")
    print("drift against Stripe's balance snapshots:")
    for line in drift:
        print(f"  {line}")
    return 0 if all(check.ok for check in checks) else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    names = sorted(registry.PROJECTIONS)
    rebuild_parser = subparsers.add_parser(
        "rebuild",
        help="rebuild projections from the event store, swapping them in atomically",
        description="Fold the whole event store into a new generation of each projection's "
        "tables while the current ones keep serving; once caught up, repoint the report views "
        "in one transaction and drop the old tables. Safe beside a running `project` worker. "
        "Interrupted (Ctrl-C), it leaves the live projections untouched; just run it again. "
        "--workers N folds with N processes; --shards N changes how `project --shard` splits.",
    )
    rebuild_parser.add_argument(
        "names", nargs="*", metavar="NAME", choices=[*names, []],
        help=f"projections to rebuild: {', '.join(names)} (default: all)",
    )  # fmt: skip
    rebuild_parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="fill the new generation with N processes, one shard of the objects each, then swap "
        "once (default 1; more pays on PostgreSQL with cores to spare)",
    )  # fmt: skip
    rebuild_parser.add_argument(
        "--shards", type=int, default=None, metavar="N",
        help="split the new generation into N shards for `project --shard I/N` workers "
        "(default: as many as the live one; 1 joins them back)",
    )  # fmt: skip
    rebuild_parser.set_defaults(handler=cmd_rebuild)

    verify_parser = subparsers.add_parser(
        "verify",
        help="check the ledger's invariants; exit 1 if one fails",
        description="Check that every journal entry balances, that balances equal the sum of "
        "postings, and that each live projection equals a fresh fold of the whole store "
        "(a checksum each), that the journal equals the synced balance transactions and every "
        "automatic payout with synced balance transactions reconciles; print drift against "
        "Stripe's latest balance snapshots in major units. Exit 1 when a check fails, or when "
        "drift at a snapshot taken by balance-sync exceeds --drift-tolerance.",
    )
    verify_parser.add_argument(
        "--drift-tolerance", default="0", metavar="AMOUNT",
        help="largest drift allowed per currency, in major units (default 0; e.g. 0.01)",
    )  # fmt: skip
    verify_parser.set_defaults(handler=cmd_verify)
