"""projections/bulk.py on both databases: the same rows after the same bulk writes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ledger.database import WRITE, create_engine
from projections import bulk
from projections.base import State

KEY = ("object_id", "livemode")


def _table() -> sa.Table:
    return sa.Table(
        "bulk_probe",
        sa.MetaData(),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("account", sa.String(255)),
        sa.Column("amount", sa.BigInteger),
        sa.Column("attempts", sa.Integer),
        sa.Column("state", State),
        sa.PrimaryKeyConstraint("object_id", "livemode"),
    )


def _rows(connection: sa.Connection, table: sa.Table) -> list[tuple[object, ...]]:
    return [tuple(row) for row in connection.execute(sa.select(table).order_by(*table.c[:2]))]


def test_insert_update_delete_give_the_same_rows_on_both_databases(database_url: str) -> None:
    engine = create_engine(database_url)
    table = _table()
    big = 2**62  # int8, not int4
    state = {"key": [1, 2, "evt_1"], "fields": {"reached": {"paid": 5}, "note": "é\u0000"[:1]}}
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        table.create(connection)
        bulk.insert(connection, table, [])  # nothing to write: no statement, no error
        bulk.insert(
            connection,
            table,
            [
                {"object_id": "in_1", "livemode": False, "account": None, "amount": big,
                 "attempts": 1, "state": state},
                {"object_id": "in_1", "livemode": True, "account": "acct_1", "amount": -5,
                 "attempts": None, "state": None},
                {"object_id": "in_2", "livemode": False, "account": "", "amount": 0,
                 "attempts": 3, "state": {"fields": {}}},
            ],
        )  # fmt: skip
        bulk.update(
            connection,
            table,
            KEY,
            ("amount", "state"),
            [
                {"object_id": "in_1", "livemode": True, "amount": 7, "state": {"a": [True]}},
                {"object_id": "in_9", "livemode": True, "amount": 1, "state": None},  # no row
            ],
        )
        bulk.delete(connection, table, KEY, [{"object_id": "in_2", "livemode": False}])
        assert _rows(connection, table) == [
            ("in_1", False, None, big, 1, state),
            ("in_1", True, "acct_1", 7, None, {"a": [True]}),
        ]
        # the key is the whole key: livemode False is a different row than livemode True
        bulk.delete(connection, table, KEY, [{"object_id": "in_1", "livemode": True}])
        assert [row[:2] for row in _rows(connection, table)] == [("in_1", False)]
        table.drop(connection)
    engine.dispose()


def test_a_bulk_insert_of_a_present_key_fails_and_writes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    table = _table()
    row = {"object_id": "in_1", "livemode": False, "account": None, "amount": 1,
           "attempts": 1, "state": None}  # fmt: skip
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        table.create(connection)
    try:
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            bulk.insert(connection, table, [row])
        with pytest.raises(sa.exc.IntegrityError):
            with engine.connect().execution_options(**WRITE) as connection, connection.begin():
                bulk.insert(connection, table, [{**row, "object_id": "in_2"}, row])
        with engine.connect() as connection:
            assert [r[0] for r in _rows(connection, table)] == ["in_1"]
    finally:
        with engine.connect().execution_options(**WRITE) as connection, connection.begin():
            table.drop(connection)
        engine.dispose()


def test_upsert_inserts_new_keys_and_sets_present_ones_on_both_databases(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    table = _table()
    old = {"object_id": "in_1", "livemode": False, "account": None, "amount": 1,
           "attempts": 1, "state": {"fields": {}}}  # fmt: skip
    other = {**old, "livemode": True, "amount": 9}  # same id, other key: left alone
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        table.create(connection)
        bulk.insert(connection, table, [old, other])
        bulk.upsert(connection, table, KEY, [])  # nothing to write: no statement, no error
        bulk.upsert(
            connection,
            table,
            KEY,
            [
                {**old, "account": "acct_1", "amount": 2**62, "attempts": None,
                 "state": {"reached": {"paid": 5}}},
                {**old, "object_id": "in_2", "amount": -3, "state": None},
            ],
        )  # fmt: skip
        assert _rows(connection, table) == [
            ("in_1", False, "acct_1", 2**62, None, {"reached": {"paid": 5}}),
            ("in_1", True, None, 9, 1, {"fields": {}}),
            ("in_2", False, None, -3, 1, None),
        ]
        with pytest.raises(AssertionError, match="a key twice"):
            bulk.upsert(connection, table, KEY, [old, {**old, "amount": 5}])
        table.drop(connection)
    engine.dispose()
