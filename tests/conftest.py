"""Shared fixtures: the real PostgreSQL and Kafka from scripts/services.sh, fresh per test.

No mocks of either: when LEDGER_DATABASE_URL / LEDGER_KAFKA_BOOTSTRAP are not set, the session
starts the real services itself with ``scripts/services.sh up``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import scratch_database, services_env

ROOT = Path(__file__).resolve().parent.parent
# Real Stripe payloads and facts, copied into the repository (tests/fixtures/README.md names
# each file's source): a fresh clone has no ../shared beside it.
STRIPE_FIXTURES = ROOT / "tests" / "fixtures" / "stripe"

# Every file a test opens beside the repository (../shared, another checkout): recorded by an
# audit hook, and each test that opened one fails (tests/test_fixtures.py checks the hook).
# Only siblings of the clone are watched, and not where they are everyone's (/, $HOME, the
# temporary directory that holds every test's tmp_path): the venv and the interpreter may live
# anywhere.
WATCH_BESIDE = ROOT.parent not in (Path("/"), Path.home(), Path(tempfile.gettempdir()).resolve())
OUTSIDE_READS: list[str] = []


def beside(path: str, root: Path) -> bool:
    """Whether ``path`` is in ``root``'s parent directory but not in ``root`` (the hook's test)."""
    absolute = os.path.abspath(path)
    return absolute.startswith(str(root.parent) + os.sep) and not absolute.startswith(
        str(root) + os.sep
    )


def _audit_open(event: str, args: tuple[object, ...]) -> None:
    if event != "open" or not WATCH_BESIDE or not args:
        return
    if isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        if beside(path, ROOT):
            OUTSIDE_READS.append(path)


sys.addaudithook(_audit_open)


@pytest.fixture(autouse=True)
def _no_reads_outside_the_repository() -> Iterator[None]:
    OUTSIDE_READS.clear()
    yield
    opened, OUTSIDE_READS[:] = list(OUTSIDE_READS), []
    assert not opened, f"a test read outside the repository (copy it to tests/fixtures/): {opened}"


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    return services_env(export=False)


@pytest.fixture(scope="session")
def postgres_admin_url(services: dict[str, str]) -> str:
    return services["LEDGER_DATABASE_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(services: dict[str, str]) -> str:
    return services["LEDGER_KAFKA_BOOTSTRAP"]


def fresh_postgres(admin_url: str) -> contextlib.AbstractContextManager[str]:
    """A fresh, empty PostgreSQL database on the server of ``admin_url``, dropped afterwards."""
    return scratch_database(admin_url, "t")


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
    from tests.support.sqs_util import sqs_endpoint_url

    return sqs_endpoint_url()


@pytest.fixture(scope="session")
def sqs(sqs_endpoint: str) -> Any:
    """A boto3 SQS client of that server."""
    from tests.support.sqs_util import client

    return client(sqs_endpoint)
