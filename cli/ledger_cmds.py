"""The spine's commands: migrate, consume, import."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from cli.errors import CommandError
from cli.metrics_args import add_metrics_arguments, start_metrics
from cli.progress import Progress
from ledger.consumer import Consumer
from ledger.database import create_engine, migrate, require_migrated
from ledger.importer import ImportFileError, Source, copy_store, import_files, spool_stdin
from ledger.logs import get_logger
from ledger.metrics import StoreCollector, kafka_end_offsets
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store

log = get_logger("cli")


def _store(settings: Settings) -> EventStore:
    engine = create_engine(settings.database_url, create=False)
    require_migrated(engine)
    return open_event_store(engine)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    before, after = migrate(engine)
    from reports.read_side import prepare_read_side  # the read side sits above the ledger

    prepare_read_side(engine)
    shown = engine.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{shown}: schema already at revision {after}")
    else:
        print(f"{shown}: schema upgraded from {before or 'empty'} to revision {after}")
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = settings.require_kafka()
    engine = create_engine(settings.database_url, create=False)
    consumer = Consumer(
        open_event_store(engine),
        bootstrap,
        args.topic or settings.kafka_topic,
        args.group or settings.kafka_group,
    )
    consumer.install_signal_handlers()
    if args.metrics_port is not None:
        topic = args.topic or settings.kafka_topic
        metrics = CollectorRegistry(auto_describe=False)
        metrics.register(StoreCollector(engine, kafka_end_offsets(bootstrap, topic)))
        start_metrics(metrics, args.metrics_host, args.metrics_port)
    # A worker waits for its database (logging each attempt) instead of crash-looping.
    require_migrated(engine, wait=consumer.stop)
    if not consumer.stop.is_set():
        consumer.run(until_idle_s=args.until_idle)
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    if args.files.count("-") > 1:
        raise CommandError("standard input (-) can be named once")
    for name in args.files:
        if name != "-" and (not Path(name).exists() or Path(name).is_dir()):
            raise CommandError(f"no such file: {name}")
    store = _store(settings)
    spooled = spool_stdin() if "-" in args.files else None
    sources = [
        Source(spooled, "<stdin>") if name == "-" and spooled else Source(Path(name), name)
        for name in args.files
    ]
    progress = Progress("import", 0, log)
    try:
        result = import_files(
            store, sources, on_progress=progress.update, allow_conflicts=args.allow_conflicts
        )
    except ImportFileError as error:  # its first line, then each bad line of the files
        raise CommandError(str(error), details=True) from None
    finally:
        progress.finish()
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    conflicting = len(result.conflicts)
    conflicts = f", {conflicting} conflicting (the first payload kept)" if conflicting else ""
    print(
        f"imported {result.events} events: {result.appended} new, "
        f"{result.duplicates - conflicting} already known{conflicts}"
    )
    for event_id in result.conflicts[:20]:
        print(f"conflict: {event_id} is stored with a different payload", file=sys.stderr)
    return 0


def cmd_copy_store(args: argparse.Namespace, settings: Settings) -> int:
    source_engine = create_engine(args.source, create=False, name="--from")
    require_migrated(source_engine)
    target_engine = create_engine(settings.database_url)
    if source_engine.url == target_engine.url:
        raise CommandError("source and target are the same database")
    migrate(target_engine)
    progress = Progress("copy-store", 0, log)
    try:
        result = copy_store(
            open_event_store(source_engine), open_event_store(target_engine), progress.update
        )
    finally:
        progress.finish()
    print(
        f"copied {result.events} events: {result.appended} new, {result.duplicates} already "
        f"there; now run `stripe-ledger project --until-idle 1` against the target"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate_parser = subparsers.add_parser(
        "migrate",
        help="create or upgrade the database schema (Alembic) to the newest revision",
        description="Upgrade the database at LEDGER_DATABASE_URL to the schema this version "
        "needs. Safe to run again: an up-to-date database is left as it is.",
    )
    migrate_parser.set_defaults(handler=cmd_migrate)

    consume = subparsers.add_parser(
        "consume",
        help="append Stripe events from Kafka to the event store (long-running worker)",
        description="Join the Kafka consumer group and append every record of the topic to the "
        "event store exactly once. Offsets are stored in the database with the events; records "
        "that are not Stripe events become dead-letter rows. SIGTERM/SIGINT finish the current "
        "batch and exit 0. Needs LEDGER_KAFKA_BOOTSTRAP.",
    )
    consume.add_argument(
        "--topic", help="Kafka topic (default: LEDGER_KAFKA_TOPIC or stripe.events)"
    )
    consume.add_argument(
        "--group", help="consumer group (default: LEDGER_KAFKA_GROUP or stripe-ledger)"
    )
    consume.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit after SECONDS with no new record (for batch runs and tests)",
    )
    add_metrics_arguments(consume)
    consume.set_defaults(handler=cmd_consume)

    importer = subparsers.add_parser(
        "import",
        help="append Stripe events from files (JSON lines, an array, one event, a list object)",
        description="Validate every event of every FILE, then append them through the same "
        "idempotent path as the consumer (source 'import'). A FILE holds JSON lines, a JSON "
        "array, one (pretty-printed) event as the Dashboard or the Stripe CLI gives it, or "
        "Stripe's list object (GET /v1/events). Any invalid event imports nothing and the error "
        "names the file and line of each. Events already stored are counted, not duplicated; an "
        "id stored with a different payload is a conflict: exit 2, nothing imported, unless "
        "--allow-conflicts (then the stored payload stays and the rest is imported).",
    )
    importer.add_argument("files", nargs="+", metavar="FILE", help="paths, or - for standard input")
    importer.add_argument(
        "--allow-conflicts",
        action="store_true",
        help="import the rest when some ids are stored with another payload (reported)",
    )
    importer.set_defaults(handler=cmd_import)

    copier = subparsers.add_parser(
        "copy-store",
        help="copy every event of another store (e.g. the SQLite file) into LEDGER_DATABASE_URL",
        description="Move from the embedded SQLite store to PostgreSQL: migrate the target "
        "(LEDGER_DATABASE_URL), then append every event of --from in order, keeping ids, "
        "sources and receive times. Idempotent: run it again and nothing is doubled. The "
        "projections are then built on the target by `stripe-ledger project`.",
    )
    copier.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the source store, e.g. sqlite:///stripe-ledger.db (no password on a command line: "
        "the target comes from LEDGER_DATABASE_URL)",
    )
    copier.set_defaults(handler=cmd_copy_store)
