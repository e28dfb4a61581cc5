"""The real services of scripts/services.sh, and throw-away PostgreSQL databases on them.

Below both the test suite (tests/conftest.py) and the benchmarks (bench/common.py): neither
imports the other for these.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT_TIMEOUT_S = 900  # services.sh up may pull and start containers
DROP_ATTEMPTS_MAX = 3  # each plain DROP itself waits up to 5 s for other sessions to go
DROP_RETRY_S = 0.5
TERMINATE_WAIT_MS = 5_000  # pg_terminate_backend waits up to this for each session to end


def script_exports(script: str, *args: str, timeout_s: float = SCRIPT_TIMEOUT_S) -> dict[str, str]:
    """Run ``scripts/<script> args`` and return the ``export NAME=value`` lines it printed."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    ).stdout
    exports: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            exports[key] = value.strip().strip("'\"")
    return exports


def services_env(export: bool = True) -> dict[str, str]:
    """LEDGER_DATABASE_URL and LEDGER_KAFKA_BOOTSTRAP: from the environment, or from
    ``scripts/services.sh up`` (then also set in this process's environment when ``export``)."""
    url = os.environ.get("LEDGER_DATABASE_URL", "")
    bootstrap = os.environ.get("LEDGER_KAFKA_BOOTSTRAP", "")
    if url.startswith("postgresql") and bootstrap:
        return {"LEDGER_DATABASE_URL": url, "LEDGER_KAFKA_BOOTSTRAP": bootstrap}
    env = script_exports("services.sh", "up")
    if export:
        os.environ.update(env)
    return env


def admin_engine(url: str) -> sa.Engine:
    return sa.create_engine(sa.make_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server of ``admin_url`` (its URL), dropped
    afterwards unless ``keep``."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = admin_engine(admin_url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if not keep:
            drop_database(admin, name)
        admin.dispose()


def database_exists(admin: sa.Engine, name: str) -> bool:
    """Whether the server of ``admin`` has a database called ``name``."""
    with admin.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).scalar()
    return found is not None


def drop_database(admin: sa.Engine, name: str, attempts: int = DROP_ATTEMPTS_MAX) -> None:
    """Drop ``name``: end this role's own sessions on it, then a plain ``DROP DATABASE``.

    Not ``WITH (FORCE)``: PostgreSQL 15 refuses it while an autovacuum worker is on the
    database (the worker has no role this one is a member of: "must be a member of the role
    whose process is being terminated"), which a freshly filled database often has for many
    seconds (the bench's e2e store did). A plain ``DROP`` signals autovacuum workers to stop
    and waits for them itself. Sessions of other roles make it fail ("being accessed by other
    users"): retried a bounded number of times, then raised."""
    assert 0 < attempts <= DROP_ATTEMPTS_MAX, attempts
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
                    " WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                    (TERMINATE_WAIT_MS, name),
                )
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except sa.exc.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(DROP_RETRY_S)
