"""Shared fixtures: the real PostgreSQL and Kafka from scripts/services.sh, fresh per test.

No mocks of either: when LEDGER_DATABASE_URL / LEDGER_KAFKA_BOOTSTRAP are not set, the session
starts the real services itself with ``scripts/services.sh up``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.common import drop_database, services_env

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    return services_env(export=False)


@pytest.fixture(scope="session")
def postgres_admin_url(services: dict[str, str]) -> str:
    return services["LEDGER_DATABASE_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(services: dict[str, str]) -> str:
    return services["LEDGER_KAFKA_BOOTSTRAP"]


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server of ``admin_url``, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_postgres(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Every contract test runs once per backend, the same way (eventsourcing style)."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def topic() -> str:
    """A fresh Kafka topic name per test (auto-created by the broker on first use)."""
    return f"test.{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def sqs_endpoint() -> str:
    """The real SQS-compatible server (ElasticMQ), started by scripts/services.sh if needed."""
    from tests.sqs_util import sqs_endpoint_url

    return sqs_endpoint_url()


@pytest.fixture(scope="session")
def sqs(sqs_endpoint: str) -> Any:
    """A boto3 SQS client of that server."""
    from tests.sqs_util import client

    return client(sqs_endpoint)
