"""Engines and migrations: the one place that knows how to open each backend.

SQLite is tuned for one process with several threads: WAL (readers never block the writer),
a busy timeout, and ``BEGIN IMMEDIATE`` for writing transactions so two writers queue on the
lock instead of failing on a read-to-write upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ledger.retry import retrying
from migrations import MIGRATIONS_DIR

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_POOL_CONNECTIONS_MAX = 8
POSTGRES_CONNECT_TIMEOUT_S = 10  # libpq connect_timeout: a server that does not answer
WRITE = {"ledger_write": True}  # execution option: this transaction writes
SQLITE_FILE_MODE = 0o600  # customer data: owner only (SQLite gives -wal/-shm the same mode)


def masked_url(text: str) -> str:
    """A database URL, parseable or not, with its credentials (user and password) as ***."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{separator}{rest}"


def _sqlite_create_private(path: str | None) -> None:
    """Create a missing SQLite file as 0600 before SQLite does (it would use 0644 & ~umask)."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
    except FileExistsError:
        pass
    except OSError:
        pass  # a missing directory and the like: sqlite3.connect says it in its own words


class DatabaseError(RuntimeError):
    """The database is unreachable, unmigrated or otherwise unusable; the message says how."""


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's own is deferred and late).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    _sqlite_session_pragmas(cursor)


def _sqlite_session_pragmas(cursor: Any) -> None:
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across app crashes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    # No journal_mode: setting WAL writes the file header and creates the -wal/-shm files.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _sqlite_session_pragmas(cursor)


def _sqlite_on_begin(connection: sa.Connection) -> None:
    writing = connection.get_execution_options().get("ledger_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def first_line(error: BaseException) -> str:
    """The driver's own message of a SQLAlchemy error, one line (no SQL, no background URL)."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def reachable() -> Iterator[None]:
    """Turn "cannot connect" into a one-line DatabaseError (a command's exit 2, no traceback)."""
    try:
        yield
    except sa.exc.OperationalError as error:
        raise DatabaseError(f"cannot reach the database: {first_line(error)}") from None


def _sqlite_path(parsed: sa.URL, name: str, *, create: bool) -> Path | None:
    """The file of a SQLite URL, checked: None for an in-memory database."""
    if parsed.host:  # sqlite://relative.db: the file name went into the host part
        raise DatabaseError(
            f"{name}: {parsed.render_as_string()!r} names no file: use sqlite:///relative.db "
            "(three slashes) or sqlite:////absolute/path.db (four)"
        )
    if parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    if not path.parent.is_dir():
        raise DatabaseError(f"{name}: no directory {path.parent} for the SQLite file {path.name}")
    if path.exists() and not path.is_file():
        raise DatabaseError(f"{name}: {path} is not a SQLite file")
    if not create and not path.exists():
        raise DatabaseError(
            f"{name}: no SQLite database at {path}: run `stripe-ledger migrate` first "
            "(or check the path)"
        )
    return path


def _sqlite_creator(path: Path, read_only: bool) -> Callable[[], sqlite3.Connection]:
    """Connections that never create the file (mode=rw / mode=ro) instead of sqlite's default.

    A read-only WAL database in a directory nobody may write cannot get its -shm file: it is
    then opened ``immutable`` (no locks; nobody can be writing it there)."""
    base = f"file:{urllib.parse.quote(str(path.resolve()))}"

    def connect() -> sqlite3.Connection:
        if not read_only:
            return sqlite3.connect(f"{base}?mode=rw", uri=True, check_same_thread=False)
        connection = sqlite3.connect(f"{base}?mode=ro", uri=True, check_same_thread=False)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
            if os.access(path.parent, os.W_OK):
                raise
        uri = f"{base}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return connect


def create_engine(
    url: str, *, create: bool = True, read_only: bool = False, name: str = "LEDGER_DATABASE_URL"
) -> sa.Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    ``create=False``: a missing SQLite file is an error, never created (every command but
    ``migrate``, ``serve`` and a copy's target). ``read_only``: nothing is written on connect
    (``report``, ``verify``). ``name`` is what an error calls the URL."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseError(f"{name} is not a database URL: {masked_url(url)!r}") from None
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed, name, create=create and not read_only)
        if path is not None and (read_only or not create):
            engine = sa.create_engine(parsed, creator=_sqlite_creator(path, read_only))
        else:  # sqlite creates a missing file: first create it private (0600)
            engine = sa.create_engine(parsed)
            database = parsed.database

            @sa.event.listens_for(engine, "do_connect")
            def _private_file(*_args: Any) -> None:
                _sqlite_create_private(database)

        on_connect = _sqlite_on_connect_read_only if read_only else _sqlite_on_connect
        sa.event.listen(engine, "connect", on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(
            parsed,
            pool_size=POSTGRES_POOL_CONNECTIONS_MAX,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
                "application_name": "stripe-ledger",
            },
        )
    raise DatabaseError(
        f"{name}: unsupported database {parsed.get_backend_name()!r}: use sqlite:///FILE or "
        "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    )


# Alembic is imported by the functions that use it: it doubles the import time of this module,
# and commands that only read (`report`, `dashboard`) never migrate (issue 21, start-up).
def _alembic_config(engine: sa.Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: sa.Engine) -> tuple[str | None, str]:
    """Upgrade the schema to head. Returns (revision before, revision after)."""
    with reachable():
        before = current_revision(engine)
    from alembic import command

    config = _alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision()


def require_migrated(engine: sa.Engine, wait: threading.Event | None = None) -> None:
    """Refuse to run on a database that is not at the code's schema revision.

    With ``wait`` (a worker's stop event), an unreachable database is retried with backoff
    until it answers or the worker is stopped; without it, unreachable is an error at once.
    """
    if wait is not None:
        current = retrying("database", lambda: current_revision(engine), wait)
        if wait.is_set():
            return
    else:
        with reachable():
            current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseError(
            f"the database schema is at revision {current or 'none'}, the code needs {head}: "
            "run `stripe-ledger migrate` first"
        )
