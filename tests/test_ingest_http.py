"""The ingest app over real HTTP (uvicorn on 127.0.0.1) with the real Kafka broker."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from ingest.app import create_app
from ingest.sink import KafkaSink
from ledger.envelope import StripeEvent
from ledger.settings import Settings
from tests.support.ingest import (
    OTHER_SECRET,
    SECRET,
    WEBHOOK,
    cli_env,
    event_body,
    event_dict,
    post_webhook,
    raw_exchange,
    read_topic,
    request,
    serve,
    serve_cli,
    stripe_signature,
    v1_of,
    wait_ready,
)

pytestmark = pytest.mark.kafka

BODY_MAX = 64 * 1024


@pytest.fixture
def settings(kafka_bootstrap: str, topic: str) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=topic,
        webhook_secrets=(SECRET, OTHER_SECRET),
        body_bytes_max=BODY_MAX,
    )


@pytest.fixture
def port(settings: Settings) -> Iterator[int]:
    with serve(create_app(settings, KafkaSink(settings))) as served:
        yield served


def metric(port: int, name: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    _status, _headers, text = request(port, "GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and " " in line:
            key, _, value = line.rpartition(" ")
            if key == name:
                return float(value)
    return 0.0


# -- accepted ---------------------------------------------------------------------------------


def test_valid_signature_is_acknowledged_and_on_the_topic(
    port: int, kafka_bootstrap: str, topic: str
) -> None:
    platform = event_body("charge.succeeded")
    connect = event_body("payout.paid", account="acct_1Connected")
    status, answer = post_webhook(port, platform, stripe_signature(platform))
    assert status == 200, answer
    assert answer == {"status": "accepted", "event_id": json.loads(platform)["id"]}
    status, answer = post_webhook(port, connect, stripe_signature(connect, OTHER_SECRET))
    assert status == 200, answer

    records = read_topic(kafka_bootstrap, topic, 2)
    assert len(records) == 2
    by_key = {record.key: record for record in records}
    assert set(by_key) == {b"platform", b"acct_1Connected"}
    for key, body in ((b"platform", platform), (b"acct_1Connected", connect)):
        record = by_key[key]
        assert record.value == body  # byte for byte, whitespace and all
        headers = dict(record.headers)
        assert set(headers) == {"received_at_ms", "event_id"}
        assert headers["event_id"] == json.loads(body)["id"].encode()
        assert headers["received_at_ms"].isdigit()
        assert abs(int(headers["received_at_ms"]) / 1000 - time.time()) < 600
    assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="accepted"}') == 2


def test_bytes_payload_non_ascii_and_unknown_type_forwarded(
    port: int, kafka_bootstrap: str, topic: str
) -> None:
    body = json.dumps(
        event_dict("brand_new.event_type_2031", description="Zürich ☕ 東京"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert not body.isascii()
    status, answer = post_webhook(port, body, stripe_signature(body))
    assert status == 200, answer
    [record] = read_topic(kafka_bootstrap, topic, 1)
    assert record.value == body


def test_bad_extra_v1_beside_a_good_one(port: int) -> None:
    body = event_body()
    t = int(time.time())
    header = f"t={t},v1={'ab' * 32},v1={v1_of(body, SECRET, t)},v0={'cd' * 32}"
    status, answer = post_webhook(port, body, header)
    assert status == 200, answer


def test_secret_rolling_either_secret_signs(port: int) -> None:
    for secret in (SECRET, OTHER_SECRET):
        body = event_body()
        status, answer = post_webhook(port, body, stripe_signature(body, secret))
        assert status == 200, answer


# -- refused ----------------------------------------------------------------------------------


def _refused(port: int, body: bytes, header: str | None) -> str:
    status, answer = post_webhook(port, body, header)
    assert status == 400, answer
    assert set(answer) == {"error", "message"}
    if header:
        # Never echo the header, a signature or a secret.
        for part in header.split(","):
            value = part.partition("=")[2]
            if len(value) >= 16:
                assert value not in answer["message"]
        assert "whsec_" not in answer["message"]
    return str(answer["error"])


def test_only_v0_is_refused(port: int) -> None:
    body = event_body()
    t = int(time.time())
    assert _refused(port, body, f"t={t},v0={v1_of(body, SECRET, t)}") == "no_v1_signature"


def test_wrong_signature_is_refused(port: int, kafka_bootstrap: str, topic: str) -> None:
    body = event_body()
    assert _refused(port, body, stripe_signature(body, "whsec_notours")) == "signature_mismatch"
    tampered = body.replace(b"charge.succeeded", b"charge.refunded")
    assert _refused(port, tampered, stripe_signature(body)) == "signature_mismatch"
    assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="signature_mismatch"}') == 2
    assert read_topic(kafka_bootstrap, topic, 0) == []


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_signature"),
        ("nonsense", "malformed_signature"),
        ("t=soon,v1=" + "a" * 64, "malformed_signature"),
        ("v1=" + "a" * 64, "malformed_signature"),
        # 150 v1 entries, ~10 KB: over our 8 KiB cap (uvicorn itself refuses > 16 KiB heads).
        ("t=1," + ",".join(["v1=" + "a" * 64] * 150), "malformed_signature"),
    ],
)
def test_missing_or_malformed_header(port: int, header: str | None, code: str) -> None:
    assert _refused(port, event_body(), header) == code


def test_thousands_of_v1_entries_under_the_header_cap(port: int) -> None:
    body = event_body()
    t = int(time.time())
    header = f"t={t}," + ",".join(["v1=0"] * 1600) + f",v1={v1_of(body, SECRET, t)}"
    assert len(header) < 8192
    assert _refused(port, body, header) == "signature_mismatch"


@pytest.mark.parametrize("offset_s", [-301, 301, -86_400, 86_400 * 365])
def test_timestamp_outside_tolerance(port: int, offset_s: int) -> None:
    body = event_body()
    header = stripe_signature(body, timestamp=int(time.time()) + offset_s)
    assert _refused(port, body, header) == "timestamp_outside_tolerance"


def test_non_json_body(port: int) -> None:
    for body in (b"not json at all", b"\xff\xfe\x00binary", b"[" * 5000):
        header = f"t={int(time.time())},v1={_mac(body)}"
        assert _refused(port, body, header) == "invalid_json"


def _mac(body: bytes) -> str:
    # stripe's helper takes str; for a non-UTF-8 body compute the same HMAC on the bytes.
    import hashlib
    import hmac

    t = str(int(time.time())).encode()
    return hmac.new(SECRET.encode(), t + b"." + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        {"hello": "world"},
        {"id": "evt_1", "object": "charge", "type": "x", "created": 1, "data": {"object": {}}},
        {
            "id": "evt_1",
            "object": "event",
            "type": "x",
            "created": "yesterday",
            "data": {"object": {}},
        },
    ],
)
def test_json_that_is_not_a_stripe_event(port: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    assert _refused(port, body, stripe_signature(body)) == "not_a_stripe_event"


def test_v2_thin_event_is_accepted_and_on_the_topic_as_it_came(
    port: int, kafka_bootstrap: str, topic: str
) -> None:
    thin = {
        "id": "evt_test_65R9Ijk8",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "livemode": False,
        "created": "2024-09-17T06:20:52.246Z",
        "context": "acct_thin",
        "related_object": {
            "id": "mtr_test_1",
            "type": "billing.meter",
            "url": "/v1/billing/meters/mtr_test_1",
        },
    }
    body = json.dumps(thin).encode()  # thin events are signed the same way
    status, answer = post_webhook(port, body, stripe_signature(body))
    assert (status, answer) == (200, {"status": "accepted", "event_id": "evt_test_65R9Ijk8"})
    [record] = read_topic(kafka_bootstrap, topic, 1)
    assert (record.key, record.value) == (b"acct_thin", body)  # keyed by its context
    thin = metric(port, 'stripe_ledger_ingest_requests_total{outcome="accepted_thin"}')
    assert thin == 1  # counted apart
    assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="accepted"}') == 0


# -- size limits ------------------------------------------------------------------------------


def test_body_over_the_limit_by_content_length_is_refused_before_reading(port: int) -> None:
    body = event_body()
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {stripe_signature(body)}\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    # Only the head is sent: the answer comes without the 100 MiB body ever being read.
    status, raw = raw_exchange(port, head, [])
    assert status == 413
    assert json.loads(raw)["error"] == "body_too_large"


def test_body_over_the_limit_in_one_request(port: int) -> None:
    filler = "x" * (BODY_MAX + 1)
    body = event_body(filler=filler)
    status, answer = post_webhook(port, body, stripe_signature(body))
    assert status == 413
    assert answer["error"] == "body_too_large"


def test_chunked_body_over_the_limit_without_content_length(port: int) -> None:
    body = event_body()
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {stripe_signature(body)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"y" * 4096
    # Exactly one byte over the limit, in chunks, and no final 0-chunk: the server must stop
    # counting at the limit and answer without waiting for the end of the body.
    pieces = [piece] * (BODY_MAX // len(piece)) + [b"z"]
    chunks = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces]
    status, raw = raw_exchange(port, head, chunks)
    assert status == 413
    assert json.loads(raw)["error"] == "body_too_large"


def test_chunked_body_under_the_limit_is_accepted(port: int) -> None:
    body = event_body()
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {stripe_signature(body)}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    chunks = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
    status, raw = raw_exchange(port, head, chunks)
    assert status == 200, raw


# -- other routes -----------------------------------------------------------------------------


def test_other_paths_and_methods(port: int) -> None:
    assert request(port, "GET", "/")[0] == 404
    assert request(port, "POST", "/webhooks/other", b"{}")[0] == 404
    status, headers, _ = request(port, "GET", WEBHOOK)
    assert status == 405
    assert headers.get("allow") == "POST"
    assert request(port, "PUT", WEBHOOK, b"{}")[0] == 405
    assert request(port, "POST", "/healthz", b"")[0] == 405


def test_health_ready_and_metrics(port: int) -> None:
    assert request(port, "GET", "/healthz")[0] == 200
    # Readiness is a real metadata round trip to the broker; the producer connects in the
    # background after start-up, so the first probes may still answer 503.
    assert wait_ready(port)
    assert request(port, "GET", "/readyz")[0] == 200
    body = event_body()
    assert post_webhook(port, body, stripe_signature(body))[0] == 200
    assert post_webhook(port, body, None)[0] == 400
    status, headers, text = request(port, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    metrics = text.decode()
    for name in (
        "stripe_ledger_ingest_requests_total",
        "stripe_ledger_ingest_request_seconds_bucket",
        "stripe_ledger_ingest_produce_seconds_bucket",
        "stripe_ledger_ingest_body_bytes_bucket",
        "stripe_ledger_ingest_requests_in_flight",
    ):
        assert name in metrics
    assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="missing_signature"}') == 1
    assert metric(port, "stripe_ledger_ingest_produce_seconds_count") == 1
    # The unsigned request was refused before its body was read: only one body counted.
    assert metric(port, "stripe_ledger_ingest_body_bytes_sum") == len(body)
    assert SECRET not in metrics


# -- the broker cannot take the write -----------------------------------------------------


def test_unreachable_broker_answers_503_never_2xx(settings: Settings) -> None:
    """A real producer pointed at an address where nothing listens (127.0.0.1:1).

    Stopping the shared broker would disturb other engineers' tests running in parallel.
    """
    dead = replace(settings, kafka_bootstrap="127.0.0.1:1")
    with serve(create_app(dead, KafkaSink(dead, produce_timeout_s=1.0))) as port:
        assert request(port, "GET", "/healthz")[0] == 200
        assert request(port, "GET", "/readyz")[0] == 503
        for _ in range(3):
            body = event_body()
            status, answer = post_webhook(port, body, stripe_signature(body))
            assert status == 503, answer
            assert answer["error"] == "sink_unavailable"
        # Signature errors are still 400 (checked before the sink is involved).
        assert post_webhook(port, event_body(), "t=1,v1=00")[0] == 400
        assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="sink_unavailable"}') == 3
        assert metric(port, 'stripe_ledger_ingest_requests_total{outcome="accepted"}') == 0


def test_in_flight_bound_answers_503(settings: Settings) -> None:
    """With the bound at 1, a request arriving while another is in flight gets 503."""
    entered = threading.Event()
    release = threading.Event()

    class SlowSink:
        """A sink that holds the write until the test releases it (not Kafka)."""

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def ready(self) -> bool:
            return True

        async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None:
            entered.set()
            while not release.is_set():
                await _sleep()

    with serve(create_app(settings, SlowSink(), requests_in_flight_max=1)) as port:
        first = event_body()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post_webhook, port, first, stripe_signature(first))
            assert entered.wait(60)
            second = event_body()
            status, answer = post_webhook(port, second, stripe_signature(second))
            assert status == 503
            assert answer["error"] == "overloaded"
            release.set()
            assert pending.result()[0] == 200


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)


# -- a burst ----------------------------------------------------------------------------------


def test_burst_of_2000_concurrent_requests_all_acknowledged_all_on_topic(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """8 keep-alive clients x 250 signed POSTs against `stripe-ledger ingest` in its own process.

    (In-process, the client threads would fight the server for the GIL.)
    """
    clients, per_client = 8, 250
    accounts = [None, "acct_A", "acct_B", "acct_C"]
    env = cli_env(
        STRIPE_WEBHOOK_SECRET=SECRET,
        LEDGER_KAFKA_BOOTSTRAP=kafka_bootstrap,
        LEDGER_KAFKA_TOPIC=topic,
        LEDGER_LOG_FORMAT="json",
    )

    def client(port: int, index: int) -> list[tuple[int, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        results = []
        try:
            for n in range(per_client):
                body = event_body(account=accounts[(index + n) % len(accounts)])
                conn.request(
                    "POST", WEBHOOK, body=body, headers={"Stripe-Signature": stripe_signature(body)}
                )
                response = conn.getresponse()
                response.read()
                results.append((response.status, json.loads(body)["id"]))
        finally:
            conn.close()
        return results

    with serve_cli(env, tmp_path / "ingest.log") as port:
        with ThreadPoolExecutor(clients) as pool:
            batches = list(pool.map(lambda i: client(port, i), range(clients)))
        accepted = metric(port, 'stripe_ledger_ingest_requests_total{outcome="accepted"}')
        assert accepted == clients * per_client
    results = [r for batch in batches for r in batch]
    assert len(results) == clients * per_client
    assert {status for status, _ in results} == {200}
    sent = {event_id for _, event_id in results}
    records = read_topic(kafka_bootstrap, topic, len(sent))
    on_topic = [dict(record.headers)["event_id"].decode() for record in records]
    assert len(on_topic) == len(sent)  # idempotent producer: no duplicates either
    assert set(on_topic) == sent
    # One account's events stay in one partition.
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())
    # One line per event at info level would be ~2000 lines; we log lifecycle lines only.
    log_lines = (tmp_path / "ingest.log").read_text().splitlines()
    assert len(log_lines) < 50, log_lines[:5]
    assert SECRET not in "\n".join(log_lines)


def test_periodic_counters_are_logged_not_one_line_per_event(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    import logging

    import structlog

    from ledger import logs

    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    logs.configure("json", "info")
    try:
        app = create_app(settings, KafkaSink(settings), stats_interval_s=0.2)
        with serve(app) as port:
            for _ in range(5):
                body = event_body()
                assert post_webhook(port, body, stripe_signature(body))[0] == 200
            assert post_webhook(port, event_body(), "t=1,v1=" + "ab" * 32)[0] == 400
            deadline = time.monotonic() + 60
            while "requests_accepted" not in capfd.readouterr().err:
                assert time.monotonic() < deadline, "no ingest_stats line"
                time.sleep(0.2)
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
    out = capfd.readouterr().err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["event"] == "webhook_accepted"]
    stopped = [line for line in lines if line["event"] == "ingest_stopped"]
    assert stopped and stopped[-1]["requests_accepted"] == 5
    assert stopped[-1]["requests_signature_mismatch"] == 1
