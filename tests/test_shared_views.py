"""The ``shared_*`` views (parts several report views read) are created with the reports, are not
reports themselves, and give the reporting role nothing beyond the report views."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from ledger.database import WRITE, create_engine, migrate
from projections import registry
from reports import views


def _read_side(url: str) -> sa.Engine:
    engine = create_engine(url)
    migrate(engine)
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        for projection in registry.get():
            registry.ensure(connection, projection)
        views.create_views(connection)
    return engine


def _views(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_view_names())


def test_shared_views_are_made_and_dropped_with_the_reports_and_are_not_reports(
    database_url: str,
) -> None:
    engine = _read_side(database_url)
    shared = set(views.shared_views())
    assert "shared_opening_as_of" in shared
    assert not {name for name in views.report_names() if f"report_{name}" in shared}
    assert shared | {f"report_{name}" for name in views.report_names()} <= _views(engine)
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        views.create_views(connection)  # again: the old ones are dropped first, in order
        views.drop_views(connection)
    assert not {view for view in _views(engine) if not view.startswith("proj_")}
    engine.dispose()


def test_the_reporting_role_reads_reports_not_their_shared_parts(postgres_url: str) -> None:
    engine = _read_side(postgres_url)
    analyst, password = f"analyst_{uuid.uuid4().hex[:8]}", "pw-shared-4k"
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE ROLE {analyst} LOGIN PASSWORD '{password}' IN ROLE {views.REPORTING_ROLE}"
        )
    url = sa.make_url(postgres_url).set(username=analyst, password=password)
    reader = create_engine(url.render_as_string(hide_password=False), read_only=True)
    try:
        with reader.connect() as connection:
            assert connection.exec_driver_sql("SELECT * FROM report_balances").all() == []
        with reader.connect() as connection, pytest.raises(sa.exc.ProgrammingError) as denied:
            connection.exec_driver_sql("SELECT * FROM shared_opening_as_of")
        assert "permission denied" in str(denied.value)
    finally:
        reader.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP ROLE {analyst}")
        engine.dispose()
