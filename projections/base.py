"""What every projection shares: generation-suffixed tables, scope columns, money checks and the
apply loop (upcast once, skip and count unknown types)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ledger.logs import get_logger
from ledger.store import StoredEvent
from projections.upcast import upcast

log = get_logger("projections")

State = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
PLATFORM = ""  # account_key of the platform account (account IS NULL)


@dataclass
class Counts:
    """Per-batch counts of one projection."""

    applied: int = 0  # events folded into the projection
    skipped: int = 0  # event types this projection does not handle (never an error)
    ignored: int = 0  # handled type, but no usable object (no id, not the expected object)
    refused: int = 0  # non-integer money amounts left out (never stored as floats)

    def add(self, other: Counts) -> None:
        self.applied += other.applied
        self.skipped += other.skipped
        self.ignored += other.ignored
        self.refused += other.refused

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def table_name(base: str, generation: int) -> str:
    assert isinstance(generation, int) and generation >= 1, generation
    return f"{base}_g{generation}"


def scope_columns() -> list[sa.Column[Any]]:
    """Every row carries its Connect account and mode; both are part of every key.

    ``account`` is NULL for the platform; ``account_key`` is the same value with '' for the
    platform, because a NULL cannot be part of a primary key.
    """
    return [
        sa.Column("account_key", sa.String(255), nullable=False),
        sa.Column("livemode", sa.Boolean, nullable=False),
        sa.Column("account", sa.String(255)),
    ]


def scope(event: StoredEvent) -> dict[str, Any]:
    return {
        "account_key": event.account or PLATFORM,
        "livemode": event.livemode,
        "account": event.account,
    }


def data_object(payload: Mapping[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def money(value: Any, counts: Counts, event: StoredEvent, field: str) -> int | None:
    """An amount in minor units, or None. Anything but an integer (a float such as 900.0, a
    string) is refused: counted and logged, never stored."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    counts.refused += 1
    log.warning(
        "non-integer amount refused",
        event_id=event.event_id,
        position=event.position,
        field=field,
        value=repr(value)[:40],
    )
    return None


def timestamp(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def string(value: Any) -> str | None:
    """A Stripe id field that may be expanded into an object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def save(
    connection: sa.Connection, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Upsert by primary key, portable across SQLite and PostgreSQL (the caller holds the lock)."""
    update, insert = _upsert_statements(table, tuple(key), tuple(values))
    params = {f"k_{name}": value for name, value in key.items()}
    params.update((f"v_{name}", value) for name, value in values.items())
    if connection.execute(update, params).rowcount == 0:
        connection.execute(insert, {**key, **values})


def load_state(
    connection: sa.Connection, table: sa.Table, key: Mapping[str, Any]
) -> dict[str, Any] | None:
    statement = _state_statement(table, tuple(key))
    state = connection.execute(statement, {f"k_{n}": v for n, v in key.items()}).scalar()
    return dict(state) if state is not None else None


# The statements of save() and load_state() are built once per (table, key columns, value
# columns) with bound parameters: building and cache-keying a fresh expression for every event
# cost more than executing it. (Tables are per generation; a dropped generation's few entries
# stay here until the process ends.)
@functools.lru_cache(maxsize=1024)
def _upsert_statements(
    table: sa.Table, key: tuple[str, ...], values: tuple[str, ...]
) -> tuple[sa.Update, sa.Insert]:
    condition = sa.and_(*(table.c[name] == sa.bindparam(f"k_{name}") for name in key))
    update = sa.update(table).where(condition).values({n: sa.bindparam(f"v_{n}") for n in values})
    return update, sa.insert(table)


@functools.lru_cache(maxsize=1024)
def _state_statement(table: sa.Table, key: tuple[str, ...]) -> sa.Select[Any]:
    condition = sa.and_(*(table.c[name] == sa.bindparam(f"k_{name}") for name in key))
    return sa.select(table.c.state).where(condition)


class Projection:
    """A fold of the event store into tables suffixed by a generation (``invoices_g1``)."""

    name: ClassVar[str]
    # event type -> what this projection does with it (the catalogue reads this table).
    handlers: ClassVar[Mapping[str, str]]

    def __init__(self) -> None:
        self._tables: dict[int, dict[str, sa.Table]] = {}

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        """The projection's tables for ``generation``, defined on ``metadata``."""
        raise NotImplementedError

    def views(self) -> tuple[str, ...]:
        """Logical table names that get a stable ``proj_<name>`` view of the live generation."""
        return tuple(self.tables(sa.MetaData(), 1))

    def cached_tables(self, generation: int) -> dict[str, sa.Table]:
        if generation not in self._tables:
            self._tables[generation] = self.tables(sa.MetaData(), generation)
        return self._tables[generation]

    def create_tables(self, connection: sa.Connection, generation: int) -> None:
        """Create the generation's tables (a no-op for those that exist)."""
        tables = self.cached_tables(generation)
        next(iter(tables.values())).metadata.create_all(connection, tables=list(tables.values()))

    def drop_tables(self, connection: sa.Connection, generation: int) -> None:
        tables = self.cached_tables(generation)
        next(iter(tables.values())).metadata.drop_all(connection, tables=list(tables.values()))

    def apply(
        self, connection: sa.Connection, events: Sequence[StoredEvent], generation: int
    ) -> Counts:
        """Fold ``events`` into the generation's tables inside the caller's transaction."""
        tables = self.cached_tables(generation)
        counts = Counts()
        for event in events:
            if event.type not in self.handlers:
                counts.skipped += 1
                continue
            payload = upcast(event.payload, event.api_version)
            if self.apply_event(connection, tables, event, payload, counts):
                counts.applied += 1
            else:
                counts.ignored += 1
        return counts

    def apply_event(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        event: StoredEvent,
        payload: dict[str, Any],
        counts: Counts,
    ) -> bool:
        """Fold one (upcast) event; False when it carries no usable object."""
        raise NotImplementedError

    def dump(self, connection: sa.Connection, generation: int) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, in a canonical order (for comparisons and debugging)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for logical, table in self.cached_tables(generation).items():
            rows = [dict(row._mapping) for row in connection.execute(sa.select(table))]
            result[logical] = sorted(
                rows, key=lambda row: json.dumps(row, sort_keys=True, default=str)
            )
        return result


def balance_transaction(value: Any, counts: Counts, event: StoredEvent) -> dict[str, Any] | None:
    """An expanded BalanceTransaction reduced to its money fields, or None (an unexpanded id,
    or one whose amount/fee is not an integer: refused and counted)."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        return None
    amount = money(value.get("amount"), counts, event, "balance_transaction.amount")
    fee = money(value.get("fee", 0), counts, event, "balance_transaction.fee")
    currency = value.get("currency")
    if amount is None or fee is None or not isinstance(currency, str):
        return None
    return {
        "amount": amount,
        "fee": fee,
        "currency": currency.lower(),
        "type": value.get("type") if isinstance(value.get("type"), str) else None,
    }


def balance_transactions(values: Any, counts: Counts, event: StoredEvent) -> dict[str, Any]:
    """Expanded balance transactions by id: each id counts once, however often it is seen."""
    found: dict[str, Any] = {}
    for value in values if isinstance(values, list) else [values]:
        reduced = balance_transaction(value, counts, event)
        if reduced is not None:
            found[value["id"]] = reduced
    return found


def currency_of(obj: dict[str, Any]) -> str | None:
    currency = obj.get("currency")
    return currency.lower() if isinstance(currency, str) else None


def status_history_table(
    metadata: sa.MetaData, name: str, id_column: str, generation: int
) -> sa.Table:
    """``<name>_g<generation>``: each status an object reached, once, with when it reached it."""
    return sa.Table(
        table_name(name, generation),
        metadata,
        sa.Column(id_column, sa.String(255), nullable=False),
        *scope_columns(),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reached_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(id_column, "account_key", "livemode", "status"),
    )


def replace_history(
    connection: sa.Connection,
    history: sa.Table,
    key: Mapping[str, Any],
    account: str | None,
    reached: Mapping[str, int],
) -> None:
    """Rewrite an object's history rows from its merged ``reached`` map (status -> first time):
    a function of the merged state, so the same whatever the order events came in."""
    condition = sa.and_(*(history.c[name] == value for name, value in key.items()))
    connection.execute(sa.delete(history).where(condition))
    rows = [
        {**key, "account": account, "status": status, "reached_at": when}
        for status, when in sorted(reached.items())
    ]
    if rows:
        connection.execute(sa.insert(history), rows)
