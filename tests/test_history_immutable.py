"""History cannot be rewritten (issue 19): on SQLite, INSERT OR REPLACE and UPSERT over a stored
event are refused by the database itself (they used to replace it: the DELETE trigger does not
fire for REPLACE), while the store's own idempotent append still counts known ids."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.database import WRITE, create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import EventStore, Incoming, open_event_store
from tests.support.factory import charge_event
from tests.support.kafka_util import cli_env, run_cli

REWRITES = {
    "insert_or_replace": "INSERT OR REPLACE INTO events SELECT * FROM events_copy",
    "replace": "REPLACE INTO events SELECT * FROM events_copy",
    "upsert": (
        "INSERT INTO events SELECT * FROM events_copy WHERE true "
        "ON CONFLICT (event_id) DO UPDATE SET payload = excluded.payload"
    ),
    "position_taken": ("INSERT OR REPLACE INTO events SELECT * FROM events_copy_new_id"),
}


def _store(url: str) -> EventStore:
    engine = create_engine(url)
    migrate(engine)
    return open_event_store(engine)


def _append(store: EventStore, *numbers: int) -> int:
    now = dt.datetime.now(dt.UTC)
    incoming = [
        Incoming(event=event_from_dict(charge_event(n)), source="import", received_at=now)
        for n in numbers
    ]
    return store.append(incoming).appended


@pytest.mark.parametrize("statement", list(REWRITES.values()), ids=list(REWRITES))
def test_sqlite_refuses_to_replace_a_stored_event(sqlite_url: str, statement: str) -> None:
    store = _store(sqlite_url)
    assert _append(store, 1) == 1
    before = store.read(0, 10)
    with store.engine.connect().execution_options(**WRITE) as connection:
        with connection.begin():
            connection.exec_driver_sql("CREATE TEMP TABLE events_copy AS SELECT * FROM events")
            connection.exec_driver_sql(
                "UPDATE events_copy SET payload = replace(payload, 'succeeded', 'tampered')"
            )
            connection.exec_driver_sql(
                "CREATE TEMP TABLE events_copy_new_id AS SELECT * FROM events_copy"
            )
            connection.exec_driver_sql("UPDATE events_copy_new_id SET event_id = 'evt_other'")
        with pytest.raises(sa.exc.IntegrityError, match="cannot be replaced"):
            with connection.begin():
                connection.exec_driver_sql(statement)
    after = store.read(0, 10)
    assert [(e.position, e.event_id, e.payload) for e in after] == [
        (e.position, e.event_id, e.payload) for e in before
    ]


def test_the_store_append_still_counts_known_ids(sqlite_url: str) -> None:
    store = _store(sqlite_url)
    assert _append(store, 1, 2) == 2
    assert _append(store, 1, 2, 3) == 1
    assert store.count() == 3


def test_a_new_sqlite_file_is_private(tmp_path: Path) -> None:
    """Customer data: the file and its WAL are created 0600, whatever the umask."""
    old = os.umask(0o022)
    try:
        store = _store(f"sqlite:///{tmp_path / 'ledger.db'}")
        _append(store, 1)
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path.name, oct(mode))


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3cr3t@h:port/db", "weird:u:s3cr3t@", "nonsense://u:s3cr3t@@x"]
)
def test_an_unparseable_url_is_one_line_without_its_password(url: str) -> None:
    done = run_cli(["verify"], cli_env(url))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stripe-ledger verify: "), lines
    assert b"s3cr3t" not in done.stdout + done.stderr
