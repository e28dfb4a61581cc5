"""A local stand-in for the parts of Stripe's API that ``balance-sync`` and ``backfill`` read.

Real HTTP on 127.0.0.1 (stdlib ``ThreadingHTTPServer``), answering like Stripe for data chosen
by the caller: the demo serves the balance transactions of its generated history with it, and
the tests serve stories with chosen amounts. stripe-mock answers with fixed fixtures; this one
answers with your data, pages it, filters it, expands it and rate-limits it on request.

Served (GET only, JSON, Stripe's list envelope and error shape):

* ``/v1/balance_transactions``: ``created`` (exact, ``[gt|gte|lt|lte]``), ``payout`` (the
  members of an automatic payout), ``type``, ``limit`` (1..100, default 10), ``starting_after``,
  ``expand[]=data.source`` (the source id replaced by its object); newest first, ``has_more``;
* ``/v1/balance``; ``/v1/accounts`` (the platform's connected accounts); ``/v1/events``.

The scope of a request is its key's mode (``sk_test_``/``sk_live_``) and its ``Stripe-Account``
header, so test and live data, and each connected account, are served apart. ``rate_limit(n,
retry_after_s)`` answers the next n requests with 429 and ``Retry-After``.

``python -m demo.standin --data FILE`` serves a data file (``StandinData.to_json``) until
interrupted and prints ``STRIPE_API_BASE=http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

API_VERSION = "2026-07-29.dahlia"
PAGE_LIMIT_DEFAULT = 10  # Stripe's default page size
PAGE_LIMIT_MAX = 100  # Stripe's largest page
REQUESTS_LOGGED_MAX = 100_000  # the request log a test inspects; older entries are dropped
DELAY_MS_MAX = 10_000

if TYPE_CHECKING:  # a type only: the stand-in serves any data, the demo's among them
    from demo.history import DemoHistory

Json = dict[str, Any]
Scope = tuple[str | None, bool]  # (connected account or None for the platform, livemode)
_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
_CREATED = re.compile(r"^created\[(gt|gte|lt|lte)\]$")


@dataclass
class ScopeData:
    """What one (account, mode) holds: its balance transactions (``source`` as an id string, as
    Stripe stores them), its Balance, its automatic payouts' members, its events."""

    balance_transactions: list[Json] = field(default_factory=list)
    balance: Json | None = None
    payouts: dict[str, list[str]] = field(default_factory=dict)  # po_ -> member txn ids
    events: list[Json] = field(default_factory=list)


@dataclass
class StandinData:
    scopes: dict[Scope, ScopeData] = field(default_factory=dict)
    objects: dict[str, Json] = field(default_factory=dict)  # sources by id, for expand[]
    accounts: list[Json] = field(default_factory=list)  # the platform's connected accounts

    def scope(self, account: str | None = None, livemode: bool = False) -> ScopeData:
        return self.scopes.setdefault((account, livemode), ScopeData())

    def to_json(self) -> Json:
        return {
            "scopes": [
                {
                    "account": account,
                    "livemode": livemode,
                    "balance_transactions": data.balance_transactions,
                    "balance": data.balance,
                    "payouts": data.payouts,
                    "events": data.events,
                }
                for (account, livemode), data in self.scopes.items()
            ],
            "objects": self.objects,
            "accounts": self.accounts,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> StandinData:
        data = cls(
            objects=dict(body.get("objects") or {}), accounts=list(body.get("accounts") or [])
        )
        for item in body.get("scopes") or ():
            data.scopes[(item.get("account"), bool(item.get("livemode")))] = ScopeData(
                balance_transactions=list(item.get("balance_transactions") or []),
                balance=item.get("balance"),
                payouts={k: list(v) for k, v in (item.get("payouts") or {}).items()},
                events=list(item.get("events") or []),
            )
        return data


def from_demo(history: DemoHistory) -> StandinData:
    """What the demo's history (``demo.history.DemoHistory``) has Stripe hold, in test
    mode: its balance transactions, payouts' members, final Balances and connected accounts."""
    data = StandinData(objects=dict(history.sources))
    for account, bts in history.balance_transactions.items():
        scope = data.scope(account, False)
        scope.balance_transactions = list(bts)
        scope.balance = history.balances.get(account)
        scope.payouts = dict(history.payout_members.get(account, {}))
        scope.events = [e for e in history.events if e.get("account") == account]
    data.accounts = [
        {"id": account, "object": "account", "type": "standard"}
        for account in history.balance_transactions
        if account is not None
    ]
    return data


class StandinError(Exception):
    """An answer with an HTTP status and Stripe's error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _newest_first(items: Sequence[Json]) -> list[Json]:
    return sorted(
        items, key=lambda item: (item.get("created", 0), item.get("id", "")), reverse=True
    )


def _int_param(query: Mapping[str, list[str]], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name][0])
    except ValueError:
        raise StandinError(400, f"Invalid integer: {query[name][0]} ({name})") from None


def _created_filter(items: list[Json], query: Mapping[str, list[str]]) -> list[Json]:
    exact = _int_param(query, "created")
    if exact is not None:
        items = [item for item in items if item.get("created") == exact]
    tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    for name in query:
        match = _CREATED.match(name)
        if match:
            bound = _int_param(query, name)
            assert bound is not None
            compare = tests[match.group(1)]
            items = [item for item in items if compare(int(item.get("created", 0)), bound)]
    return items


def _expands(query: Mapping[str, list[str]]) -> set[str]:
    """``expand[]=x`` and ``expand[0]=x`` (the stripe library's form) alike."""
    return {
        value for name, values in query.items() if name.startswith("expand[") for value in values
    }


class _QuietServer(ThreadingHTTPServer):
    """socketserver prints a traceback to stderr for any handler error; a client that hangs up
    mid-request (the demo interrupted by Ctrl-C, a test closing its session) is not an error of
    the stand-in's, so it goes unsaid, and anything else is one line, not a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        print(f"stripe standin: request failed: {error!r}", file=sys.stderr)


class Standin:
    """The server; ``with Standin(data) as base:`` serves until the block ends."""

    def __init__(self, data: StandinData, *, api_version: str = API_VERSION, delay_ms: int = 0):
        assert 0 <= delay_ms <= DELAY_MS_MAX
        self.data = data
        self.api_version = api_version
        self.delay_ms = delay_ms  # every answer waits this long (to interrupt a run mid-way)
        self.requests: list[Json] = []  # {"path", "query", "account", "livemode", "status"}
        self._lock = threading.Lock()
        self._rate_limited = 0
        self._retry_after_s = 0
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------

    def rate_limit(self, times: int, retry_after_s: int = 1) -> None:
        """Answer the next ``times`` requests with 429 and ``Retry-After: retry_after_s``."""
        assert times >= 0 and retry_after_s >= 0
        with self._lock:
            self._rate_limited = times
            self._retry_after_s = retry_after_s

    def start(self, port: int = 0) -> str:
        assert self._server is None, "already started"
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                status, headers, body = standin.handle(
                    self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                raw = json.dumps(body).encode("utf-8")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass  # the request log is ``Standin.requests``; keys never reach a log

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base

    @property
    def base(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- answering --------------------------------------------------------------------------

    def handle(self, target: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        url = urlparse(target)
        query = parse_qs(url.query, keep_blank_values=True)
        record: Json = {"path": url.path, "query": query, "account": None, "livemode": None}
        answer_headers = {"Stripe-Version": self.api_version, "Request-Id": "req_standin"}
        try:
            with self._lock:
                if len(self.requests) >= REQUESTS_LOGGED_MAX:
                    del self.requests[: REQUESTS_LOGGED_MAX // 2]
                self.requests.append(record)
                if self._rate_limited > 0:
                    self._rate_limited -= 1
                    answer_headers["Retry-After"] = str(self._retry_after_s)
                    raise StandinError(429, "Too many requests", "rate_limit_error")
            livemode = self._livemode(headers.get("authorization", ""))
            account = headers.get("stripe-account") or None
            record.update(account=account, livemode=livemode)
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000)
            body = self._route(url.path, query, account, livemode)
            status = 200
        except StandinError as error:
            status = error.status
            body = {"error": {"type": error.kind, "message": str(error)}}
        record["status"] = status
        return status, answer_headers, body

    @staticmethod
    def _livemode(authorization: str) -> bool:
        scheme, _, key = authorization.partition(" ")
        match = _KEY.match(key.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            raise StandinError(401, "Invalid API Key provided", "authentication_error")
        return match.group(2) == "live"

    def _route(
        self, path: str, query: Mapping[str, list[str]], account: str | None, livemode: bool
    ) -> Json:
        scope = self.data.scopes.get((account, livemode), ScopeData())
        if path == "/v1/balance_transactions":
            return self._transactions(scope, query)
        if path == "/v1/balance":
            balance = scope.balance or {"object": "balance", "available": [], "pending": []}
            return {**balance, "livemode": livemode}
        if path == "/v1/accounts":
            if account is not None:
                raise StandinError(400, "Connected accounts cannot list accounts")
            return self._list(path, self.data.accounts, query)
        if path == "/v1/events":
            return self._list(path, _created_filter(list(scope.events), query), query)
        raise StandinError(404, f"Unrecognized request URL (GET: {path})")

    def _transactions(self, scope: ScopeData, query: Mapping[str, list[str]]) -> Json:
        items = scope.balance_transactions
        if "payout" in query:
            payout = query["payout"][0]
            if payout not in scope.payouts:
                raise StandinError(404, f"No such payout: '{payout}'", "invalid_request_error")
            members = set(scope.payouts[payout])
            items = [item for item in items if item["id"] in members]
        if "type" in query:
            items = [item for item in items if item.get("type") == query["type"][0]]
        page = self._list("/v1/balance_transactions", _created_filter(list(items), query), query)
        if "data.source" in _expands(query):
            page["data"] = [self._expanded(item) for item in page["data"]]
        return page

    def _expanded(self, item: Json) -> Json:
        source = item.get("source")
        if isinstance(source, str) and source in self.data.objects:
            return {**item, "source": self.data.objects[source]}
        return item

    def _list(self, path: str, items: list[Json], query: Mapping[str, list[str]]) -> Json:
        limit = _int_param(query, "limit")
        limit = PAGE_LIMIT_DEFAULT if limit is None else limit
        if not 1 <= limit <= PAGE_LIMIT_MAX:
            raise StandinError(400, f"Invalid limit: must be between 1 and {PAGE_LIMIT_MAX}")
        ordered = _newest_first(items)
        if "starting_after" in query:
            ids = [item.get("id") for item in ordered]
            after = query["starting_after"][0]
            if after not in ids:
                raise StandinError(400, f"starting_after: no such object: '{after}'")
            ordered = ordered[ids.index(after) + 1 :]
        return {
            "object": "list",
            "url": path,
            "data": ordered[:limit],
            "has_more": len(ordered) > limit,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.standin",
        description="Serve a stand-in Stripe API (balance transactions, balance, accounts, "
        "events) for the data in FILE on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="StandinData as JSON")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    args = parser.parse_args(argv)
    try:
        data = StandinData.from_json(json.loads(Path(args.data).read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError, TypeError) as error:
        print(f"demo.standin: cannot read {args.data}: {error}", file=sys.stderr)
        return 2
    standin = Standin(data)
    print(f"STRIPE_API_BASE={standin.start(args.port)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
