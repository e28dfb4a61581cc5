"""The dashboard's database connection: read-only whatever the URL allows.

SQLite is opened through a ``mode=ro`` URI (and ``query_only``), so the dashboard can serve a
file it may not write; PostgreSQL sessions are read-only with a statement timeout, so a slow
page costs at most that and can never write, even under an owner's login.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from ledger.database import DatabaseError

STATEMENT_TIMEOUT_MS = 15_000  # a page's slowest aggregate on a 1M-event store: ~1-3 s
POOL_CONNECTIONS_MAX = 4
SQLITE_BUSY_TIMEOUT_MS = 5_000


def open_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise DatabaseError("LEDGER_DATABASE_URL is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        )
        return sa.create_engine(
            parsed,
            pool_size=POOL_CONNECTIONS_MAX,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 10,
                "application_name": "stripe-ledger-dashboard",
                "options": options,
            },
        )
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite:///FILE or postgresql")


def _sqlite(parsed: sa.URL) -> sa.Engine:
    path = Path(parsed.database or "")
    if not path.is_file():
        raise DatabaseError(f"no SQLite database at {path} (run `stripe-ledger migrate`)")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    engine = sa.create_engine(f"sqlite:///{uri}&uri=true")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    sa.event.listen(engine, "connect", on_connect)
    return engine
