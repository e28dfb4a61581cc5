"""Checks for the dev/CI service tooling: scripts/services.sh and docker-compose.yml.

These tests do not start or stop anything: `status` only reports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "services.sh"
COMPOSE_FILE = REPO / "docker-compose.yml"

# docker-compose.yml requires STRIPE_WEBHOOK_SECRET (`${STRIPE_WEBHOOK_SECRET:?...}`).
_COMPOSE_ENV = {**os.environ, "STRIPE_WEBHOOK_SECRET": "whsec_test_compose_config"}


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) if it works, else `docker-compose` (v1), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(
            ["docker-compose", "version"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            return ["docker-compose"]
    return None


def test_docker_compose_config_is_valid() -> None:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing at the repo root"
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither the `docker compose` plugin nor `docker-compose` is installed")
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_COMPOSE_ENV,
        timeout=120,
    )
    assert result.returncode == 0, f"{' '.join(compose)} config rejected the file:\n{result.stderr}"

    services = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "--services"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_COMPOSE_ENV,
        timeout=120,
    )
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) >= {
        "kafka",
        "postgres",
        "migrate",
        "ingest",
        "consume",
        "project",
    }


def test_docker_compose_requires_webhook_secret() -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither the `docker compose` plugin nor `docker-compose` is installed")
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0, "compose config must fail without STRIPE_WEBHOOK_SECRET"
    assert "STRIPE_WEBHOOK_SECRET" in (result.stderr + result.stdout)


def test_services_script_syntax() -> None:
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK), "scripts/services.sh must be executable"
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


_DEDUPE_BUFFER_DEFAULT_BYTES = 128 * 1024 * 1024  # Kafka's log.cleaner.dedupe.buffer.size


def test_every_broker_template_sizes_the_log_cleaner_for_the_smallest_heap() -> None:
    """The log cleaner allocates its dedupe buffer in one piece when the broker starts; at Kafka's
    default (128 MiB, half of the 256 MiB heap the SASL broker and each cluster node get) CI saw the
    SASL broker exit with OutOfMemoryError: Java heap space. Each template must set it to at most an
    eighth of the smallest -Xmx that services.sh gives a JVM."""
    heaps_mib = [int(m) for m in re.findall(r"-Xmx(\d+)m", SCRIPT.read_text())]
    assert heaps_mib, "services.sh names no -Xmx"
    limit_bytes = min(heaps_mib) * 1024 * 1024 // 8
    templates = sorted((REPO / "scripts" / "kafka").glob("*.properties.template"))
    assert len(templates) == 3, templates
    for template in templates:
        found = re.findall(
            r"^log\.cleaner\.dedupe\.buffer\.size=(\d+)$", template.read_text(), re.MULTILINE
        )
        size_bytes = int(found[-1]) if found else _DEDUPE_BUFFER_DEFAULT_BYTES
        assert size_bytes <= limit_bytes, (template.name, size_bytes, limit_bytes)


def test_services_script_status_exits_zero() -> None:
    result = subprocess.run(
        [str(SCRIPT), "status"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("postgres:") for line in lines), result.stdout
    assert any(line.startswith("kafka:") for line in lines), result.stdout


def test_services_script_up_echoes_user_provided_services() -> None:
    """With both LEDGER_* variables set, `up` starts nothing and prints exactly the exports."""
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": "postgresql+psycopg://u:p@db.example:5432/x",
        "LEDGER_KAFKA_BOOTSTRAP": "kafka.example:9092",
    }
    result = subprocess.run(
        [str(SCRIPT), "up"], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "export LEDGER_DATABASE_URL=postgresql+psycopg://u:p@db.example:5432/x",
        "export LEDGER_KAFKA_BOOTSTRAP=kafka.example:9092",
    ]


def test_services_script_up_sqs_echoes_user_provided_services() -> None:
    """With the three variables set, `up --sqs` starts nothing and prints exactly three lines."""
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": "postgresql+psycopg://u:p@db.example:5432/x",
        "LEDGER_KAFKA_BOOTSTRAP": "kafka.example:9092",
        "LEDGER_SQS_ENDPOINT": "http://sqs.example:9324",
    }
    result = subprocess.run(
        [str(SCRIPT), "up", "--sqs"], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "export LEDGER_DATABASE_URL=postgresql+psycopg://u:p@db.example:5432/x",
        "export LEDGER_KAFKA_BOOTSTRAP=kafka.example:9092",
        "export LEDGER_SQS_ENDPOINT=http://sqs.example:9324",
    ]


def test_services_script_status_names_the_sqs_server() -> None:
    result = subprocess.run(
        [str(SCRIPT), "status"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert any(line.startswith("sqs:") for line in result.stdout.splitlines()), result.stdout
