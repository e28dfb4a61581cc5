"""Play Stripe: sign webhook bodies and POST them to a running endpoint.

``sign`` builds the ``Stripe-Signature`` header exactly as Stripe does (``t=<unix s>,v1=<hex
HMAC-SHA256 of "<t>.<body>" keyed by the whole endpoint secret, "whsec_..." included>``).
``post_all`` sends bodies from a few threads, each with its own keep-alive connection, retries
what Stripe would retry (503 and friends, connection errors; a fresh signature every attempt)
with a short capped backoff, and counts the outcome. Everything is bounded: at most
``retries_max + 1`` attempts per body, a timeout on every socket operation, and it stops pulling
new bodies when ``undeliverable_in_a_row_max`` bodies in a row could not be delivered at all
(endpoint down). Standard library only.

    python -m demo.client --url http://127.0.0.1:8000/webhooks/stripe --events 400
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0  # also caps a server's Retry-After
UNDELIVERABLE_IN_A_ROW_MAX = 50  # bodies in a row without any answer: the endpoint is down
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(payload: bytes, secret: str, timestamp_s: int) -> str:
    """The Stripe-Signature header value for ``payload`` sent at ``timestamp_s`` (unix s)."""
    signed = str(int(timestamp_s)).encode("ascii") + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={int(timestamp_s)},v1={digest}"


@dataclass
class PostResult:
    """What happened to the bodies. ``statuses``: the final HTTP status per body (a body that
    never got an answer is in ``errors`` by exception name instead); ``responses``: every
    status received, retried ones included."""

    sent: int = 0  # bodies taken from the iterable and tried at least once
    ok: int = 0  # bodies answered 2xx in the end
    failed: int = 0  # bodies given up on: a final non-2xx status or no answer at all
    retries: int = 0  # extra attempts, all bodies together
    statuses: dict[int, int] = field(default_factory=dict)
    responses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    aborted: bool = False  # stopped early: too many bodies in a row could not be delivered
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "retries": self.retries,
            "statuses": dict(sorted(self.statuses.items())),
            "responses": dict(sorted(self.responses.items())),
            "errors": dict(sorted(self.errors.items())),
            "aborted": self.aborted,
            "elapsed_s": round(self.elapsed_s, 3),
        }


class _Target:
    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s

    def connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)


def _backoff_s(attempt: int, retry_after: str | None) -> float:
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), BACKOFF_MAX_S)
        except ValueError:
            pass
    base = min(BACKOFF_FIRST_S * (2**attempt), BACKOFF_MAX_S)
    return base * (0.5 + random.random() / 2)  # jitter, so that threads do not retry in step


def post_all(
    url: str,
    payloads: Iterable[bytes],
    secret: str,
    concurrency: int = 8,
    on_progress: Callable[[int], None] | None = None,
    timeout_s: float = 10,
    retries_max: int = 5,
    undeliverable_in_a_row_max: int = UNDELIVERABLE_IN_A_ROW_MAX,
) -> PostResult:
    """POST every body, signed, from ``concurrency`` threads; ``on_progress(done)`` is called
    (serialized) after each body. ``payloads`` is consumed lazily, once."""
    poster = _Poster(
        _Target(url, timeout_s), secret, retries_max, undeliverable_in_a_row_max, on_progress
    )
    return poster.run(iter(payloads), concurrency)


class _Poster:
    """One ``post_all``: the senders share the source, the result and the abort decision."""

    def __init__(
        self,
        target: _Target,
        secret: str,
        retries_max: int,
        undeliverable_in_a_row_max: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.target = target
        self.secret = secret
        self.retries_max = retries_max
        self.undeliverable_in_a_row_max = undeliverable_in_a_row_max
        self.on_progress = on_progress
        self.result = PostResult()
        self.source: Iterator[bytes] = iter(())
        self.lock = threading.Lock()  # guards the source, the result and the counters below
        self.progress_lock = threading.Lock()  # on_progress is called by one thread at a time
        self.done = 0
        self.undeliverable_in_a_row = 0
        self.problems: list[BaseException] = []

    def run(self, source: Iterator[bytes], concurrency: int) -> PostResult:
        self.source = source
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._worker, name=f"demo-client-{index}", daemon=True)
            for index in range(max(1, concurrency))
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C (or a closed pipe) in the waiting thread
            with self.lock:
                self.result.aborted = True  # the senders take no new body and end
            raise
        self.result.elapsed_s = time.monotonic() - started
        if self.problems:
            raise self.problems[0]
        return self.result

    def _worker(self) -> None:
        connection = self.target.connect()
        try:
            while True:
                payload = self._next_payload()
                if payload is None:
                    return
                connection, status, error, extra = self._deliver(connection, payload)
                self._record(status, error, extra)
        except BaseException as exc:  # an iterator or callback that raised: stop everyone
            with self.lock:
                self.problems.append(exc)
        finally:
            connection.close()

    def _next_payload(self) -> bytes | None:
        with self.lock:
            if self.result.aborted or self.problems:
                return None
            try:
                payload = next(self.source)
            except StopIteration:
                return None
            self.result.sent += 1
            return payload

    def _deliver(
        self, connection: http.client.HTTPConnection, payload: bytes
    ) -> tuple[http.client.HTTPConnection, int | None, str | None, int]:
        """-> (the connection to go on with, final status or None, error name, extra attempts)."""
        status: int | None = None
        error: str | None = None
        for attempt in range(self.retries_max + 1):
            connection, status, error, retry_after = self._attempt(connection, payload)
            retryable = status is None or status in RETRYABLE_STATUSES
            if not retryable or attempt == self.retries_max:
                return connection, status, error, attempt
            time.sleep(_backoff_s(attempt, retry_after))
        return connection, status, error, self.retries_max  # not reached: the loop returns

    def _attempt(
        self, connection: http.client.HTTPConnection, payload: bytes
    ) -> tuple[http.client.HTTPConnection, int | None, str | None, str | None]:
        """One POST, freshly signed. -> (connection, status or None, error name, Retry-After)."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(payload, self.secret, int(time.time())),
            "User-Agent": USER_AGENT,
            "Accept": "*/*; q=0.5, application/xml",
        }
        try:
            connection.request("POST", self.target.path, body=payload, headers=headers)
            response = connection.getresponse()
            response.read()
            retry_after = response.getheader("Retry-After")
            if response.will_close:
                connection.close()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return self.target.connect(), None, type(exc).__name__, None
        with self.lock:
            self.result.responses[response.status] = (
                self.result.responses.get(response.status, 0) + 1
            )
        return connection, response.status, None, retry_after

    def _record(self, status: int | None, error: str | None, extra_attempts: int) -> None:
        result = self.result
        with self.lock:
            result.retries += extra_attempts
            if status is not None:
                result.statuses[status] = result.statuses.get(status, 0) + 1
            if error is not None:
                result.errors[error] = result.errors.get(error, 0) + 1
            if status is not None and 200 <= status < 300:
                result.ok += 1
            else:
                result.failed += 1
            if status is None:
                self.undeliverable_in_a_row += 1
                if self.undeliverable_in_a_row >= self.undeliverable_in_a_row_max:
                    result.aborted = True
            else:
                self.undeliverable_in_a_row = 0
            self.done += 1
            done = self.done
        if self.on_progress is not None:
            with self.progress_lock:
                self.on_progress(done)


def _secret_from_env() -> str | None:
    """The first of STRIPE_WEBHOOK_SECRET(_FILE), read as every command reads it (Settings)."""
    from ledger.settings import Settings

    secrets = Settings.from_env().webhook_secrets
    return secrets[0] if secrets else None


def main(argv: Sequence[str] | None = None) -> int:
    from demo.history import encode, generate
    from ledger.settings import SettingsError

    parser = argparse.ArgumentParser(
        prog="python -m demo.client",
        description="Sign and POST a demo Stripe event history to a webhook endpoint.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000/webhooks/stripe")
    parser.add_argument("--secret", help="default: STRIPE_WEBHOOK_SECRET (the first one)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per socket operation")
    parser.add_argument("--retries-max", type=int, default=5, help="extra attempts per body")
    args = parser.parse_args(argv)
    try:
        secret = args.secret or _secret_from_env()
    except SettingsError as error:
        print(f"demo_client: {error}", file=sys.stderr)
        return 2
    if not secret:
        print("demo_client: no secret: pass --secret or set STRIPE_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    deliveries = generate(args.seed, args.events).deliveries
    total = len(deliveries)
    last = {"at": 0.0}

    def progress(done: int) -> None:
        now = time.monotonic()
        if now - last["at"] >= 2 or done == total:
            last["at"] = now
            print(f"posted {done}/{total}", file=sys.stderr)

    result = post_all(
        args.url,
        (encode(event) for event in deliveries),
        secret,
        concurrency=args.concurrency,
        on_progress=progress,
        timeout_s=args.timeout_s,
        retries_max=args.retries_max,
    )
    print(json.dumps(result.as_dict()))
    return 0 if result.failed == 0 and not result.aborted else 1


if __name__ == "__main__":
    sys.exit(main())
