"""The projections, their bookkeeping tables and stable views.

``projection_state`` (migration 0002) holds, per projection, the live generation and its
checkpoint: the position of the last event whose effects are in that generation's tables. The
checkpoint is written in the same transaction as the rows (see worker.py).

Views ``proj_<table>`` (``proj_invoices``, ``proj_journal_postings`` ...) select from the live
generation's tables, so readers keep stable names while a rebuild fills a new generation;
``point_views`` repoints them (in the caller's transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ledger.database import DatabaseError
from projections.base import Projection, table_name
from projections.disputes import DisputesProjection
from projections.invoices import InvoicesProjection
from projections.journal import JournalProjection
from projections.shard import SHARDS_MAX

# The projections' bookkeeping tables (migrations 0002, 0003, 0005, 0007): their one definition, on
# this stage's own metadata (ledger/ knows none of them). The projections' own generation-suffixed
# tables are made by each projection's code, not here and not by a migration.
metadata = sa.MetaData()

projection_state = sa.Table(
    "projection_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("live_generation", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),  # checkpoint of the live generation
    # How many shards the live generation is split into (migration 0007). With 1, ``position``
    # is THE checkpoint; with more, each shard's is in ``projection_shards`` and ``position`` is
    # where the generation went live (``checkpoint`` below: the one lower bound readers use).
    sa.Column("shards", sa.Integer, nullable=False, server_default="1"),
    sa.CheckConstraint("live_generation >= 1", name="projection_state_generation_positive"),
    sa.CheckConstraint("position >= 0", name="projection_state_position_not_negative"),
)

# Each shard's checkpoint of a sharded live generation (migration 0007; see shard.py): written in
# the same transaction as that shard's rows, compare-and-set like ``projection_state.position``.
projection_shards = sa.Table(
    "projection_shards",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.CheckConstraint("shard >= 0", name="projection_shards_shard_not_negative"),
    sa.CheckConstraint("position >= 0", name="projection_shards_position_not_negative"),
)

# One row per running rebuild (projections/rebuild.py): two rebuilds of one projection would fill
# the same new generation. A lease expires when its holder stops renewing it (a killed rebuild).
projection_leases = sa.Table(
    "projection_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
)

FAILURE_ERROR_CHARS_MAX = 500  # an error's first line, cut: the column's width

# Events a projection's fold raised on (migration 0005): recorded, skipped, reported by verify.
projection_failures = sa.Table(
    "projection_failures",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("error", sa.String(FAILURE_ERROR_CHARS_MAX), nullable=False),
    sa.Column("failed_at_ms", sa.BigInteger, nullable=False),
)

PROJECTIONS: dict[str, Projection] = {
    projection.name: projection
    for projection in (JournalProjection(), InvoicesProjection(), DisputesProjection())
}
FIRST_GENERATION = 1


def view_name(logical: str) -> str:
    return f"proj_{logical}"


def get(names: Iterable[str] | None = None) -> list[Projection]:
    selected = list(names) if names else list(PROJECTIONS)
    unknown = [name for name in selected if name not in PROJECTIONS]
    if unknown:
        raise ValueError(
            f"unknown projection(s): {', '.join(unknown)}; known: {', '.join(PROJECTIONS)}"
        )
    return [PROJECTIONS[name] for name in selected]


def point_views(connection: sa.Connection, projection: Projection, generation: int) -> None:
    """(Re)create the ``proj_*`` views of ``projection`` on ``generation``'s tables."""
    # DDL takes no bound parameters: the two identifiers are interpolated, quoted by the dialect
    # where they need it (they come from the projections' own table names, never from input).
    quote = connection.dialect.identifier_preparer.quote
    for logical in projection.cached_tables(generation):
        view, table = quote(view_name(logical)), quote(table_name(logical, generation))
        connection.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")
        connection.exec_driver_sql(f"CREATE VIEW {view} AS SELECT * FROM {table}")


def state(
    connection: sa.Connection, name: str, *, lock: bool = False, share: bool = False
) -> Any:
    """The projection's row; ``lock`` holds it (FOR UPDATE) until the transaction ends, which
    serializes batches of concurrent workers and a rebuild's swap on PostgreSQL (SQLite's
    BEGIN IMMEDIATE already serializes every writer). ``share`` (FOR SHARE): a shard's batch,
    which excludes the swap but not the other shards' batches."""
    statement = sa.select(projection_state).where(projection_state.c.name == name)
    if lock or share:
        statement = statement.with_for_update(read=not lock)
    return connection.execute(statement).one_or_none()


def ensure(connection: sa.Connection, projection: Projection, shards: int = 1) -> tuple[int, int]:
    """Make sure the projection is registered with live tables and views; (generation, position).
    A projection first registered by a shard worker is registered with that worker's ``shards``."""
    row = state(connection, projection.name)
    if row is None:
        projection.create_tables(connection, FIRST_GENERATION)
        point_views(connection, projection, FIRST_GENERATION)
        connection.execute(
            sa.insert(projection_state).values(
                name=projection.name, live_generation=FIRST_GENERATION, position=0, shards=shards
            )
        )
        set_shards(connection, projection.name, FIRST_GENERATION, shards, 0)
        return FIRST_GENERATION, 0
    projection.create_tables(connection, row.live_generation)  # no-op when they exist
    return int(row.live_generation), int(row.position)


class ShardMismatch(DatabaseError):
    """A worker's ``--shard I/N`` does not match how the live generation is split."""


def require_shards(connection: sa.Connection, name: str, shards: int) -> None:
    row = state(connection, name)
    found = int(row.shards) if row is not None else 1
    if found != shards:
        how = "without --shard" if found == 1 else f"with --shard I/{found}, one per I"
        raise ShardMismatch(
            f"the {name} projection is live in {found} shard(s), not {shards}: run `project` "
            f"{how}, or change the number with `stripe-ledger rebuild --shards {shards}` "
            "(changing it goes through a rebuild)"
        )


def set_shards(
    connection: sa.Connection, name: str, generation: int, shards: int, position: int
) -> None:
    """Split ``generation`` into ``shards``, every shard at ``position`` (the rebuild's swap and
    a first registration); one shard needs no rows (``projection_state.position`` is it)."""
    assert 1 <= shards <= SHARDS_MAX, shards
    connection.execute(sa.delete(projection_shards).where(projection_shards.c.name == name))
    connection.execute(
        sa.update(projection_state).where(projection_state.c.name == name).values(shards=shards)
    )
    if shards > 1:
        connection.execute(
            sa.insert(projection_shards),
            [
                {"name": name, "generation": generation, "shard": index, "position": position}
                for index in range(shards)
            ],
        )


def shard_position(
    connection: sa.Connection, name: str, generation: int, index: int, *, lock: bool = False
) -> int | None:
    """One shard's checkpoint (None: no such shard of that generation); ``lock``: FOR UPDATE."""
    statement = sa.select(projection_shards.c.position).where(
        projection_shards.c.name == name,
        projection_shards.c.generation == generation,
        projection_shards.c.shard == index,
    )
    if lock:
        statement = statement.with_for_update()
    found = connection.execute(statement).scalar()
    return None if found is None else int(found)


def advance_shard(
    connection: sa.Connection, name: str, generation: int, index: int, old: int, new: int
) -> bool:
    """``advance`` for one shard's checkpoint."""
    result = connection.execute(
        sa.update(projection_shards)
        .where(
            projection_shards.c.name == name,
            projection_shards.c.generation == generation,
            projection_shards.c.shard == index,
            projection_shards.c.position == old,
        )
        .values(position=new)
    )
    return result.rowcount == 1


def checkpoint() -> sa.ColumnElement[int]:
    """Per ``projection_state`` row, the position every event up to which is in its live
    generation: ``position``, or the lowest of its shards' checkpoints."""
    lowest = (
        sa.select(sa.func.min(projection_shards.c.position))
        .where(
            projection_shards.c.name == projection_state.c.name,
            projection_shards.c.generation == projection_state.c.live_generation,
        )
        .scalar_subquery()
    )
    return sa.func.coalesce(lowest, projection_state.c.position)


class ProjectionOutdated(DatabaseError):
    """The live tables were made by another version of a projection's code."""


def require_current(connection: sa.Connection, projection: Projection, generation: int) -> None:
    """Refuse to fold into live tables whose columns are not the ones this code writes (a store
    projected by an older stripe-ledger): a rebuild makes them anew from the store."""
    inspector = sa.inspect(connection)
    for table in projection.cached_tables(generation).values():
        found = {column["name"] for column in inspector.get_columns(table.name)}
        if found != set(table.c.keys()):
            raise ProjectionOutdated(
                f"the {projection.name} projection's tables ({table.name}) were made by another "
                f"version of stripe-ledger: run `stripe-ledger rebuild {projection.name}` "
                "(it rebuilds them from the event store beside the live ones)"
            )


def advance(connection: sa.Connection, name: str, generation: int, old: int, new: int) -> bool:
    """Move the checkpoint from ``old`` to ``new``; False if someone else moved it (or the live
    generation changed): the caller must roll back its batch."""
    result = connection.execute(
        sa.update(projection_state)
        .where(
            projection_state.c.name == name,
            projection_state.c.live_generation == generation,
            projection_state.c.position == old,
        )
        .values(position=new)
    )
    return result.rowcount == 1
