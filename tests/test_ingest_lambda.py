"""The AWS Lambda handler with API Gateway REST (1.0) and HTTP API (2.0) events, real broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ingest import lambda_handler
from ingest.lambda_handler import LambdaIngest
from ledger.settings import Settings
from tests.support.ingest import (
    OTHER_SECRET,
    SECRET,
    event_body,
    read_topic,
    stripe_signature,
)

pytestmark = pytest.mark.kafka


def rest_v1_event(body: bytes, headers: dict[str, str], *, b64: bool = False) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload format 1.0), as AWS sends it."""
    return {
        "resource": "/webhooks/stripe",
        "path": "/webhooks/stripe",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/webhooks/stripe",
            "httpMethod": "POST",
            "path": "/prod/webhooks/stripe",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "3.18.12.63", "userAgent": "Stripe/1.0"},
        },
        "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8"),
        "isBase64Encoded": b64,
    }


def http_v2_event(body: bytes, headers: dict[str, str], *, b64: bool = False) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload format 2.0): lower-case header names."""
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/stripe",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "http": {
                "method": "POST",
                "path": "/webhooks/stripe",
                "protocol": "HTTP/1.1",
                "sourceIp": "3.18.12.63",
                "userAgent": "Stripe/1.0",
            },
            "requestId": "id",
            "routeKey": "POST /webhooks/stripe",
            "stage": "$default",
            "timeEpoch": 1583348638390,
        },
        "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8"),
        "isBase64Encoded": b64,
    }


@pytest.fixture
def ingest(kafka_bootstrap: str, topic: str) -> Iterator[LambdaIngest]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, kafka_topic=topic, webhook_secrets=(SECRET, OTHER_SECRET)
    )
    state = LambdaIngest(settings)
    yield state
    state.close()


def answer(result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert set(result) >= {"statusCode", "headers", "body"}
    assert result["headers"]["content-type"] == "application/json"
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("make", [rest_v1_event, http_v2_event])
@pytest.mark.parametrize("b64", [False, True])
def test_signed_event_goes_to_the_topic(
    ingest: LambdaIngest, kafka_bootstrap: str, topic: str, make: Any, b64: bool
) -> None:
    body = json.dumps(
        json.loads(event_body(account="acct_lambda")) | {"description": "naïve ☕"},
        ensure_ascii=False,
        indent=1,
    ).encode("utf-8")
    status, reply = answer(
        ingest.handle(make(body, {"Stripe-Signature": stripe_signature(body)}, b64=b64))
    )
    assert status == 200, reply
    assert reply["event_id"] == json.loads(body)["id"]
    [record] = read_topic(kafka_bootstrap, topic, 1)
    assert record.value == body
    assert record.key == b"acct_lambda"
    assert dict(record.headers)["event_id"] == reply["event_id"].encode()
    assert dict(record.headers)["received_at_ms"].isdigit()


@pytest.mark.parametrize("name", ["stripe-signature", "STRIPE-SIGNATURE", "Stripe-Signature"])
def test_header_names_in_any_case(ingest: LambdaIngest, name: str) -> None:
    body = event_body()
    status, reply = answer(ingest.handle(rest_v1_event(body, {name: stripe_signature(body)})))
    assert status == 200, reply


@pytest.mark.parametrize("make", [rest_v1_event, http_v2_event])
def test_refusals(ingest: LambdaIngest, kafka_bootstrap: str, topic: str, make: Any) -> None:
    body = event_body()
    cases = [
        (make(body, {}), 400, "missing_signature"),
        (
            make(body, {"Stripe-Signature": stripe_signature(body, "whsec_no")}),
            400,
            "signature_mismatch",
        ),
        (
            make(body, {"Stripe-Signature": stripe_signature(body, timestamp=1)}),
            400,
            "timestamp_outside_tolerance",
        ),
        (make(b"nope", {"Stripe-Signature": stripe_signature(b"nope")}), 400, "invalid_json"),
        (make(b"{}", {"Stripe-Signature": stripe_signature(b"{}")}), 400, "not_a_stripe_event"),
    ]
    big = event_body(filler="x" * (1024 * 1024))
    cases.append(
        (make(big, {"Stripe-Signature": stripe_signature(big)}, b64=True), 413, "body_too_large")
    )
    cases.append((make(big, {"Stripe-Signature": stripe_signature(big)}), 413, "body_too_large"))
    broken = make(body, {"Stripe-Signature": stripe_signature(body)}, b64=True)
    broken["body"] = "!!!not base64!!!"
    cases.append((broken, 400, "invalid_body"))
    get = make(body, {"Stripe-Signature": stripe_signature(body)})
    if "httpMethod" in get:
        get["httpMethod"] = "GET"
    else:
        get["requestContext"]["http"]["method"] = "GET"
    cases.append((get, 405, "method_not_allowed"))
    for event, status, code in cases:
        got_status, reply = answer(ingest.handle(event))
        assert (got_status, reply["error"]) == (status, code)
    assert read_topic(kafka_bootstrap, topic, 0) == []


def test_module_handler_reads_the_environment_and_reuses_its_producer(
    kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{OTHER_SECRET},{SECRET}")
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET_FILE", raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("LEDGER_KAFKA_TOPIC", topic)
    lambda_handler._reset_for_tests()
    try:
        bodies = [event_body() for _ in range(3)]
        for body in bodies:
            event = http_v2_event(body, {"stripe-signature": stripe_signature(body)}, b64=True)
            status, reply = answer(lambda_handler.handler(event, None))
            assert status == 200, reply
        state = lambda_handler._INGEST
        assert state is not None and state._producer is not None
        records = read_topic(kafka_bootstrap, topic, 3)
        assert sorted(r.value for r in records) == sorted(bodies)
    finally:
        lambda_handler._reset_for_tests()


def test_module_handler_misconfigured_is_500_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET_FILE", raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    lambda_handler._reset_for_tests()
    try:
        body = event_body()
        status, reply = answer(lambda_handler.handler(rest_v1_event(body, {}), None))
        assert (status, reply["error"]) == (500, "misconfigured")
    finally:
        lambda_handler._reset_for_tests()


def test_unreachable_broker_is_503(topic: str) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_topic=topic, webhook_secrets=(SECRET,))
    state = LambdaIngest(settings, produce_timeout_s=1.0)
    try:
        body = event_body()
        event = rest_v1_event(body, {"Stripe-Signature": stripe_signature(body)})
        status, reply = answer(state.handle(event))
        assert (status, reply["error"]) == (503, "sink_unavailable")
    finally:
        state.close()
