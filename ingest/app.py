"""The ingest HTTP app: a plain ASGI application, served by uvicorn.

Routes:
    POST /webhooks/stripe   verify the signature, parse, put on the sink; 200 once it is durable
    GET  /healthz           the process is alive (200)
    GET  /readyz            the sink can take writes (200) or not (503)
    GET  /metrics           Prometheus text format, from this app's own registry

Every limit is checked before the work it bounds: the Content-Length before reading, the byte
count while reading the body chunks, the signature header before the body, the signature
before parsing JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ingest.core import (
    REQUESTS_IN_FLIGHT_MAX,
    Rejection,
    accepted_body,
    body_too_large,
    error_body,
    verify_and_parse,
)
from ingest.signature import SignatureError, parse_header
from ingest.sink import Sink, SinkUnavailable
from ledger.envelope import StripeEvent
from ledger.logs import get_logger
from ledger.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WEBHOOK_PATH = "/webhooks/stripe"
STATS_INTERVAL_S = 60.0
CONTENT_LENGTH_DIGITS_MAX = 12
# Each request's first 64 KiB of body are not counted against Settings.http_bodies_bytes_max
# (they are bounded by the connection limit): a real event of a few KiB is never refused for
# memory that slow clients hold.
BODY_FREE_BYTES = 64 * 1024
# How uvicorn serves the app, for `ingest` and `serve` alike (and the benchmark's verify-only
# baseline, so that it measures the same server).
METRICS_NAMESPACE = "stripe_ledger"
UVICORN_OPTIONS: dict[str, Any] = {
    "workers": 1,
    "loop": "uvloop",  # ~10% more requests/s than asyncio's loop (docs/PERFORMANCE.md)
    # llhttp, a C parser: a third of h11's CPU per request (issue 21). It bounds no head:
    # ingest.http_server.BoundedProtocol does (the bench's verify-only baseline runs it bare).
    "http": "httptools",
    "ws": "none",  # no websockets are served: an Upgrade request is a plain request
    "lifespan": "on",
    "access_log": False,
    "log_config": None,  # keep ledger.logs' redacting handlers
    "server_header": False,
    "date_header": False,
}
_ROUTES: dict[str, tuple[str, ...]] = {
    WEBHOOK_PATH: ("POST",),
    "/healthz": ("GET", "HEAD"),
    "/readyz": ("GET", "HEAD"),
    "/metrics": ("GET", "HEAD"),
}
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BODY_BUCKETS_BYTES = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

log = get_logger("ingest.app")


class _ClientGone(Exception):
    """The client disconnected before we read its whole body: no response to send."""


class IngestApp:
    """The ASGI callable. One per process; ``create_app`` builds it."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        requests_in_flight_max: int = REQUESTS_IN_FLIGHT_MAX,
        stats_interval_s: float = STATS_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self._secrets = settings.webhook_secrets
        self._in_flight_max = requests_in_flight_max
        self._in_flight = 0
        self._bodies_bytes_max = settings.http_bodies_bytes_max
        self._bodies_bytes = 0  # bytes past BODY_FREE_BYTES held by bodies being read
        self._stats_interval_s = stats_interval_s
        self._stats_task: asyncio.Task[None] | None = None
        self._clock = clock
        # structlog's lazy proxy binds a new logger on every call (~3% of the loop's CPU, issue
        # 21, for a debug line that is usually filtered out): the accepted path binds once, on
        # its first request, when the process has configured logging.
        self._accepted_log: Any = None
        self.registry = CollectorRegistry(auto_describe=True)
        # Every metric is stripe_ledger_*: one prefix to find them all on a shared Prometheus.
        self._requests = Counter(
            "ingest_requests",
            "Webhook requests by outcome (accepted, or the error code answered).",
            ["outcome"],
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "ingest_request_seconds",
            "Time from the start of a webhook request to its response.",
            buckets=_LATENCY_BUCKETS_S,
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._produce_seconds = Histogram(
            "ingest_produce_seconds",
            "Time the sink took to make an event durable (Kafka: until acks=all).",
            buckets=_LATENCY_BUCKETS_S,
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._body_bytes = Histogram(
            "ingest_body_bytes",
            "Size of webhook bodies read (bodies over the limit are not counted).",
            buckets=_BODY_BUCKETS_BYTES,
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._in_flight_gauge = Gauge(
            "ingest_requests_in_flight",
            "Webhook requests being served now.",
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._ready_gauge = Gauge(
            "ingest_sink_ready",
            "1 when the last readiness probe found the sink ready, else 0.",
            namespace=METRICS_NAMESPACE,
            registry=self.registry,
        )
        self._counts: dict[str, int] = {}
        self._outcome_counters: dict[str, Any] = {}  # outcome -> its labelled child counter

    # -- ASGI entry --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return  # websockets are not served; uvicorn closes them
        path = scope["path"]
        method = scope["method"]
        allowed = _ROUTES.get(path)
        if allowed is None:
            await _respond(send, 404, error_body("not_found", "no such path"))
            return
        if method not in allowed:
            await _respond(
                send,
                405,
                error_body("method_not_allowed", f"use {' or '.join(allowed)}"),
                [(b"allow", ", ".join(allowed).encode())],
            )
            return
        if path == WEBHOOK_PATH:
            await self._webhook(scope, receive, send)
        elif path == "/healthz":
            await _respond(send, 200, b'{"status":"alive"}', head=method == "HEAD")
        elif path == "/readyz":
            ok = await self._ready()
            body = b'{"status":"ready"}' if ok else error_body("not_ready", "the sink is not ready")
            await _respond(send, 200 if ok else 503, body, head=method == "HEAD")
        else:
            await _respond(
                send,
                200,
                generate_latest(self.registry),
                content_type=CONTENT_TYPE_LATEST.encode(),
                head=method == "HEAD",
            )

    async def _ready(self) -> bool:
        try:
            ok = await self.sink.ready()
        except Exception:  # noqa: BLE001 - a probe that fails means not ready
            ok = False
        self._ready_gauge.set(1 if ok else 0)
        return ok

    # -- the webhook -------------------------------------------------------------------------

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_at_ms = time.time_ns() // 1_000_000
        started = time.perf_counter()
        if self._in_flight >= self._in_flight_max:
            self._count("overloaded")
            log.warning("webhook_rejected", reason="overloaded", status=503)
            await _respond(
                send,
                503,
                error_body("overloaded", "too many requests in flight; retry later"),
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        self._in_flight += 1
        self._in_flight_gauge.inc()
        held = [0]  # body bytes this request counts against http_bodies_bytes_max
        try:
            status, outcome, body, headers = await self._handle(
                scope, receive, received_at_ms, held
            )
        except _ClientGone:
            self._count("client_disconnected")
            return
        finally:
            self._in_flight -= 1
            self._in_flight_gauge.dec()
            self._bodies_bytes -= held[0]  # held until the request is done with its body
            assert self._bodies_bytes >= 0
        self._count(outcome)
        self._request_seconds.observe(time.perf_counter() - started)
        await _respond(send, status, body, headers)

    async def _handle(
        self, scope: Scope, receive: Receive, received_at_ms: int, held: list[int]
    ) -> tuple[int, str, bytes, list[tuple[bytes, bytes]]]:
        """-> (status, outcome for the metrics, body, extra headers)."""
        body_bytes = [0]
        try:
            raw, event = await self._verified(scope, receive, held, body_bytes)
        except Rejection as rejection:
            log.warning(
                "webhook_rejected",
                reason=rejection.code,
                status=rejection.status,
                body_bytes=body_bytes[0],
                client=_client(scope),
            )
            extra = [(b"connection", b"close")] if rejection.status in (413, 503) else []
            return (
                rejection.status,
                rejection.code,
                error_body(rejection.code, rejection.message),
                extra,
            )
        return await self._put(raw, event, received_at_ms)

    async def _verified(
        self, scope: Scope, receive: Receive, held: list[int], body_bytes: list[int]
    ) -> tuple[bytes, StripeEvent]:
        """The body and its event, or a ``Rejection``: the headers are checked before the body
        is read (a declared length over the limit, no usable signature header), the signature
        before the body is parsed. ``body_bytes[0]``: how much was read, for the log line."""
        limit = self.settings.body_bytes_max
        content_length: bytes | None = None
        signature: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length" and content_length is None:
                content_length = value
            elif name == b"stripe-signature" and signature is None:
                signature = value
        header = signature.decode("latin-1") if signature is not None else None
        if content_length is not None:
            text = content_length.strip()
            if not (0 < len(text) <= CONTENT_LENGTH_DIGITS_MAX and text.isdigit()):
                raise Rejection(400, "invalid_content_length", "Content-Length is not a number")
            if int(text) > limit:
                raise body_too_large(limit)
        try:  # cheap check before reading the body: is there a usable header at all?
            parse_header(header)
        except SignatureError as error:
            raise Rejection(400, error.code, error.message) from None
        raw = await self._read_body(receive, limit, held)
        body_bytes[0] = len(raw)
        self._body_bytes.observe(len(raw))
        event = verify_and_parse(
            raw,
            header,
            self._secrets,
            tolerance_s=self.settings.webhook_tolerance_s,
            now_s=self._clock(),
        )
        return raw, event

    async def _put(
        self, raw: bytes, event: StripeEvent, received_at_ms: int
    ) -> tuple[int, str, bytes, list[tuple[bytes, bytes]]]:
        """Hand a verified event to the sink: 200 only once it is durable (the broker's ack or
        the store's commit), 503 + Retry-After while the sink is unavailable."""
        produce_started = time.perf_counter()
        try:
            await self.sink.put(raw, event, received_at_ms)
        except SinkUnavailable as error:
            log.warning(
                "webhook_rejected",
                reason="sink_unavailable",
                status=503,
                event_id=event.event_id,
                detail=str(error),
            )
            return (
                503,
                "sink_unavailable",
                error_body("sink_unavailable", str(error)),
                [(b"retry-after", b"5")],
            )
        except Exception as error:  # noqa: BLE001 - a bug in a sink must not kill the server
            log.error("webhook_sink_error", event_id=event.event_id, error=type(error).__name__)
            return 500, "internal_error", error_body("internal_error", "the sink failed"), []
        self._produce_seconds.observe(time.perf_counter() - produce_started)
        if self._accepted_log is None:
            self._accepted_log = log.bind()
        self._accepted_log.debug("webhook_accepted", event_id=event.event_id, type=event.type)
        # A thin event (v2 reference) is accepted like any event; counted apart (docs/INGEST.md).
        return 200, "accepted_thin" if event.thin else "accepted", accepted_body(event), []

    async def _read_body(self, receive: Receive, limit: int, held: list[int]) -> bytes:
        """The whole body, counting while streaming: stops reading as soon as it passes
        ``limit``, or when the bodies of all requests together would hold more memory than
        allowed (503 ``overloaded``: Stripe retries). ``held[0]``: what this request counts
        against that budget; the caller gives it back when the request is done."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise body_too_large(limit)
            extra = max(0, total - BODY_FREE_BYTES) - held[0]
            if extra > 0:
                if self._bodies_bytes + extra > self._bodies_bytes_max:
                    raise Rejection(
                        503, "overloaded", "too many request bodies in memory; retry later"
                    )
                self._bodies_bytes += extra
                held[0] += extra
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _count(self, outcome: str) -> None:
        counter = self._outcome_counters.get(outcome)
        if counter is None:  # ``labels`` is a lock and a tuple of label values: once per outcome
            counter = self._outcome_counters[outcome] = self._requests.labels(outcome=outcome)
        counter.inc()
        self._counts[outcome] = self._counts.get(outcome, 0) + 1

    # -- lifespan ----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.sink.start()
                except Exception as error:  # noqa: BLE001 - reported to the server, which exits
                    log.error(
                        "ingest_start_failed",
                        sink=getattr(self.sink, "destination", "sink"),
                        error=type(error).__name__,
                    )
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self._stats_task = asyncio.create_task(self._log_stats())
                # Where accepted events go: the topic (ingest) or the store (serve), never a
                # topic that serve does not use.
                log.info("ingest_started", sink=getattr(self.sink, "destination", "sink"))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._stats_task is not None:
                    self._stats_task.cancel()
                try:
                    await self.sink.stop()
                finally:
                    self._log_counts(stopped=True)
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self._stats_interval_s)
            self._log_counts(stopped=False)

    def _log_counts(self, *, stopped: bool) -> None:
        counts = {f"requests_{outcome}": n for outcome, n in self._counts.items()}
        if stopped:
            log.info("ingest_stopped", in_flight=self._in_flight, **counts)
        else:
            log.info("ingest_stats", in_flight=self._in_flight, **counts)


def create_app(settings: Settings, sink: Sink, **options: Any) -> IngestApp:
    """The ingest ASGI app. ``sink`` receives each verified event (``KafkaSink`` in production)."""
    return IngestApp(settings, sink, **options)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}" if client else None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"application/json",
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers.extend(extra_headers or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
