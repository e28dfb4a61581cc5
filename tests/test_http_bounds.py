"""The HTTP door's protocol bounds (issue 19) and start-up validation (issue 20), against the real
``serve`` process (SQLite, no projector): request smuggling, the head-size limit, proxy headers,
the port and the limits checked at start, readiness logged only once bound."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ingest as web
from tests.support.reliability import (
    CLI,
    ROOT,
    Worker,
    env_for,
    start_http_worker,
    wait_until,
)

RECV_S_MAX = 10.0


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Worker, int]]:
    env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    worker, port = start_http_worker("serve", env, tmp_path / "serve.log", ["--no-project"])
    try:
        yield worker, port
    finally:
        worker.kill()


def exchange(port: int, raw: bytes) -> tuple[bytes, bool]:
    """Send ``raw``; -> (everything answered, whether the server closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_S_MAX) as sock:
        sock.sendall(raw)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return answer, False  # still open after RECV_S_MAX: kept alive
        except ConnectionResetError:
            pass
        return answer, True


def test_content_length_with_transfer_encoding_is_refused_and_closed(
    serve: tuple[Worker, int],
) -> None:
    _worker, port = serve
    body = b'{"id":"evt_1"}'
    raw = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\nStripe-Signature: t=1,v1=00\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), len(body), body)
    )
    answer, closed = exchange(port, raw)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"ambiguous_length" in answer
    assert closed


@pytest.mark.parametrize("pieces", [1, 4])
def test_a_head_over_16_kib_gets_431_in_one_piece_or_several(
    serve: tuple[Worker, int], pieces: int
) -> None:
    _worker, port = serve
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 20_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_S_MAX) as sock:
        step = len(head) // pieces + 1
        for start in range(0, len(head), step):
            sock.sendall(head[start : start + step])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # and a head just under the limit is served
    ok, _closed = exchange(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-Junk: " + b"j" * 15_000 + b"\r\n\r\n",
    )
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]


def test_transfer_encoding_before_content_length_is_refused_the_same_way(
    serve: tuple[Worker, int],
) -> None:
    _worker, port = serve
    raw = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\nStripe-Signature: t=1,v1=00\r\n\r\n0\r\n\r\n"
    )
    answer, closed = exchange(port, raw)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"ambiguous_length" in answer
    assert closed


def test_a_head_that_never_ends_is_refused_once_past_32_kib_and_closed(
    serve: tuple[Worker, int],
) -> None:
    """The parser buffers a header until its end: an unending one must not grow for ever."""
    _worker, port = serve
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_S_MAX) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        answer = b""
        try:
            for _ in range(64):  # 64 x 1 KiB, never a line end: past 32 KiB it is refused
                sock.sendall(b"j" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"headers_too_large" in answer


def test_malformed_http_gets_a_json_400_and_close(serve: tuple[Worker, int]) -> None:
    _worker, port = serve
    answer, closed = exchange(port, b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"error":"invalid_request"' in answer
    assert closed


def test_pipelined_requests_are_each_answered_in_order(serve: tuple[Worker, int]) -> None:
    _worker, port = serve
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer, closed = exchange(port, one + one + last)
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:600]
    assert answer.index(b"HTTP/1.1 404 ") > answer.rindex(b"HTTP/1.1 200 "), answer[:600]
    assert closed


def _logged_clients(worker: Worker) -> list[str | None]:
    return [
        line.get("client") for line in worker.log_lines() if line.get("event") == "webhook_rejected"
    ]


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path) -> None:
    raw = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n{}"
    )
    clients = {}
    for trusted in ("", "127.0.0.1"):
        env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}", LEDGER_TRUSTED_PROXIES=trusted)
        log = tmp_path / f"serve-{trusted or 'none'}.log"
        worker, port = start_http_worker("serve", env, log, ["--no-project"])
        try:
            answer, _closed = exchange(port, raw)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
            wait_until(lambda w=worker: bool(_logged_clients(w)), "the rejection logged", 10)
            clients[trusted] = _logged_clients(worker)[0]
        finally:
            worker.kill()
    assert clients == {"": "127.0.0.1", "127.0.0.1": "203.0.113.9"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", ["serve", "ingest"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEDGER_BODY_BYTES_MAX", "4000000"),
        ("LEDGER_HTTP_CONNECTIONS_MAX", "0"),
        ("LEDGER_HTTP_BODY_TIMEOUT_S", "soon"),
        ("LEDGER_TRUSTED_PROXIES", "proxy.example"),
    ],
)
def test_a_bad_limit_is_refused_at_start_in_one_line(
    tmp_path: Path, command: str, name: str, value: str
) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}", "127.0.0.1:9", **{name: value})
    result = _run([command, "--port", "9"], env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stripe-ledger {command}: "), result.stderr
    assert name in lines[0]
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize("command", ["serve", "ingest"])
@pytest.mark.parametrize("port", ["0", "99999", "-1", "http"])
def test_a_bad_port_is_refused(tmp_path: Path, command: str, port: str) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}", "127.0.0.1:9")
    result = _run([command, "--port", port], env)
    assert result.returncode == 2
    assert "--port" in result.stderr and "Traceback" not in result.stderr


def test_a_taken_port_never_logs_serve_listening(tmp_path: Path) -> None:
    taken = web.free_socket()
    taken.listen(1)
    try:
        port = str(taken.getsockname()[1])
        env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}")
        result = _run(["serve", "--no-project", "--port", port], env)
    finally:
        taken.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "serve_listening" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_serve_listening_is_logged_with_the_bound_port(serve: tuple[Worker, int]) -> None:
    worker, port = serve
    listening = [line for line in worker.log_lines() if line.get("event") == "serve_listening"]
    assert [line["port"] for line in listening] == [port]


def test_an_oversized_body_is_413_whatever_the_limit(tmp_path: Path) -> None:
    env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}", LEDGER_BODY_BYTES_MAX="1048576")
    worker, port = start_http_worker("serve", env, tmp_path / "serve.log", ["--no-project"])
    try:
        body = b"{" + b" " * 1_048_576 + b"}"  # one byte over the largest limit there can be
        try:
            status, _headers, _raw = web.request(
                port, "POST", web.WEBHOOK, body, {"Stripe-Signature": web.stripe_signature(body)}
            )
        except OSError:  # answered (413) and closed while the body was still being sent
            status = _status_from_head_only(port, len(body))
    finally:
        worker.kill()
    assert status == 413


def _status_from_head_only(port: int, length: int) -> int:
    """The answer to a request head that announces ``length`` body bytes (none sent)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {web.WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])
