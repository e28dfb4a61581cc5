"""PostgreSQL: the workers log in as a member of ``ledger_runtime`` (migration 0005), which can
read and append events and do their work, and can neither rewrite nor unprotect history (issue
19: the workers used to run as the table owner, who can disable the append-only triggers)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ledger.database import create_engine
from ledger.envelope import event_from_dict
from ledger.store import Incoming, open_event_store
from tests.support.factory import charge_event
from tests.support.kafka_util import cli_env, run_cli

FORBIDDEN = {
    "update": "UPDATE events SET type = 'x'",
    "delete": "DELETE FROM events",
    "truncate": "TRUNCATE events",
    "disable_trigger": "ALTER TABLE events DISABLE TRIGGER events_append_only",
    "alter": "ALTER TABLE events ADD COLUMN x int",
    "drop": "DROP TABLE events",
    "drop_trigger": "DROP TRIGGER events_append_only ON events",
}


@pytest.fixture
def runtime_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` migrated by its owner, and a fresh login in ledger_runtime on it."""
    migrated = run_cli(["migrate"], cli_env(postgres_url))
    assert migrated.returncode == 0, migrated.stderr.decode()[-2000:]
    name = f"worker_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE ledger_runtime"
        )
    url = sa.make_url(postgres_url).set(username=name, password=password)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP ROLE {name}")
        admin.dispose()


def test_the_runtime_role_appends_and_projects(runtime_url: str) -> None:
    store = open_event_store(create_engine(runtime_url))
    now = dt.datetime.now(dt.UTC)
    incoming = [
        Incoming(event=event_from_dict(charge_event(n)), source="import", received_at=now)
        for n in range(5)
    ]
    assert store.append(incoming).appended == 5
    assert store.append(incoming).appended == 0  # idempotent, as any worker needs
    project = run_cli(["project", "--until-idle", "1"], cli_env(runtime_url))
    assert project.returncode == 0, project.stderr.decode()[-3000:]
    report = run_cli(["report", "balances", "--format", "json"], cli_env(runtime_url))
    assert report.returncode == 0, report.stderr.decode()[-2000:]
    store.engine.dispose()


@pytest.mark.parametrize("statement", list(FORBIDDEN.values()), ids=list(FORBIDDEN))
def test_the_runtime_role_cannot_rewrite_history(runtime_url: str, statement: str) -> None:
    engine = create_engine(runtime_url)
    try:
        with engine.connect() as connection:
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
                with connection.begin():
                    connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
