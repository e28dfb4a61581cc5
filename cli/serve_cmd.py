"""``stripe-ledger serve``: the embedded mode. One command, no Kafka.

The same webhook endpoint as ``ingest`` (same verification, same responses), but each verified
event is appended straight to the event store, answered 200 after the commit. The projection
worker is ``stripe-ledger project`` started as a child process: in a thread of this process it
shared one interpreter lock with the event loop and slowed every answer (measured in
docs/PERFORMANCE.md). serve lives exactly as long as its projector: it stops the child on its
way out, exits when the child exits (non-zero when the child failed), and on Linux the child
gets SIGTERM if serve itself is killed. SQLite by default (LEDGER_DATABASE_URL to change it).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import sqlalchemy as sa

from cli.ingest_cmd import port_number
from ledger import logs
from ledger.database import create_engine, migrate
from ledger.settings import Settings, SettingsError
from ledger.store import open_event_store
from reports.read_side import prepare_read_side

WORKER_STOP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="embedded mode: webhook endpoint + event store + projections in one command",
        description="Serve POST /webhooks/stripe like `ingest` (same signature checks and "
        "responses), but append each verified event straight to the event store (200 only "
        "after the commit) and run `stripe-ledger project` as a child process. No Kafka needed. "
        "Migrates the database first. Exits when the projector exits (1 if it failed). "
        "Also GET /healthz, /readyz, /metrics.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000, help="TCP port (8000)")
    parser.add_argument(
        "--no-project", action="store_true", help="do not start the projection worker"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.app import create_app
    from ingest.http_server import make_server
    from ingest.store_sink import StoreSink

    try:
        settings.require_webhook_secrets()
    except SettingsError as error:
        print(f"stripe-ledger serve: error: {error}", file=sys.stderr)
        return 2
    log = logs.get_logger("serve")
    engine = create_engine(settings.database_url)
    migrate(engine)
    prepare_read_side(engine)
    # Before any thread exists: the child is forked with a pre-exec hook (see _die_with_parent).
    projector = None if args.no_project else _Projector(engine.url)

    # serve_listening is logged once the socket is bound (a taken port never logs it).
    server = make_server(
        create_app(settings, StoreSink(open_event_store(engine))),
        settings,
        args.host,
        args.port,
        log,
        "serve_listening",
        database=engine.url.render_as_string(hide_password=True),
        projector_pid=projector.popen.pid if projector is not None else None,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # that was installed before it: a no-op, so that the exit status is ours.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
    if projector is not None:
        threading.Thread(target=projector.watch, args=(server,), daemon=True).start()
    projected = True
    try:
        listened = server.serve_until_stopped()
    finally:
        if projector is not None:
            projected = projector.stop()
    return 0 if listened and projected else 1


class _Projector:
    """``stripe-ledger project`` on the same database, as a child; the URL goes by environment."""

    def __init__(self, url: sa.URL) -> None:
        env = dict(os.environ, LEDGER_DATABASE_URL=url.render_as_string(hide_password=False))
        self.stopping = False
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "project"],
            env=env,
            stdin=subprocess.DEVNULL,
            # No thread exists yet (see run), so a pre-exec hook is safe here.
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),  # noqa: PLW1509
        )

    def watch(self, server: Any) -> None:
        """serve lives as long as its projector: when the child exits, serve shuts down too."""
        code = self.popen.wait()
        if self.stopping:
            return
        if code != 0:
            logs.get_logger("serve").error("projector_exited", exit_code=code)
        server.should_exit = True

    def stop(self) -> bool:
        """SIGTERM (the projector finishes its batch), bounded wait, then SIGKILL; True if clean.

        A child still starting up has no handler yet and dies of the SIGTERM: also clean."""
        self.stopping = True
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logs.get_logger("serve").error("projector_stop_timeout", pid=self.popen.pid)
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode in (0, -signal.SIGTERM)


def _die_with_parent(serve_pid: int) -> None:
    """In the child before exec: SIGTERM when serve dies, however it dies (Linux only).

    Elsewhere a SIGKILLed serve leaves the projector running; it is harmless (a second
    projector's compare-and-set fails) and stops on SIGTERM like any ``project``."""
    if not sys.platform.startswith("linux"):
        return
    # dlopen(NULL): the symbols already loaded, libc's among them (find_library would fork).
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != serve_pid:  # serve died before the line above took effect
        os._exit(1)
