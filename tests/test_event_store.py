"""The event store's backends: what is particular to each (the shared contract, run on every
backend, is tests/contracts/test_event_store.py)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from ledger.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    current_revision,
    head_revision,
    migrate,
)
from ledger.envelope import parse_event
from ledger.store import Incoming, open_event_store, utc_now
from ledger.store_postgres import APPEND_LOCK_KEY, PostgresEventStore
from ledger.store_sqlite import SqliteEventStore
from tests.support.factory import charge_event, encode

WAIT_S = 30


def incoming(n: int) -> Incoming:
    return Incoming(parse_event(encode(charge_event(n))), "webhook", utc_now())


def test_migrate_is_idempotent(database_url: str) -> None:
    engine = create_engine(database_url)
    assert current_revision(engine) is None
    assert migrate(engine) == (None, head_revision())
    assert migrate(engine) == (head_revision(), head_revision())


@pytest.mark.parametrize(
    ("backend", "kind"), [("sqlite", SqliteEventStore), ("postgres", PostgresEventStore)]
)
def test_the_factory_opens_the_backend_of_the_dialect(
    backend: str, kind: type, request: pytest.FixtureRequest
) -> None:
    engine = create_engine(str(request.getfixturevalue(f"{backend}_url")))
    store = open_event_store(engine)
    assert type(store) is kind and store.engine is engine
    with pytest.raises(AssertionError):
        (PostgresEventStore if kind is SqliteEventStore else SqliteEventStore)(engine)
    engine.dispose()


def test_postgres_appends_wait_for_the_append_lock(postgres_url: str) -> None:
    """Positions are handed out under one advisory lock: an append waits while it is held."""
    engine = create_engine(postgres_url)
    migrate(engine)
    store = open_event_store(engine)
    done: list[int] = []
    with engine.connect() as holder:
        holder.exec_driver_sql(f"SELECT pg_advisory_lock({APPEND_LOCK_KEY})")
        writer = threading.Thread(target=lambda: done.append(store.append([incoming(1)]).appended))
        writer.start()
        deadline = time.monotonic() + WAIT_S
        with engine.connect() as watcher:
            while not watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).scalar():
                watcher.rollback()
                assert time.monotonic() < deadline, "the append never waited for the lock"
                time.sleep(0.01)
        assert writer.is_alive() and done == [] and store.count() == 0
        holder.exec_driver_sql(f"SELECT pg_advisory_unlock({APPEND_LOCK_KEY})")
        holder.commit()
    writer.join(timeout=WAIT_S)
    assert done == [1] and store.count() == 1
    engine.dispose()


def test_sqlite_leaves_known_ids_out_before_its_insert(sqlite_url: str) -> None:
    """SQLite's events_no_replace trigger refuses any INSERT over a stored id (ON CONFLICT DO
    NOTHING's included): the append must never send one, or the whole batch would fail."""
    engine = create_engine(sqlite_url)
    migrate(engine)
    store = open_event_store(engine)
    store.append([incoming(1)])
    columns = "event_id, type, created, livemode, received_at, source, payload"
    with pytest.raises(sa.exc.DBAPIError, match="cannot be replaced"):
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"INSERT INTO events ({columns}) SELECT {columns} FROM events WHERE true "
                "ON CONFLICT (event_id) DO NOTHING"
            )
    result = store.append([incoming(1), incoming(2)])
    assert (result.appended, result.duplicates) == (1, 1)
    engine.dispose()


def test_sqlite_append_polls_the_write_lock_then_commits(sqlite_url: str) -> None:
    """serve's append (events alone, through the driver) waits while another writer holds
    SQLite's write lock, commits once it is free, and leaves its pooled connection's busy
    timeout as every other connection has it."""
    engine = create_engine(sqlite_url)
    migrate(engine)
    store = open_event_store(engine)
    holder = engine.raw_connection()
    holder.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    done: list[int] = []
    writer = threading.Thread(target=lambda: done.append(store.append([incoming(1)]).appended))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive() and done == [] and store.count() == 0
    holder.driver_connection.execute("COMMIT")  # type: ignore[union-attr]
    holder.close()
    writer.join(timeout=WAIT_S)
    assert done == [1] and store.count() == 1
    with engine.connect() as connection:  # the pool's connections, the append's among them
        timeouts = {connection.exec_driver_sql("PRAGMA busy_timeout").scalar()}
    assert timeouts == {SQLITE_BUSY_TIMEOUT_MS}
    engine.dispose()


def test_sqlite_driver_errors_are_sqlalchemy_errors(sqlite_url: str) -> None:
    """A failure inside the driver's append is the SQLAlchemy error callers catch (serve's sink
    answers 503 on it), the transaction is rolled back whole, and the store stays usable."""
    engine = create_engine(sqlite_url)
    migrate(engine)
    store = open_event_store(engine)
    refused = incoming(2)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON events "
            f"WHEN NEW.event_id = '{refused.event.event_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    with pytest.raises(sa.exc.IntegrityError, match="refused by the test"):
        store.append([incoming(1), refused, incoming(3)])
    assert store.count() == 0
    assert store.append([incoming(1), incoming(3)]).appended == 2
    engine.dispose()
