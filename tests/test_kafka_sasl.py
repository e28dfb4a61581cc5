"""Kafka with SASL/SCRAM (issue 19): the topic was unauthenticated, anyone who reached a broker
could inject ledger events. Against a real broker whose only client listener is SASL_PLAINTEXT
with SCRAM-SHA-512 (``scripts/services.sh sasl-up``): a client without credentials, or with a
wrong password, is refused; ``ingest`` and ``consume`` with the credentials carry a signed event
from the webhook into the store."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ledger.database import create_engine
from ledger.store import open_event_store
from tests.support import ingest as web
from tests.support.reliability import CLI, ROOT, env_for, run

SASL_USER = "ledger"
SASL_PASSWORD = "ledger-sasl"  # scripts/services.sh's dev/CI credentials
REFUSED_S_MAX = 20.0


@pytest.fixture(scope="module")
def sasl_bootstrap() -> Iterator[str]:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh"), "sasl-up"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if "LEDGER_KAFKA_SASL_BOOTSTRAP=" in x]
    assert len(line) == 1, done.stdout
    started_here = "already running" not in done.stderr
    try:
        yield line[0].partition("=")[2].strip()
    finally:
        if started_here:  # a broker this module started: stopped again (2 shared cores)
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "services.sh"), "sasl-down"],
                capture_output=True,
                timeout=120,
                check=False,
            )


def _send(bootstrap: str, **security: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap],
        client_id="test-sasl",
        max_block_ms=int(REFUSED_S_MAX * 1000),
        request_timeout_ms=5_000,
        bootstrap_timeout_ms=5_000,
        **security,
    )
    try:
        producer.send("sasl-probe", b"{}").get(timeout=REFUSED_S_MAX)
    finally:
        producer.close(1)


def test_a_client_without_credentials_is_refused(sasl_bootstrap: str) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaError):
        _send(sasl_bootstrap)  # PLAINTEXT: the broker speaks only SASL here
    with pytest.raises(KafkaError):
        _send(
            sasl_bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=SASL_USER,
            sasl_plain_password="wrong-password",
        )
    assert time.monotonic() - started < 4 * REFUSED_S_MAX  # bounded, never a hang


def _sasl_env(database_url: str, bootstrap: str, topic: str) -> dict[str, str]:
    return env_for(
        database_url,
        bootstrap,
        topic,
        LEDGER_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        LEDGER_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        LEDGER_KAFKA_SASL_USERNAME=SASL_USER,
        LEDGER_KAFKA_SASL_PASSWORD=SASL_PASSWORD,
    )


def test_ingest_and_consume_with_scram_credentials(
    sasl_bootstrap: str, tmp_path: Path, topic: str
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run(["migrate"], env_for(url)).returncode == 0
    env = _sasl_env(url, sasl_bootstrap, topic)
    body = web.event_body()
    with web.serve_cli(env, tmp_path / "ingest.log") as port:
        status, _headers, raw = web.request(
            port, "POST", web.WEBHOOK, body, {"Stripe-Signature": web.stripe_signature(body)}
        )
        assert status == 200, raw
    run(["consume", "--topic", topic, "--group", f"g-{topic}", "--until-idle", "3"], env)
    store = open_event_store(create_engine(url))
    assert [e.event_id for e in store.read(0, 10)] == [json.loads(body)["id"]]
    log = (tmp_path / "ingest.log").read_text()
    assert SASL_PASSWORD not in log


def test_sasl_without_a_username_is_a_one_line_error(tmp_path: Path, topic: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run(["migrate"], env_for(url)).returncode == 0
    env = _sasl_env(url, "127.0.0.1:9", topic)
    del env["LEDGER_KAFKA_SASL_USERNAME"]
    done = subprocess.run(
        [*CLI, "consume", "--until-idle", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "LEDGER_KAFKA_SASL_USERNAME" in done.stderr
    assert SASL_PASSWORD not in done.stderr
