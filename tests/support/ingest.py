"""Helpers for the ingest tests (no tests here): signing, a served app, reading a topic back.

Signatures are made with the stripe library's own scheme (``stripe.WebhookSignature``), so the
tests check our verifier against what Stripe's SDK produces, not against our own signer.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import stripe
import uvicorn
from kafka import KafkaConsumer

from ingest.app import IngestApp

SECRET = "whsec_" + "test0secret0for0ingest0tests0000"
OTHER_SECRET = "whsec_" + "the0other0secret0while0rolling00"
WEBHOOK = "/webhooks/stripe"
WAIT_S_MAX = 60.0  # bounds the waits below; never asserted on


def event_dict(
    event_type: str = "charge.succeeded", *, account: str | None = None, **extra: Any
) -> dict[str, Any]:
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    payload: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": {"id": f"ch_{uuid.uuid4().hex[:24]}", "object": "charge"}},
    }
    if account is not None:
        payload["account"] = account
    payload.update(extra)
    return payload


def event_body(event_type: str = "charge.succeeded", **kwargs: Any) -> bytes:
    return json.dumps(event_dict(event_type, **kwargs), indent=2).encode("utf-8")


def stripe_signature(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The header Stripe's SDK computes: ``t=<ts>,v1=<hmac>``."""
    return str(
        stripe.WebhookSignature.generate_signature_header(
            body.decode("utf-8"), secret, timestamp=timestamp
        )
    )


def v1_of(body: bytes, secret: str, timestamp: int) -> str:
    return str(
        stripe.WebhookSignature._compute_signature(f"{timestamp}.{body.decode('utf-8')}", secret)
    )


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: IngestApp) -> Iterator[int]:
    """Run the app under uvicorn (as the CLI does) on a free loopback port; yield the port."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S_MAX
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(WAIT_S_MAX)
        sock.close()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S_MAX)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_webhook(port: int, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    status, _headers, raw = request(port, "POST", WEBHOOK, body, headers)
    return status, json.loads(raw)


def raw_exchange(port: int, head: bytes, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request head and body pieces over a plain socket, then read the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S_MAX) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    """Every record of ``topic`` from the start, until ``count`` arrived (bounded wait)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[Any] = []
    deadline = time.monotonic() + WAIT_S_MAX
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # A short extra poll: more records than expected would be a bug too.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


# The real console script's entry point, as `stripe-ledger ...` runs it.
CLI_MODULE = ["-m", "cli.main"]
ROOT = Path(__file__).resolve().parent.parent.parent


def cli_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STRIPE_", "LEDGER_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update(overrides)
    return env


def run_cli(*args: str, env: dict[str, str], timeout_s: float = WAIT_S_MAX) -> Any:
    return subprocess.run(
        [sys.executable, *CLI_MODULE, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def wait_ready(port: int, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll /readyz until it answers 200 (True) or WAIT_S_MAX passes or ``alive()`` fails.

    The sink connects in the background after start-up, so readiness is eventual by design.
    """
    deadline = time.monotonic() + WAIT_S_MAX
    while alive() and time.monotonic() < deadline:
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@contextmanager
def serve_cli(env: dict[str, str], log_path: Any) -> Iterator[int]:
    """``stripe-ledger ingest --port N`` in a subprocess (its own GIL); yield N once ready."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, *CLI_MODULE, "ingest", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            if not wait_ready(port, alive=lambda: process.poll() is None):
                raise RuntimeError(f"ingest did not become ready (exit code {process.poll()})")
            yield port
        finally:
            process.terminate()
            try:
                process.wait(WAIT_S_MAX)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
