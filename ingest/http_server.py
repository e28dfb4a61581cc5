"""How ``ingest`` and ``serve`` run the ASGI app: uvicorn's h11 protocol with hard bounds.

uvicorn alone has no connection limit, no deadline for a request head or body, trusts
``X-Forwarded-For`` from loopback and lets a request head of any size through when it arrives
in one segment (h11 bounds only an *incomplete* head). One slow, unsigned client per socket was
enough to hold memory and sockets for ever (issue 19). ``BoundedH11Protocol`` adds, per
connection:

- a connection limit: past ``connections_max`` open sockets a new one gets 503 and is closed;
- a head deadline: the whole request head within ``header_timeout_s`` of the connection (or of
  the previous response), else 408 and close (a keep-alive socket idle that long is closed);
- a body deadline: the whole body within ``body_timeout_s`` of the head, else 408 and close;
- a head-size limit: more than ``HEADER_BYTES_MAX`` -> 431 and close;
- Content-Length together with Transfer-Encoding (request smuggling, RFC 9112 6.1) -> 400 and
  close.

The bytes of bodies held in memory are bounded by the app (``ingest.app``), which sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ledger.logs import get_logger
from ledger.settings import Settings

# The documented limit of a request head (request line + header lines).
HEADER_BYTES_MAX = 16 * 1024
# h11 refuses (bare 400) a head still incomplete past this; above HEADER_BYTES_MAX so that a head
# of 16-32 KiB arriving in pieces still reaches our check and gets the same 431.
INCOMPLETE_HEAD_BYTES_MAX = 2 * HEADER_BYTES_MAX
KEEP_ALIVE_TIMEOUT_S = 5
GRACEFUL_SHUTDOWN_TIMEOUT_S = 20

log = get_logger("ingest.http")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    connections_max: int
    header_timeout_s: float
    body_timeout_s: float

    def __post_init__(self) -> None:
        assert self.connections_max > 0
        assert self.header_timeout_s > 0
        assert self.body_timeout_s > 0


def _raw_response(status: int, reason: bytes, body: bytes) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for when h11 cannot frame one
    (no request has been parsed yet, so h11 refuses to send a response)."""
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _error(code: str, message: str) -> bytes:
    from ingest.core import error_body  # ingest.core imports kafka; only needed on this path

    return error_body(code, message)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds of the module docstring. ``limits`` is set on a
    subclass made by ``bounded_protocol``."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._seen_cycle: object | None = None

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.connections_max:
            log.warning("connection_refused", reason="connections_max", status=503)
            body = _error("overloaded", "too many connections; retry later")
            transport.write(_raw_response(503, b"Service Unavailable", body))
            transport.close()
            return
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- requests ----------------------------------------------------------------------------

    def handle_events(self) -> None:
        tasks_before = set(self.tasks)
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            self._on_head(self.tasks - tasks_before)

    def _on_head(self, new_tasks: set[asyncio.Task[None]]) -> None:
        """A request head was parsed (its ASGI task created, not yet run): check it."""
        self._disarm()
        refusal = self._refusal()
        if refusal is not None:
            for task in new_tasks:  # it has not started: the app never sees this request
                task.cancel()
            self.cycle.disconnected = True
            status, code, message = refusal
            log.warning("request_refused", reason=code, status=status)
            self._respond_and_close(status, _error(code, message))
            return
        if self.conn.their_state is h11.SEND_BODY:
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def _refusal(self) -> tuple[int, str, str] | None:
        names = {name for name, _ in self.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            return 400, "ambiguous_length", "both Content-Length and Transfer-Encoding"
        head_bytes = len(self.scope["raw_path"]) + len(self.scope["query_string"]) + 16
        head_bytes += sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_bytes > HEADER_BYTES_MAX:
            return 431, "headers_too_large", f"the request head is over {HEADER_BYTES_MAX} bytes"
        return None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state is h11.DONE:
            self._disarm()  # the whole body is in: the app's own time is not bounded here

    def on_response_complete(self) -> None:
        # Armed first: super() may parse a pipelined head at once, which re-arms for its body.
        if not self.transport.is_closing():
            self._arm(self.limits.header_timeout_s, self._head_timed_out)
        super().on_response_complete()

    # -- deadlines ---------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            # Nothing of a request parsed yet: h11 cannot frame a response, so write it raw.
            body = _error("request_timeout", "the request head did not arrive in time")
            self.transport.write(_raw_response(408, b"Request Timeout", body))
        log.info("connection_timed_out", phase="head", status=408)
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.cycle is None:
            return
        log.warning("request_refused", reason="body_timeout", status=408)
        cycle = self.cycle
        if not cycle.response_started:
            cycle.disconnected = True  # the app's receive() answers http.disconnect from now on
            cycle.message_event.set()
            self._respond_and_close(
                408, _error("request_timeout", "the request body did not arrive in time")
            )
        else:
            self.transport.close()

    def _respond_and_close(self, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers))
            output += self.conn.send(h11.Data(data=body))
            output += self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            output = b""  # a response had already begun: closing is all that is left
        self.transport.write(output or b"")
        self.transport.close()


def bounded_protocol(limits: HttpLimits) -> type[BoundedH11Protocol]:
    return type("BoundedH11ProtocolWithLimits", (BoundedH11Protocol,), {"limits": limits})


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        connections_max=settings.http_connections_max,
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of ``ingest.app.UVICORN_OPTIONS`` with the bounded protocol and the proxies
    trusted by the settings (none by default: then ``X-Forwarded-*`` is ignored)."""
    from ingest.app import UVICORN_OPTIONS

    proxies = list(settings.trusted_proxies)
    return {
        **UVICORN_OPTIONS,
        "http": bounded_protocol(http_limits(settings)),
        "h11_max_incomplete_event_size": INCOMPLETE_HEAD_BYTES_MAX,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_TIMEOUT_S,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
    }


class ListeningServer(uvicorn.Server):
    """uvicorn.Server that logs ``event`` (e.g. ``serve_listening``) once the socket is bound,
    not before: a taken port must not be announced as listening."""

    def __init__(self, config: uvicorn.Config, logger: Any, event: str, **fields: Any) -> None:
        super().__init__(config)
        self._logger = logger
        self._event = event
        self._fields = fields

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            bound = [s.getsockname() for server in self.servers for s in server.sockets]
            port = bound[0][1] if bound else self.config.port
            self._logger.info(self._event, host=self.config.host, port=port, **self._fields)

    def serve_until_stopped(self) -> bool:
        """Run until SIGTERM/SIGINT; True if it ever listened. uvicorn exits on a bind error
        (SystemExit) after logging why: that is a False here, not an exception."""
        try:
            self.run()
        except SystemExit:
            pass
        return bool(self.started)


def make_server(
    app: Any, settings: Settings, host: str, port: int, logger: Any, event: str, **fields: Any
) -> ListeningServer:
    config = uvicorn.Config(app, host=host, port=port, **uvicorn_options(settings))
    return ListeningServer(config, logger, event, **fields)
