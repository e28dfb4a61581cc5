"""A small HTTP load generator for signed Stripe webhooks, light enough to share 2 cores.

Each worker thread keeps one keep-alive socket, writes a pre-built request (a fresh
``Stripe-Signature`` per request, made with ``bench.common.sign``) and reads the response by
its Content-Length. Latency is measured client-side per request. With ``rate_rps`` the load is
open-loop: request i is due at ``start + i / rate_rps`` and its latency is counted from that due
time (so a stalled server is not hidden by the client waiting: no coordinated omission).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.common import sign

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES_MAX = 5


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # monotonic time of each 2xx
    errors: int = 0
    retries: int = 0
    started: float = 0.0
    elapsed_s: float = 0.0


class _Connection:
    def __init__(self, port: int, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = self._open()
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        if close:
            self.close()
        return status


def _request_bytes(path: str, port: int, payload: bytes, secret: str) -> bytes:
    signature = sign(payload, secret, int(time.time()))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Stripe-Signature: {signature}\r\nContent-Length: {len(payload)}\r\n"
        "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def _send(
    connection: _Connection, path: str, port: int, payload: bytes, secret: str
) -> tuple[int, int]:
    """One event, freshly signed at each attempt, retried like Stripe would on 429/5xx or a
    broken connection (at most RETRIES_MAX times): -> (last status, 0 if none; retries)."""
    status = 0
    for attempt in range(RETRIES_MAX + 1):
        data = _request_bytes(path, port, payload, secret)
        try:
            status = connection.request(data)
        except (OSError, ValueError, IndexError):
            connection.close()
            status = 0
        if status not in RETRY_STATUSES and status != 0:
            return status, attempt
        time.sleep(0.05 * (attempt + 1))
    return status, RETRIES_MAX + 1


def post(
    port: int,
    payloads: Sequence[bytes],
    *,
    secret: str,
    concurrency: int,
    rate_rps: float | None = None,
    path: str = "/webhooks/stripe",
    timeout_s: float = 30.0,
) -> LoadResult:
    """POST every payload once (retrying 503s like Stripe would); per-request latencies."""
    result = LoadResult()
    lock = threading.Lock()
    cursor = iter(range(len(payloads)))
    problems: list[BaseException] = []

    def worker() -> None:
        connection = _Connection(port, timeout_s)
        latencies: list[float] = []
        done: list[float] = []
        statuses: dict[int, int] = {}
        try:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None or problems:
                    break
                due = result.started + index / rate_rps if rate_rps else None
                if due is not None:
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                begun = time.monotonic()
                status, retries = _send(connection, path, port, payloads[index], secret)
                end = time.monotonic()
                if retries:
                    with lock:
                        result.retries += retries
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    latencies.append(end - (due if due is not None else begun))
                    done.append(end)
        except BaseException as error:  # noqa: BLE001 - reported to the caller
            problems.append(error)
        finally:
            connection.close()
            with lock:
                result.latencies_s.extend(latencies)
                result.done_at.extend(done)
                for status, count in statuses.items():
                    result.statuses[status] = result.statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    result.started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.monotonic() - result.started
    if problems:
        raise problems[0]
    result.sent = len(payloads)
    result.ok = sum(count for status, count in result.statuses.items() if 200 <= status < 300)
    result.errors = result.sent - result.ok
    return result
