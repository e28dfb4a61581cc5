"""``stripe-ledger demo``: a realistic Stripe history, signed and POSTed, then the reports.

By default it starts ``stripe-ledger serve`` itself on a temporary SQLite file with a fresh
signing secret (handed over in the environment, never on a command line), so that a newcomer
sees the whole pipeline with one command and no services. ``--url`` targets any running
``ingest`` or ``serve`` instead (sign with its STRIPE_WEBHOOK_SECRET).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.errors import CommandError
from cli.progress import Progress
from demo.balance import run_balance_sync
from demo.client import post_all
from demo.history import EVENTS_MAX, DemoHistory, encode, generate_before
from ledger.database import create_engine, require_migrated
from ledger.logs import get_logger
from ledger.settings import Settings
from ledger.store import EventStore, open_event_store
from projections import registry
from reports import render
from reports.query import run_report
from reports.views import report_names

SERVE_READY_S_MAX = 60.0
CATCH_UP_S_MAX = 120.0
CONCURRENCY_MAX = 256  # parallel senders of --concurrency
DEMO_REPORTS = ("balances", "invoices", "disputes")
# Stripe's Balance and Payout reconciliation reports, from the synced balance transactions.
BALANCE_REPORTS = ("balance_summary", "payout_reconciliation")
log = get_logger("demo")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="post a realistic, signed Stripe history and print the reports (no services needed)",
        description="Generate a deterministic Stripe history (customers, charges and refunds, "
        "subscription invoices through every path, disputes won and lost, payouts including a "
        "failed one, balance snapshots, USD/EUR/JPY, a Connect account; some deliveries out of "
        "order and some duplicated, as Stripe does), sign every event and POST it. Without "
        "--url it starts `stripe-ledger serve` on a temporary SQLite file first. Then it prints "
        "the balances, invoices and disputes reports.",
    )
    parser.add_argument("--seed", type=int, default=7, help="the same seed, the same history (7)")
    parser.add_argument("--events", type=int, default=400, help="about this many events (400)")
    parser.add_argument(
        "--url",
        help="POST to this running endpoint (http://HOST:PORT/webhooks/stripe) instead; sign "
        "with STRIPE_WEBHOOK_SECRET, read the reports from LEDGER_DATABASE_URL",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel senders (8)")
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the temporary store (and serve's log) to explore afterwards; default: removed",
    )  # fmt: skip
    parser.add_argument(
        "--dashboard", action="store_true",
        help="then serve the dashboard over the demo store on 127.0.0.1 until Ctrl-C",
    )  # fmt: skip
    parser.add_argument("--dashboard-port", type=int, default=8050, help="its port (8050)")
    parser.set_defaults(handler=run)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def _serve(database_url: str, secret: str, log_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "LEDGER_DATABASE_URL": database_url, "STRIPE_WEBHOOK_SECRET": secret}
    env.pop("STRIPE_WEBHOOK_SECRET_FILE", None)
    env.setdefault("LEDGER_LOG_FORMAT", "json")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SERVE_READY_S_MAX
            while not _ready(f"http://127.0.0.1:{port}/readyz"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"stripe-ledger demo: serve did not start; see {log_path}")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/webhooks/stripe"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_projections(store: EventStore, event_ids: set[str]) -> bool:
    """True once every demo event is stored and every projection has passed it (bounded)."""
    deadline = time.monotonic() + CATCH_UP_S_MAX
    while time.monotonic() < deadline:
        if event_ids <= set(store.event_ids()):
            head = store.head_position()
            with store.engine.connect() as connection:
                rows = [registry.state(connection, p.name) for p in registry.get()]
            if all(row is not None and row.position >= head for row in rows):
                return True
        time.sleep(0.2)
    return False


def _check_url(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CommandError(f"--url must be http(s)://HOST[:PORT]/PATH, got {url!r}")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        raise CommandError(f"--url has a bad port: {url!r}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.events <= EVENTS_MAX or not 1 <= args.concurrency <= CONCURRENCY_MAX:
        raise CommandError(
            f"--events must be 1..{EVENTS_MAX} and --concurrency 1..{CONCURRENCY_MAX}"
        )
    if args.url:
        _check_url(args.url)
        settings.require_webhook_secrets()
        # The reports are read from LEDGER_DATABASE_URL: a bad one fails before any POST.
        engine = create_engine(settings.database_url, create=False)
        require_migrated(engine)
        engine.dispose()
    history = generate_before(int(time.time()), args.seed, args.events)
    payloads = [encode(event) for event in history.deliveries]
    summary = history.summary()
    print(
        f"demo history (seed {args.seed}): {summary['events']} events, "
        f"{summary['deliveries']} deliveries ({summary['duplicate_deliveries']} duplicated, "
        f"{summary['out_of_order_deliveries']} out of order)"
    )
    if args.url:
        secret = settings.require_webhook_secrets()[0]
        database_url = settings.database_url
        return _post_and_report(args.url, payloads, secret, database_url, history, args)
    return _embedded(args, payloads, history)


def _embedded(args: argparse.Namespace, payloads: list[bytes], history: DemoHistory) -> int:
    """serve on a temporary store, POST, report (then the dashboard, with --dashboard); the
    folder goes at the end unless --keep (or serve failed: its log stays for the reader).
    Ctrl-C says so and where the store is, exit 130."""
    workdir = Path(tempfile.mkdtemp(prefix="stripe-ledger-demo-"))
    store_path = workdir / "demo.db"
    secret = "whsec_" + secrets.token_hex(24)
    database_url = f"sqlite:///{store_path}"
    remove = not args.keep
    try:
        with _serve(database_url, secret, workdir / "serve.log") as url:
            code = _post_and_report(url, payloads, secret, database_url, history, args)
        _explain(args, store_path)
        if code == 0 and args.dashboard:
            from cli.dashboard_cmd import serve_dashboard

            return serve_dashboard(database_url, "127.0.0.1", args.dashboard_port)
        return code
    except KeyboardInterrupt:
        where = f"the demo store is kept at {store_path}" if args.keep else (
            f"the demo store ({store_path}) is removed; --keep keeps it"
        )  # fmt: skip
        print(f"stripe-ledger demo: interrupted; {where}", file=sys.stderr)
        return 130
    except SystemExit:
        remove = False  # serve did not start: its log stays, the message names it
        raise
    finally:
        if remove:
            shutil.rmtree(workdir, ignore_errors=True)


def _explain(args: argparse.Namespace, store_path: Path) -> None:
    """Where the store is and how to explore it, or that it goes at the end."""
    if not args.keep and not args.dashboard:
        print("\n(the demo store is removed at the end; `stripe-ledger demo --keep` keeps it)")
        return
    program = "stripe-ledger" if shutil.which("stripe-ledger") else sys.argv[0]
    url = f"LEDGER_DATABASE_URL=sqlite:///{store_path}"
    where = (
        f"kept at {store_path}" if args.keep
        else f"at {store_path} while the dashboard runs (then removed; --keep keeps it)"
    )  # fmt: skip
    print(
        f"\nThe demo store is {where}; explore it with\n"
        f"  {url} {program} report invoice_aging\n"
        f"  {url} {program} verify\n"
        f"  sqlite3 {store_path} 'SELECT * FROM report_balances'\n"
        f"  {url} {program} dashboard   # then open http://127.0.0.1:8050/"
    )


def _post_and_report(
    url: str,
    payloads: list[bytes],
    secret: str,
    database_url: str,
    history: DemoHistory,
    args: argparse.Namespace,
) -> int:
    progress = Progress("posting", len(payloads), log)
    started = time.monotonic()
    try:
        result = post_all(url, payloads, secret, args.concurrency, on_progress=progress.update)
    finally:
        progress.finish()
    elapsed_s = time.monotonic() - started
    print(
        f"posted {result.sent} deliveries to {url} in {elapsed_s:.1f} s: {result.ok} accepted, "
        f"{result.failed} failed {dict(sorted(result.statuses.items()))}"
    )
    if result.failed:
        return 1
    store = open_event_store(create_engine(database_url, create=False))
    # Stripe sends no webhook for balance transactions: fetch them, as a user's cron would.
    code, output = run_balance_sync(history, database_url)
    print(output)
    if code != 0:
        return 1
    if not _wait_for_projections(store, {event["id"] for event in history.events}):
        print(
            f"the events did not all reach the projections of {database_url} within "
            f"{CATCH_UP_S_MAX:.0f} s (is `consume`/`project` running against it?)",
            file=sys.stderr,
        )
        return 1
    for name in DEMO_REPORTS:
        columns, rows = run_report(store.engine, name)
        print(f"\n== report {name} ==")
        sys.stdout.write(render.render(columns, rows, "table", render.terminal_width(False)))
    _print_balance_reports(store)
    return 0


def _print_balance_reports(store: EventStore) -> None:
    """The balance summary, and one payout whose balance transactions add up to its amount."""
    for name in BALANCE_REPORTS:
        if name not in report_names():
            print(f"\n(report {name} is not in this version: `stripe-ledger report --help`)")
            continue
        columns, rows = run_report(store.engine, name)
        if name == "payout_reconciliation" and "reconciled" in columns:
            flag = columns.index("reconciled")
            rows = [row for row in rows if row[flag] in (True, 1)][:1]
            name = "payout_reconciliation (one reconciled payout)"
        print(f"\n== report {name} ==")
        sys.stdout.write(render.render(columns, rows, "table", render.terminal_width(False)))
