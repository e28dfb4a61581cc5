"""The Lambda reads its webhook secret from Secrets Manager at run time (issue 19), cached.

Secrets Manager cannot run on this machine, so a loopback HTTP server answers boto3's real
``GetSecretValue`` calls (the service's JSON protocol; boto3 finds it through the standard
``AWS_ENDPOINT_URL_SECRETS_MANAGER``); the broker is the real Kafka of scripts/services.sh.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ingest import lambda_handler
from ingest.lambda_handler import SecretsManagerSecret
from ledger.settings import SettingsError
from tests.support import ingest as web
from tests.support.kafka_util import create_topic
from tests.test_ingest_lambda import http_v2_event

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-webhook-AbCdEf"


class _SecretsManager(BaseHTTPRequestHandler):
    secret = web.SECRET
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _SecretsManager.calls.append(
            {"target": self.headers.get("X-Amz-Target"), "secret_id": body.get("SecretId")}
        )
        answer = json.dumps({"ARN": ARN, "Name": "stripe-webhook", "SecretString": self.secret})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_SecretsManager]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SecretsManager.calls = []
    _SecretsManager.secret = web.SECRET
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-only")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield _SecretsManager
    finally:
        server.shutdown()
        server.server_close()


def test_the_handler_verifies_with_the_secret_from_secrets_manager(
    secrets_manager: type[_SecretsManager],
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topic: str,
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=1)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_ARN", ARN)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("LEDGER_KAFKA_TOPIC", topic)
    lambda_handler._reset_for_tests()
    try:
        for _ in range(3):
            body = web.event_body()
            result = lambda_handler.handler(
                http_v2_event(body, {"Stripe-Signature": web.stripe_signature(body)}), None
            )
            assert result["statusCode"] == 200, result
        forged = web.event_body()
        result = lambda_handler.handler(
            http_v2_event(forged, {"Stripe-Signature": web.stripe_signature(forged, "whsec_x")}),
            None,
        )
        assert result["statusCode"] == 400
    finally:
        lambda_handler._reset_for_tests()
    # read once for four invocations (cached), by its ARN, with GetSecretValue only
    assert secrets_manager.calls == [{"target": "secretsmanager.GetSecretValue", "secret_id": ARN}]


def test_the_secret_is_read_again_after_the_cache_and_kept_when_that_fails(
    secrets_manager: type[_SecretsManager],
) -> None:
    now = [0.0]
    source = SecretsManagerSecret(ARN, cache_s=60, clock=lambda: now[0])
    assert source() == (web.SECRET,)
    secrets_manager.secret = f"{web.OTHER_SECRET},{web.SECRET}"  # rotated, both while rolling
    now[0] = 59
    assert source() == (web.SECRET,)
    now[0] = 61
    assert source() == (web.OTHER_SECRET, web.SECRET)
    assert len(secrets_manager.calls) == 2
    secrets_manager.secret = "not-a-webhook-secret"  # a bad rotation: the last good one stays
    now[0] = 200
    assert source() == (web.OTHER_SECRET, web.SECRET)


def test_a_secret_that_cannot_be_read_is_a_configuration_error(
    secrets_manager: type[_SecretsManager],
) -> None:
    secrets_manager.secret = ""
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET_ARN"):
        SecretsManagerSecret(ARN)()
