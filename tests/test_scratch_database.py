"""The throw-away databases of tests/support/services.py are dropped even while a session of
this role is still on them (a pool not disposed, a child process killed mid-batch): the drop
ends those sessions itself, because it cannot use ``DROP ... WITH (FORCE)`` (PostgreSQL 15
refuses it while an autovacuum worker is on the database)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.support.services import admin_engine, database_exists, drop_database, scratch_database


def test_a_scratch_database_is_dropped_with_a_session_of_this_role_still_open(
    postgres_admin_url: str,
) -> None:
    admin = admin_engine(postgres_admin_url)
    with scratch_database(postgres_admin_url, "drop_probe") as url:
        name = sa.make_url(url).database
        assert name is not None
        lingering = sa.create_engine(url, poolclass=sa.NullPool).connect()
        lingering.exec_driver_sql("SELECT 1")
        assert database_exists(admin, name)
    try:
        assert not database_exists(admin, name)
        # The lingering session was ended by the drop, not left to time out.
        try:
            lingering.exec_driver_sql("SELECT 1")
        except sa.exc.DBAPIError as error:
            assert error.connection_invalidated or "terminat" in str(error).lower()
        else:
            raise AssertionError("the session on the dropped database still answers")
    finally:
        lingering.close()
        admin.dispose()


def test_dropping_a_database_that_is_gone_is_not_an_error(postgres_admin_url: str) -> None:
    admin = admin_engine(postgres_admin_url)
    try:
        drop_database(admin, "drop_probe_never_created")
        assert not database_exists(admin, "drop_probe_never_created")
    finally:
        admin.dispose()
