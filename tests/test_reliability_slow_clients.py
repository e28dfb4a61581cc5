"""Slow and idle clients against the real ``serve`` and ``ingest`` processes (issue 19).

Hundreds of unsigned clients each hold a connection open with a nearly complete 1 MB body, or
send nothing at all. Before issue 19 they took ``serve`` from ~90 MB to ~400 MB of RSS and held
their sockets for ever. Now: RSS stays under 300 MiB, a signed event is still answered 200
meanwhile, and each slow client is answered 408 (or closed) once its deadline passes.

Everything is loopback and bounded: a fixed number of sockets, every wait has a deadline.
``-s`` prints the figures (``slow clients: {...}``).
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ingest as web
from tests.support.kafka_util import create_topic
from tests.support.reliability import Worker, env_for, start_http_worker

SLOW_CLIENTS = 400
IDLE_CLIENTS = 500
BODY_BYTES = 1_000_000
CHUNK_BYTES = 64 * 1024
RSS_BYTES_MAX = 300 * 1024 * 1024
DEADLINE_S = 3  # LEDGER_HTTP_HEADER_TIMEOUT_S and LEDGER_HTTP_BODY_TIMEOUT_S in these tests
SEND_S_MAX = 60.0  # bounds the sending rounds; never asserted on
CLOSE_S_MAX = 30.0  # bounds the wait for the server to close the slow sockets (> DEADLINE_S)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _head(port: int, body_bytes: int) -> bytes:
    # A well-formed but unsigned header: it passes the cheap header check, fails the HMAC.
    return (
        f"POST {web.WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {body_bytes}\r\n"
        f"Stripe-Signature: t={int(time.time())},v1={'0' * 64}\r\n\r\n"
    ).encode()


def open_sockets(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def trickle_bodies(port: int, socks: list[socket.socket], pid: int) -> int:
    """Each socket sends a head and all of a BODY_BYTES body but its last byte, round-robin;
    returns the peak RSS of ``pid`` seen meanwhile."""
    chunk = b" " * CHUNK_BYTES
    pending = {sock: _head(port, BODY_BYTES) for sock in socks}
    left = {sock: BODY_BYTES - 1 for sock in socks}
    peak = rss_bytes(pid)
    deadline = time.monotonic() + SEND_S_MAX
    while pending and time.monotonic() < deadline:
        writable = ready(list(pending), selectors.EVENT_WRITE)
        for sock in writable:
            data = pending[sock] or chunk[: min(CHUNK_BYTES, left[sock])]
            try:
                sent = sock.send(data)
            except OSError:  # answered and closed by the server (503/413): it gave up on it
                del pending[sock]
                continue
            if pending[sock]:
                pending[sock] = pending[sock][sent:]
            else:
                left[sock] -= sent
                if left[sock] == 0:
                    del pending[sock]
        peak = max(peak, rss_bytes(pid))
    return peak


def ready(socks: list[socket.socket], events: int, timeout_s: float = 0.5) -> list[socket.socket]:
    """The sockets ready for ``events`` within ``timeout_s``. epoll, not select(): a test
    process that already holds many descriptors gets numbers past select()'s 1024."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, events)
        return [key.fileobj for key, _mask in selector.select(timeout_s)]  # type: ignore[misc]


def wait_closed(socks: list[socket.socket], pid: int) -> tuple[int, dict[str, int], int]:
    """-> (sockets the server closed within CLOSE_S_MAX, their first status lines, peak RSS)."""
    open_ = set(socks)
    statuses: dict[str, int] = {}
    peak = rss_bytes(pid)
    deadline = time.monotonic() + CLOSE_S_MAX
    while open_ and time.monotonic() < deadline:
        readable = ready(list(open_), selectors.EVENT_READ)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                status = data[9:12].decode()
                statuses[status] = statuses.get(status, 0) + 1
            if not data or b"connection: close" in data.lower():
                open_.discard(sock)
        peak = max(peak, rss_bytes(pid))
    return len(socks) - len(open_), statuses, peak


def signed_event_answered(port: int) -> int:
    body = web.event_body()
    headers = {"Stripe-Signature": web.stripe_signature(body)}
    return web.request(port, "POST", web.WEBHOOK, body, headers)[0]


@pytest.fixture(params=["serve", "ingest"])
def worker(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, topic: str
) -> Iterator[tuple[Worker, int]]:
    env = env_for(
        f"sqlite:///{tmp_path / 'ledger.db'}",
        kafka_bootstrap,
        topic,
        LEDGER_HTTP_HEADER_TIMEOUT_S=str(DEADLINE_S),
        LEDGER_HTTP_BODY_TIMEOUT_S=str(DEADLINE_S),
    )
    if request.param == "ingest":
        create_topic(kafka_bootstrap, topic, partitions=1)
    extra = ["--no-project"] if request.param == "serve" else []
    process, port = start_http_worker(request.param, env, tmp_path / "worker.log", extra)
    try:
        yield process, port
    finally:
        process.kill()


def test_slow_unsigned_bodies_stay_bounded_and_are_cut_off(worker: tuple[Worker, int]) -> None:
    process, port = worker
    before = rss_bytes(process.pid)
    socks = open_sockets(port, SLOW_CLIENTS)
    try:
        peak = trickle_bodies(port, socks, process.pid)
        assert signed_event_answered(port) == 200  # a real delivery still gets through
        closed, statuses, peak_after = wait_closed(socks, process.pid)
    finally:
        for sock in socks:
            sock.close()
    peak = max(peak, peak_after)
    figures = {
        "command": process.args[0],
        "clients": SLOW_CLIENTS,
        "rss_before_mib": before // 2**20,
        "rss_peak_mib": peak // 2**20,
        "closed_by_server": closed,
        "statuses": statuses,
    }
    print("slow clients:", json.dumps(figures))
    assert peak < RSS_BYTES_MAX, figures
    assert closed == SLOW_CLIENTS, figures
    assert set(statuses) <= {"408", "503"}, figures
    assert process.alive()


def test_idle_connections_are_closed_and_real_events_still_answered(
    worker: tuple[Worker, int],
) -> None:
    process, port = worker
    socks = open_sockets(port, IDLE_CLIENTS)
    try:
        assert signed_event_answered(port) == 200
        closed, statuses, peak = wait_closed(socks, process.pid)
    finally:
        for sock in socks:
            sock.close()
    figures = {"clients": IDLE_CLIENTS, "closed": closed, "statuses": statuses, "peak": peak}
    print("idle clients:", json.dumps(figures))
    assert closed == IDLE_CLIENTS, figures
    assert statuses == {"408": IDLE_CLIENTS}, figures
    assert peak < RSS_BYTES_MAX, figures
