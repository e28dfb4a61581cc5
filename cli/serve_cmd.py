"""``stripe-ledger serve``: the embedded mode. One process, no Kafka.

The same webhook endpoint as ``ingest`` (same verification, same responses), but each verified
event is appended straight to the event store, answered 200 after the commit; the projection
worker runs in the same process. SQLite by default (LEDGER_DATABASE_URL to change it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from cli.reports_cmds import prepare_read_side
from ledger import logs
from ledger.database import create_engine, migrate
from ledger.settings import Settings, SettingsError
from ledger.store import EventStore

WORKER_STOP_TIMEOUT_S = 30.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="embedded mode: webhook endpoint + event store + projections in one process",
        description="Serve POST /webhooks/stripe like `ingest` (same signature checks and "
        "responses), but append each verified event straight to the event store (200 only "
        "after the commit) and run the projection worker in the same process. No Kafka needed. "
        "Migrates the database first. Also GET /healthz, /readyz, /metrics.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    parser.add_argument(
        "--no-project", action="store_true", help="do not run the projection worker here"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.app import UVICORN_OPTIONS, create_app
    from ingest.store_sink import StoreSink
    from projections import worker

    try:
        settings.require_webhook_secrets()
    except SettingsError as error:
        print(f"stripe-ledger serve: {error}", file=sys.stderr)
        return 2
    log = logs.get_logger("serve")
    engine = create_engine(settings.database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = EventStore(engine)
    stop = threading.Event()
    projector = None
    if not args.no_project:
        projector = threading.Thread(
            target=worker.run, kwargs={"store": store, "stop": stop}, name="projector"
        )
        projector.start()

    import uvicorn

    config = uvicorn.Config(
        create_app(settings, StoreSink(store)), host=args.host, port=args.port, **UVICORN_OPTIONS
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # that was installed before it: make that one stop the worker, so the exit status is 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    log.info(
        "serve_listening",
        host=args.host,
        port=args.port,
        database=engine.url.render_as_string(hide_password=True),
    )
    try:
        server.run()
    finally:
        stop.set()
        if projector is not None:
            projector.join(WORKER_STOP_TIMEOUT_S)
    return 0 if server.started else 1
