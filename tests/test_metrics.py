"""Metrics (#20): every name stripe_ledger_*; ``consume`` and ``project`` serve /metrics on
``--metrics-port`` with the store, dead letters, consumer lag and projection lag."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cli import main as main_cli
from demo.history import generate
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.metrics import StoreCollector, kafka_end_offsets
from ledger.store import DeadLetter, Incoming, open_event_store, utc_now
from projections import worker
from projections.metrics import ProjectionCollector
from reports.read_side import prepare_read_side
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import cli_env, create_topic, produce, start_cli


def _text(*collectors: object) -> str:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def _value(text: str, sample: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(sample + " ")]
    return float(line.split()[-1])


def test_projection_lag_in_positions_and_seconds(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    events = [event_from_dict(e) for e in generate(seed=3, events=60).deliveries]
    store.append([Incoming(e, "import", utc_now()) for e in events])
    store.append([], dead=[DeadLetter(b"junk", "not JSON", utc_now())])
    time.sleep(0.05)
    text = _text(StoreCollector(engine), ProjectionCollector(engine))
    head = store.head_position()
    assert _value(text, "stripe_ledger_store_head_position") == head
    assert _value(text, "stripe_ledger_dead_letters") == 1
    assert _value(text, 'stripe_ledger_projection_lag_positions{projection="journal"}') == head
    assert _value(text, 'stripe_ledger_projection_lag_seconds{projection="invoices"}') > 0
    worker.run(store, until_idle_s=0)
    text = _text(ProjectionCollector(engine))
    assert _value(text, 'stripe_ledger_projection_lag_positions{projection="journal"}') == 0
    assert _value(text, 'stripe_ledger_projection_lag_seconds{projection="disputes"}') == 0
    assert _value(text, 'stripe_ledger_projection_failed_events{projection="journal"}') == 0
    with engine.begin() as connection:  # what the fold records for an event it cannot fold
        connection.exec_driver_sql(
            "INSERT INTO projection_failures (name, generation, position, event_id, error, "
            "failed_at_ms) VALUES ('journal', 1, 5, 'evt_poison', 'OverflowError', 0)"
        )
    text = _text(ProjectionCollector(engine))
    assert _value(text, 'stripe_ledger_projection_failed_events{projection="journal"}') == 1
    assert all(
        line.startswith(("stripe_ledger_", "#")) for line in text.splitlines() if line.strip()
    )


def test_consumer_lag_against_the_real_broker(
    sqlite_url: str, kafka_bootstrap: str, topic: str
) -> None:
    engine = create_engine(sqlite_url)
    migrate(engine)
    create_topic(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, [(None, encode(charge_event(n))) for n in range(5)], 1)
    text = _text(StoreCollector(engine, kafka_end_offsets(kafka_bootstrap, topic)))
    assert _value(text, f'stripe_ledger_consumer_lag_records{{partition="1",topic="{topic}"}}') == 5
    assert _value(text, f'stripe_ledger_consumer_lag_records{{partition="0",topic="{topic}"}}') == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_project_serves_metrics_on_its_port(sqlite_url: str) -> None:
    migrate(create_engine(sqlite_url))
    port = _free_port()
    process = start_cli(["project", "--metrics-port", str(port)], cli_env(sqlite_url))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                # The family's HELP line is served before the worker has registered its
                # projections: wait for the journal's sample itself.
                if 'stripe_ledger_projection_lag_positions{projection="journal"}' in text:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "no metrics"
            time.sleep(0.2)
        assert 'stripe_ledger_projection_lag_positions{projection="journal"} 0.0' in text
        assert "stripe_ledger_dead_letters 0.0" in text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0


@pytest.mark.parametrize("port", ["0", "70000"])
def test_a_bad_metrics_port_is_one_line(
    port: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(create_engine(sqlite_url))
    monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
    assert main_cli.main(["project", "--until-idle", "0", "--metrics-port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stripe-ledger project: error: --metrics-port must be between 1 and")


def test_a_taken_metrics_port_is_one_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    migrate(create_engine(sqlite_url))
    monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main_cli.main(["project", "--until-idle", "0", "--metrics-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"--metrics-port {port}: cannot listen on 127.0.0.1" in err, err
