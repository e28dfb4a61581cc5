"""``stripe-ledger project``: the projection worker."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from cli.errors import CommandError
from cli.metrics_args import add_metrics_arguments, start_metrics
from ledger.database import create_engine, require_migrated
from ledger.logs import get_logger
from ledger.metrics import StoreCollector
from ledger.retry import retrying
from ledger.settings import Settings
from ledger.store import open_event_store
from projections import registry, shard, worker
from projections.metrics import ProjectionCollector

log = get_logger("cli.project")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "project",
        help="fold the event store into the projections (journal, invoices, disputes)",
        description=(
            "Read the event store in position order and apply it, in batches, to the "
            "projections. Each projection's checkpoint is written in the same transaction as its "
            "rows, so a crash never applies an event twice or skips one. Runs until SIGTERM/SIGINT "
            "(the current batch is finished first) or, with --until-idle, until no new event "
            "arrived for that many seconds. Unknown event types are skipped and counted. "
            "Scale out with --shard I/N: N workers, one per shard, side by side. "
            "Database: LEDGER_DATABASE_URL (run `stripe-ledger migrate` first)."
        ),
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        default=None,
        help="exit 0 once caught up and idle this long (batch use); default: run until signalled",
    )
    parser.add_argument(
        "--projection",
        action="append",
        choices=sorted(registry.PROJECTIONS),
        dest="projections",
        help="only this projection (repeatable); default: all",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=worker.BATCH_EVENTS_MAX,
        help=f"events per transaction (default {worker.BATCH_EVENTS_MAX}, at most 10000)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="fold only shard I of N (0 <= I < N <= 64): the objects whose key hashes to I, from "
        "that shard's own checkpoints; run one worker per I. N must be the number of shards the "
        "live projections are split into (set by `rebuild --shards N`; a store projected by "
        "no one yet is split by its first workers). Default: one worker folds everything",
    )
    add_metrics_arguments(parser)
    parser.set_defaults(handler=run_project)


def run_project(args: argparse.Namespace, settings: Settings) -> int:
    """The handler (cli/main.py has read the settings and configured logging)."""
    if args.until_idle is not None and args.until_idle < 0:
        raise CommandError(f"--until-idle must be >= 0, got {args.until_idle}")
    if not 0 < args.batch_size <= 10_000:
        raise CommandError(f"--batch-size must be between 1 and 10000, got {args.batch_size}")
    try:
        selected = shard.parse(args.shard) if args.shard is not None else None
    except shard.ShardSpecError as error:
        raise CommandError(str(error)) from None
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    if args.metrics_port is not None:
        metrics = CollectorRegistry(auto_describe=False)
        metrics.register(StoreCollector(engine))
        metrics.register(ProjectionCollector(engine))
        start_metrics(metrics, args.metrics_host, args.metrics_port)
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name, then="finish the batch")
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    from reports.read_side import prepare_read_side

    # The report views read the projections' views: make sure both exist (idempotent).
    def prepare() -> bool:
        prepare_read_side(engine, refresh_views=False)
        return True

    ready = retrying("database", prepare, stop)
    if ready is None:  # stopped while waiting for the database
        return 0
    try:
        worker.run(
            open_event_store(engine),
            names=args.projections,
            until_idle_s=args.until_idle,
            stop=stop,
            batch_events_max=args.batch_size,
            shard=selected,
        )
    finally:
        engine.dispose()
    return 0
