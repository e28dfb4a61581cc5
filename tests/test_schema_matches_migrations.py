"""The schema the code reads equals the schema the migrations create, on both databases.

The migrations are the history (frozen text that never imports the live metadata); the code's
tables are defined once per stage: ledger/schema.py, projections/registry.py,
reports/closing_schema.py. A fresh database migrated to head is compared with the union of those
metadata by Alembic's autogenerate: columns, types, nullability, indexes, unique constraints and
server defaults. The projections' generation-suffixed tables are made by code, not migrations,
so a freshly migrated database has none of them.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger import schema
from ledger.database import create_engine, migrate
from projections import registry
from reports import closing_schema

STAGE_METADATA = (schema.metadata, registry.metadata, closing_schema.metadata)
MIGRATED_TABLES = {
    "events", "kafka_offsets", "dead_letters", "balance_sync_cursors", "projection_state",
    "projection_failures", "projection_leases", "projection_shards", "closed_periods",
    "closed_postings", "period_close_log",
}  # fmt: skip


def _diff(engine: sa.Engine, metadata: sa.MetaData | tuple[sa.MetaData, ...]) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))  # type: ignore[arg-type]


@pytest.fixture
def migrated(database_url: str) -> Any:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_every_migrated_table_is_defined_once_in_the_code() -> None:
    defined = [name for metadata in STAGE_METADATA for name in metadata.tables]
    assert sorted(defined) == sorted(MIGRATED_TABLES)


def test_the_ledger_stage_knows_no_later_stage_table() -> None:
    assert set(schema.metadata.tables) == {
        "events", "kafka_offsets", "dead_letters", "balance_sync_cursors",
    }  # fmt: skip


def test_migrated_schema_equals_the_code_metadata(migrated: sa.Engine) -> None:
    assert set(sa.inspect(migrated).get_table_names()) == MIGRATED_TABLES | {"alembic_version"}
    assert _diff(migrated, STAGE_METADATA) == []


def test_a_column_only_in_the_code_is_found(migrated: sa.Engine) -> None:
    """The comparison can fail: a column, an index and a type the migrations never made."""
    drifted = sa.MetaData()
    for metadata in STAGE_METADATA:
        for table in metadata.tables.values():
            table.to_metadata(drifted)
    events = drifted.tables["events"]
    events.append_column(sa.Column("note", sa.Text, nullable=True))
    sa.Index("events_type", events.c.type)
    leases = drifted.tables["projection_leases"]
    leases.c.holder.nullable = True
    diff = _diff(migrated, drifted)
    kinds = {(entry[0] if isinstance(entry, tuple) else entry[0][0]) for entry in diff}
    assert {"add_column", "add_index", "modify_nullable"} <= kinds, diff
