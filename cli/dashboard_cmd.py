"""``stripe-ledger dashboard``: the read-only web pages of reports/dashboard/, served by uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from ledger.database import create_engine, reachable
from ledger.settings import Settings

TOKEN_CHARS_MIN = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="read-only web pages over the report views (balances, payouts, journal, ...)",
        description="Serve the dashboard: Overview, Payouts, Journal, Invoices, Disputes and "
        "Pipeline pages over the report views of LEDGER_DATABASE_URL (opened read-only; the "
        "ledger_reporting role is enough). Loopback by default; any other address needs "
        f"LEDGER_DASHBOARD_TOKEN (at least {TOKEN_CHARS_MIN} characters), sent as "
        "`Authorization: Bearer TOKEN` or as the password of HTTP Basic.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (8050)")
    parser.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def dashboard_token(host: str, token: str | None) -> tuple[str | None, str | None]:
    """(token, error): ``token`` (LEDGER_DASHBOARD_TOKEN), required off loopback."""
    if token is not None and len(token) < TOKEN_CHARS_MIN:
        return None, f"LEDGER_DASHBOARD_TOKEN must have at least {TOKEN_CHARS_MIN} characters"
    if token is None and not is_loopback(host):
        return None, f"binding {host} (not loopback) needs LEDGER_DASHBOARD_TOKEN"
    return token, None


def run(args: argparse.Namespace, settings: Settings) -> int:
    return serve_dashboard(settings.database_url, args.host, args.port, settings)


def serve_dashboard(
    database_url: str, host: str, port: int, settings: Settings | None = None
) -> int:
    """Serve the dashboard until SIGINT/SIGTERM; 2 on a configuration error. ``settings``:
    where the token comes from (read from the environment when not given)."""
    import uvicorn

    from reports.dashboard.app import create_app
    from reports.dashboard.db import open_engine

    if not 0 <= port <= 65535:
        print("stripe-ledger dashboard: error: --port must be 0..65535", file=sys.stderr)
        return 2
    token, error = dashboard_token(host, (settings or Settings.from_env()).dashboard_token)
    if error:
        print(f"stripe-ledger dashboard: error: {error}", file=sys.stderr)
        return 2
    # A bad URL, a missing file or directory, an unreachable server: one line and exit 2 now,
    # not a dashboard that answers 503 to every page.
    probe = create_engine(database_url, read_only=True)
    try:
        with reachable(), probe.connect():
            pass
    finally:
        probe.dispose()
    app = create_app(open_engine(database_url), token)
    shown = f"[{host}]" if ":" in host else host
    print(f"dashboard: http://{shown}:{port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
