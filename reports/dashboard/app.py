"""The dashboard's ASGI app: GET-only pages over the report views, behind a guard.

The guard (a plain ASGI wrapper, so it runs before any routing) answers 405 to every method
but GET and HEAD, 401 without the token when one is set (``Authorization: Bearer TOKEN``, or
HTTP Basic with TOKEN as the password, so a browser can log in without any script), and adds
headers that forbid scripts, framing and sniffing to every answer.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.logs import get_logger
from reports import export
from reports.dashboard import db, filters, pages

HERE = Path(__file__).resolve().parent
PAYOUT_ID = re.compile(r"po_[A-Za-z0-9]{1,64}")
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]  # fmt: skip
NAV = [("overview", "/", "Overview"), ("payouts", "/payouts", "Payouts"),
       ("journal", "/journal", "Journal"), ("invoices", "/invoices", "Invoices"),
       ("disputes", "/disputes", "Disputes"), ("pipeline", "/pipeline", "Pipeline")]  # fmt: skip
UNGUARDED_PATHS = ("/healthz", "/readyz")  # for probes; they tell nothing about the ledger
log = get_logger("dashboard")


class Guard:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            response: Response = PlainTextResponse(
                "the dashboard is read-only: GET only\n", 405, headers={"Allow": "GET, HEAD"}
            )
        elif scope["path"] not in UNGUARDED_PATHS and not self._authorized(scope):
            response = PlainTextResponse(
                "this dashboard needs its token (LEDGER_DASHBOARD_TOKEN)\n", 401,
                headers={"WWW-Authenticate": 'Basic realm="stripe-ledger dashboard"'},
            )  # fmt: skip
        else:
            await self.app(scope, receive, send_with_headers)
            return
        await response(scope, receive, send_with_headers)

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        given = b""
        if scheme.lower() == b"bearer":
            given = value.strip()
        elif scheme.lower() == b"basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except ValueError:
                given = b""
        return hmac.compare_digest(given, self.token)


def create_app(engine: sa.Engine, token: str | None = None) -> ASGIApp:
    environment = _templates()
    routes = [_page_route(name, engine, environment) for name in pages.PAGES]
    routes.append(_payout_entry_route(engine))
    routes += _static_and_probe_routes(engine)
    app: Any = Starlette(routes=routes)
    return Guard(app, token)


def _templates() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    environment.globals.update(money=pages.money, when=pages.when, stamp=pages.stamp,
                               scope=pages.scope, nav=NAV)  # fmt: skip
    return environment


def _read_failed(name: str, error: sa.exc.DBAPIError) -> Response:
    """503 for a page whose query failed: too slow, or the views cannot be read."""
    reason = type(error.orig).__name__
    log.warning("dashboard_read_failed", page=name, error=reason)
    if reason == "QueryCanceled":  # PostgreSQL's statement_timeout
        return PlainTextResponse(
            f"this page took longer than {db.STATEMENT_TIMEOUT_MS / 1000:g} s: "
            "narrow the filters (account, currency, dates)\n", 503,
        )  # fmt: skip
    return PlainTextResponse(
        "cannot read the report views: run `stripe-ledger migrate`, or check that "
        "this login may read them\n", 503,
    )  # fmt: skip


def _page_route(name: str, engine: sa.Engine, environment: Environment) -> Route:
    build, allowed = pages.PAGES[name]
    path = next(p for n, p, _ in NAV if n == name)

    def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            f = filters.parse(request.scope["query_string"], allowed)
        except filters.BadQuery as error:
            return PlainTextResponse(f"bad query: {error}\n", 400)
        try:
            with engine.connect() as connection:
                context = build(connection, f)
        except sa.exc.DBAPIError as error:
            return _read_failed(name, error)
        html = environment.get_template(f"{name}.html").render(
            page=name, f=f, path=path, **context,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )  # fmt: skip
        return HTMLResponse(html)

    return Route(path, endpoint, methods=["GET", "HEAD"], name=name)


def _payout_entry_route(engine: sa.Engine) -> Route:
    def payout_entry(request: Request) -> Response:
        """The payout's entry as `stripe-ledger export` writes it (Beancount, default mapping):
        the link from each payout to its place in the books."""
        payout_id = str(request.path_params["payout_id"])
        if not PAYOUT_ID.fullmatch(payout_id):
            return PlainTextResponse("bad query: not a payout id (po_...)\n", 400)
        try:
            f = filters.parse(request.scope["query_string"])
        except filters.BadQuery as error:
            return PlainTextResponse(f"bad query: {error}\n", 400)
        account = None if f.account in (None, "platform") else f.account
        try:
            text = export.payout_entry(engine, payout_id, account, f.mode == "live")
        except sa.exc.DBAPIError:
            return PlainTextResponse("cannot read the journal: run `stripe-ledger migrate`\n", 503)
        if text is None:
            return PlainTextResponse(f"no exported entry for {payout_id} in this scope\n", 404)
        return PlainTextResponse(text)

    return Route("/books/payout/{payout_id}", payout_entry, methods=["GET", "HEAD"])


def _static_and_probe_routes(engine: sa.Engine) -> list[Route]:
    css = (HERE / "static" / "style.css").read_bytes()

    def stylesheet(_request: Request) -> Response:
        return Response(css, media_type="text/css")

    def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(_request: Request) -> Response:
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sa.exc.DBAPIError:
            return PlainTextResponse("database unreachable\n", 503)
        return PlainTextResponse("ready\n")

    return [
        Route("/static/style.css", stylesheet),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
