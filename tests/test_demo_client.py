"""The demo client: Stripe's signature scheme, and delivery with retries to a real local server."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from demo.client import PostResult, post_all, sign
from demo.history import iter_payloads

SECRET = "whsec_demo_0123456789abcdefABCDEF"
PATH = "/webhooks/stripe"


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return list(iter_payloads(7, 400))


def test_sign_matches_the_stripe_library(payloads: list[bytes]) -> None:
    now = int(time.time())
    for payload in payloads:
        header = sign(payload, SECRET, now)
        assert stripe.WebhookSignature.verify_header(payload.decode(), header, SECRET, 300)
        expected = stripe.WebhookSignature.generate_signature_header(
            payload.decode(), SECRET, timestamp=now
        )
        assert header == expected
    assert any(not payload.isascii() for payload in payloads)  # UTF-8 names are signed too


def test_a_tampered_payload_a_wrong_secret_or_an_old_timestamp_fail(payloads: list[bytes]) -> None:
    payload = payloads[0]
    now = int(time.time())
    header = sign(payload, SECRET, now)
    tampered = payload.replace(b'"livemode":false', b'"livemode":true ', 1)
    assert tampered != payload
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(tampered.decode(), header, SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, SECRET + "x", 300)
    stale = sign(payload, SECRET, now - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), stale, SECRET, 300)


class _Endpoint:
    """A tiny webhook endpoint: verifies each signature with the stripe library, answers
    ``decide(body, attempt)`` (attempt counts from 1 per distinct body) and records bodies."""

    def __init__(self, decide: Callable[[bytes, int], int]) -> None:
        self.decide = decide
        self.lock = threading.Lock()
        self.attempts: Counter[bytes] = Counter()
        self.accepted: list[bytes] = []
        self.bad_signatures = 0
        self.connections: set[tuple[str, int]] = set()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK
                # make every keep-alive request wait ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    stripe.WebhookSignature.verify_header(
                        body.decode(), self.headers.get("Stripe-Signature"), SECRET, 300
                    )
                    signed = self.path == PATH
                except stripe.SignatureVerificationError:
                    signed = False
                with endpoint.lock:
                    endpoint.connections.add(self.client_address)
                    if not signed:
                        endpoint.bad_signatures += 1
                        status = 400
                    else:
                        endpoint.attempts[body] += 1
                        status = endpoint.decide(body, endpoint.attempts[body])
                        if status == 200:
                            endpoint.accepted.append(body)
                reply = b'{"status":"accepted"}' if status == 200 else b'{"error":"x"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> _Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _first_attempt_503(body: bytes, attempt: int) -> int:
    return 503 if attempt == 1 else 200


def test_post_all_delivers_every_payload_exactly_as_sent(payloads: list[bytes]) -> None:
    progress: list[int] = []
    with _Endpoint(_first_attempt_503) as endpoint:
        result = post_all(
            endpoint.url, iter(payloads), SECRET, concurrency=4, on_progress=progress.append
        )
    distinct = len(set(payloads))
    assert distinct < len(payloads)  # the history redelivers some events
    assert isinstance(result, PostResult)
    assert (result.sent, result.ok, result.failed) == (len(payloads), len(payloads), 0)
    assert result.statuses == {200: len(payloads)}
    # each distinct body was refused once (its first request); its redelivery went through
    assert result.responses == {503: distinct, 200: len(payloads)}
    assert result.retries == distinct and not result.errors and not result.aborted
    assert endpoint.bad_signatures == 0
    assert Counter(endpoint.accepted) == Counter(payloads)
    assert sorted(progress) == list(range(1, len(payloads) + 1))
    assert len(endpoint.connections) <= 4  # keep-alive: one connection per thread


def test_retries_are_bounded(payloads: list[bytes]) -> None:
    doomed = payloads[3]

    def decide(body: bytes, attempt: int) -> int:
        return 503 if body == doomed else 200

    sample = [body for body in payloads[:20] if body != doomed] + [doomed]
    with _Endpoint(decide) as endpoint:
        result = post_all(endpoint.url, sample, SECRET, concurrency=2, retries_max=2)
    assert endpoint.attempts[doomed] == 3
    assert (result.sent, result.ok, result.failed) == (len(sample), len(sample) - 1, 1)
    assert result.statuses == {200: len(sample) - 1, 503: 1}
    assert result.retries == 2


def test_client_errors_are_not_retried(payloads: list[bytes]) -> None:
    def decide(body: bytes, attempt: int) -> int:
        return 400 if body == payloads[0] else 200

    with _Endpoint(decide) as endpoint:
        result = post_all(endpoint.url, payloads[:5], SECRET, concurrency=1)
    assert endpoint.attempts[payloads[0]] == 1
    assert result.statuses == {400: 1, 200: 4} and result.failed == 1 and result.retries == 0


def test_a_wrong_secret_is_refused_by_the_endpoint(payloads: list[bytes]) -> None:
    with _Endpoint(_first_attempt_503) as endpoint:
        result = post_all(endpoint.url, payloads[:3], SECRET + "-wrong", concurrency=1)
    assert endpoint.bad_signatures == 3 and not endpoint.accepted
    assert result.statuses == {400: 3} and result.ok == 0


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_endpoint_gives_up(payloads: list[bytes]) -> None:
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for body in payloads:
            pulled += 1
            yield body

    url = f"http://127.0.0.1:{_unused_port()}{PATH}"
    result = post_all(
        url,
        source(),
        SECRET,
        concurrency=2,
        retries_max=1,
        timeout_s=2,
        undeliverable_in_a_row_max=4,
    )
    assert result.aborted and result.ok == 0
    assert result.failed == result.sent and 4 <= result.sent <= 5
    assert pulled == result.sent < len(payloads)
    assert result.retries == result.sent  # one retry each
    assert sum(result.errors.values()) == result.sent
    assert result.statuses == {}


def test_a_bad_url_is_refused() -> None:
    with pytest.raises(ValueError):
        post_all("ftp://example.com/x", [b"{}"], SECRET)
