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
DROP_ATTEMPTS_MAX = 10
DROP_RETRY_S = 0.5


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


def drop_database(admin: sa.Engine, name: str, attempts: int = DROP_ATTEMPTS_MAX) -> None:
    """DROP ... WITH (FORCE) refuses to end an autovacuum worker that happens to be on the
    freshly filled database (it runs as the superuser): wait a moment and try again (bounded)."""
    assert 0 < attempts <= DROP_ATTEMPTS_MAX, attempts
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except sa.exc.ProgrammingError:
            if attempt == attempts - 1:
                raise
            time.sleep(DROP_RETRY_S)
