"""Real-broker helpers for tests: create topics, produce records, run the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-m", "cli.main"]


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partition: int | None = None,
) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    count = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value, partition=partition)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return count


def cli_env(database_url: str, bootstrap: str = "", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "STRIPE_"))}
    env.update(
        LEDGER_DATABASE_URL=database_url,
        LEDGER_KAFKA_BOOTSTRAP=bootstrap,
        LEDGER_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout_s: float = 120, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, timeout=timeout_s, input=stdin
    )


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
