"""How ``ingest`` and ``serve`` run the ASGI app: uvicorn's httptools protocol with hard bounds.

uvicorn alone has no connection limit, no deadline for a request head or body, trusts
``X-Forwarded-For`` from loopback and, with httptools, buffers a request head of any size (with
h11, a head of any size that arrives in one segment). One slow, unsigned client per socket was
enough to hold memory and sockets for ever (issue 19). ``BoundedProtocol`` adds, per
connection:

- a connection limit: past ``connections_max`` open sockets a new one gets 503 and is closed;
- a head deadline: the whole request head within ``header_timeout_s`` of the connection (or of
  the previous response), else 408 and close (a keep-alive socket idle that long is closed);
- a body deadline: the whole body within ``body_timeout_s`` of the head, else 408 and close;
- a head-size limit: more than ``HEADER_BYTES_MAX`` -> 431 and close (a head still incomplete
  past ``INCOMPLETE_HEAD_BYTES_MAX`` too, so that a head is never buffered without bound);
- Content-Length together with Transfer-Encoding (request smuggling, RFC 9112 6.1) -> 400 and
  close.

The bytes of bodies held in memory are bounded by the app (``ingest.app``), which sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger.logs import get_logger
from ledger.settings import Settings

# The documented limit of a request head (request line + header lines).
HEADER_BYTES_MAX = 16 * 1024
# A head still incomplete past this is refused at once (431); above HEADER_BYTES_MAX so that the
# bytes of a segment that also holds the start of a body never refuse a head within the limit.
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


def _raw_response(status: int, body: bytes) -> bytes:
    """A whole HTTP/1.1 response that closes the connection: the refusals are answered before
    (or instead of) the app's response, outside uvicorn's response cycle."""
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _error(code: str, message: str) -> bytes:
    from ingest.core import error_body  # ingest.core imports kafka; only needed on this path

    return error_body(code, message)


class JoinedWrites:
    """A transport whose writes of one loop step go out as one ``write`` (one system call).

    uvicorn writes a response in two calls (the head, then the body); on loopback each system
    call also does the receiver's TCP work and wake-up (strace: half the writes, a few µs of
    system CPU per request less, issue 21). The writes of a step are joined and sent when the
    response completes (``BoundedProtocol.on_response_complete``) or, for anything else (a
    streamed body, a 100 Continue), at the loop's next turn; ``close`` sends what is pending
    first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, abort, ...
        return getattr(self._transport, name)


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, a C parser: a third of h11's CPU per request, issue
    21) with the bounds of the module docstring. httptools itself bounds nothing: the head is
    counted here, while it arrives (``INCOMPLETE_HEAD_BYTES_MAX``) and once it is whole
    (``HEADER_BYTES_MAX``). ``limits`` is set on a subclass made by ``bounded_protocol``."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._writes: JoinedWrites
        self._reading_head = True  # from a message's first byte to its last header
        self._head_bytes_fed = 0  # bytes fed while reading a head (bounds an incomplete one)
        self._refusal: tuple[int, str, str] | None = None  # why the parser was stopped

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writes = JoinedWrites(transport, self.loop)
        self.transport = self._writes  # type: ignore[assignment]  # a Transport by duck typing
        if len(self.connections) > self.limits.connections_max:
            log.warning("connection_refused", reason="connections_max", status=503)
            body = _error("overloaded", "too many connections; retry later")
            self._write_and_close(_raw_response(503, body))
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

    def _write_and_close(self, data: bytes) -> None:
        self._disarm()
        self.transport.write(data)
        self.transport.close()

    # -- requests ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused or timed out: nothing more is read
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes_fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol to upgrade to ("ws": "none"): served as a plain request
        except httptools.HttpParserError as error:
            self._refuse(self._refusal or self._parse_error(str(error)))
            return
        if self._reading_head and self._head_bytes_fed > INCOMPLETE_HEAD_BYTES_MAX:
            self._refuse((431, "headers_too_large", _HEAD_TOO_LARGE))

    def _parse_error(self, detail: str) -> tuple[int, str, str]:
        # llhttp refuses Content-Length with Transfer-Encoding itself, at the second of the two
        # headers ("Transfer-Encoding can't be present with Content-Length"), before the head
        # is complete; the same refusal as the one ``_head_refusal`` would give.
        if "Content-Length" in detail and "Transfer-Encoding" in detail:
            return _AMBIGUOUS
        return 400, "invalid_request", "the request is not valid HTTP/1.1"

    def _refuse(self, refusal: tuple[int, str, str], reason: str | None = None) -> None:
        """Answer ``refusal`` (status, error code, message) and close; ``reason``: the log's,
        when it is not the error code."""
        status, code, message = refusal
        log.warning("request_refused", reason=reason or code, status=status)
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # a response has begun: closing is all that is left
            return
        if cycle is not None:
            cycle.disconnected = True  # the app's receive() answers http.disconnect from now on
            cycle.message_event.set()
        self._write_and_close(_raw_response(status, _error(code, message)))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True

    def on_headers_complete(self) -> None:
        """A whole head: checked before uvicorn makes its ASGI task (a refused request never
        reaches the app). Raising stops the parser; ``data_received`` answers the refusal."""
        self._reading_head = False
        self._head_bytes_fed = 0
        self._disarm()
        self._refusal = self._head_refusal()
        if self._refusal is not None:
            raise _Refused
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s, self._body_timed_out)  # until the body's last byte

    def _head_refusal(self) -> tuple[int, str, str] | None:
        names = {name for name, _ in self.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            return _AMBIGUOUS
        head_bytes = len(self.url) + 16
        head_bytes += sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_bytes > HEADER_BYTES_MAX:
            return 431, "headers_too_large", _HEAD_TOO_LARGE
        return None

    def on_message_complete(self) -> None:
        self._disarm()  # the whole body is in: the app's own time is not bounded here
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._writes.flush()  # the response's joined writes, now rather than next turn
        # Armed first: super() may start a pipelined request at once, which re-arms for it.
        if not self.transport.is_closing():
            self._arm(self.limits.header_timeout_s, self._head_timed_out)
        super().on_response_complete()

    # -- deadlines ---------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.info("connection_timed_out", phase="head", status=408)
        body = _error("request_timeout", "the request head did not arrive in time")
        self._write_and_close(_raw_response(408, body))

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.cycle is None:
            return
        refusal = (408, "request_timeout", "the request body did not arrive in time")
        self._refuse(refusal, reason="body_timeout")


class _Refused(Exception):
    """Raised in a parser callback to stop the parser (httptools re-raises it wrapped)."""


_AMBIGUOUS = (400, "ambiguous_length", "both Content-Length and Transfer-Encoding")
_HEAD_TOO_LARGE = f"the request head is over {HEADER_BYTES_MAX} bytes"


def bounded_protocol(limits: HttpLimits) -> type[BoundedProtocol]:
    return type("BoundedProtocolWithLimits", (BoundedProtocol,), {"limits": limits})


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
