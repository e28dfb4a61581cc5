"""End to end through real processes: signed POST -> ingest -> Kafka -> consume -> event store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ledger.database import create_engine, migrate
from ledger.store import EventStore, open_event_store
from tests.support import ingest as web
from tests.support.kafka_util import ROOT, cli_env, create_topic, run_cli


@pytest.fixture
def store(postgres_url: str) -> EventStore:
    engine = create_engine(postgres_url)
    migrate(engine)
    return open_event_store(engine)


def _ingest_env(kafka_bootstrap: str, topic: str) -> dict[str, str]:
    return web.cli_env(
        STRIPE_WEBHOOK_SECRET=web.SECRET,
        LEDGER_KAFKA_BOOTSTRAP=kafka_bootstrap,
        LEDGER_KAFKA_TOPIC=topic,
        LEDGER_LOG_FORMAT="json",
    )


def _consume(postgres_url: str, kafka_bootstrap: str, topic: str) -> None:
    done = run_cli(
        ["consume", "--topic", topic, "--group", "g-e2e", "--until-idle", "3"],
        cli_env(postgres_url, kafka_bootstrap),
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_signed_posts_are_stored_once_even_when_posted_twice(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=3)
    bodies = [web.event_body(account=account) for account in (None, "acct_a", "acct_b") * 10]
    with web.serve_cli(_ingest_env(kafka_bootstrap, topic), tmp_path / "ingest.log") as port:
        for body in bodies:
            assert web.post_webhook(port, body, web.stripe_signature(body))[0] == 200
        for body in bodies[:5]:  # Stripe delivers at least once
            assert web.post_webhook(port, body, web.stripe_signature(body))[0] == 200
        forged = web.event_body()
        status, _ = web.post_webhook(port, forged, web.stripe_signature(forged, web.OTHER_SECRET))
        assert status == 400
    _consume(postgres_url, kafka_bootstrap, topic)
    expected = sorted(json.loads(body)["id"] for body in bodies)
    assert sorted(store.event_ids()) == expected
    stored = {event.event_id: event for event in store.read(0, 100)}
    first = json.loads(bodies[1])
    assert stored[first["id"]].account == "acct_a"
    assert stored[first["id"]].payload == first
    assert all(event.kafka_topic == topic for event in stored.values())


@pytest.mark.slow
def test_a_broker_outage_answers_503_never_2xx_and_recovers(
    store: EventStore, postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """Stops the real broker (scripts/services.sh stop-kafka) under a running ingest."""
    create_topic(kafka_bootstrap, topic, partitions=1)
    services = ["bash", str(ROOT / "scripts" / "services.sh")]
    accepted: list[str] = []
    with web.serve_cli(_ingest_env(kafka_bootstrap, topic), tmp_path / "ingest.log") as port:
        for _ in range(5):
            body = web.event_body()
            assert web.post_webhook(port, body, web.stripe_signature(body))[0] == 200
            accepted.append(json.loads(body)["id"])
        subprocess.run([*services, "stop-kafka"], check=True, capture_output=True, timeout=120)
        try:
            during = []
            for _ in range(3):
                body = web.event_body()
                status, reply = web.post_webhook(port, body, web.stripe_signature(body))
                during.append(status)
                if status == 200:  # never expected; if it happens it must be in the store
                    accepted.append(json.loads(body)["id"])
            assert during == [503, 503, 503], during
            assert web.request(port, "GET", "/readyz")[0] == 503
        finally:
            subprocess.run([*services, "start-kafka"], check=True, capture_output=True, timeout=300)
        recovered = False
        for _ in range(60):  # bounded: the producer reconnects with backoff
            body = web.event_body()
            status, _ = web.post_webhook(port, body, web.stripe_signature(body))
            if status == 200:
                accepted.append(json.loads(body)["id"])
                recovered = True
                break
            assert status == 503
        assert recovered, "ingest did not recover after the broker came back"
    _consume(postgres_url, kafka_bootstrap, topic)
    stored = set(store.event_ids())
    assert set(accepted) <= stored, "every event answered 200 must be stored"
