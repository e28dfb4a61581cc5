"""What every projection shares: generation-suffixed tables, scope columns, money checks and the
apply loop (upcast once, skip and count unknown types)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ledger.logs import get_logger
from ledger.store import StoredEvent, Wanted
from projections import bulk
from projections.merge import RANK, UNION_MIN, Fields, MergedState, Snapshot, merge, rule
from projections.shard import Shard
from projections.state_cache import StateCache
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
    failed: int = 0  # events the fold raised on: recorded in projection_failures, skipped
    elsewhere: int = 0  # handled, but the object is another shard's (project --shard)

    def add(self, other: Counts) -> None:
        self.applied += other.applied
        self.skipped += other.skipped
        self.ignored += other.ignored
        self.refused += other.refused
        self.failed += other.failed
        self.elsewhere += other.elsewhere

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
        "amount_refused",
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


# A row key of a projection's state table: its primary key values, in column order.
Key = bulk.Key
K = TypeVar("K", bound=Key)


class ObjectKey(NamedTuple):
    """The state row of one Stripe object of one type (invoices, disputes, payouts)."""

    object_id: str
    account_key: str
    livemode: bool


@dataclass(slots=True)
class Found(Generic[K]):
    """What one event says about one object: the state row it folds into (its key, a
    NamedTuple of the state table's primary key) and the snapshot (its type carries the rules)."""

    key: K
    snapshot: Snapshot[Fields]


@dataclass(slots=True)
class Change(Generic[K]):
    """One object whose merged state a batch changed: ``before`` is None for a new object."""

    key: K
    before: MergedState[Fields] | None
    after: MergedState[Fields]


@dataclass(slots=True)
class Plan(Generic[K]):
    """What folding a batch changes (``Projection.plan``), before anything is written."""

    counts: Counts
    changes: list[Change[K]]


@dataclass(slots=True)
class StatusFields(Fields):
    """The fields every ``ObjectProjection`` object has: its status, and when it reached each."""

    status: str | None = rule(RANK)
    reached: dict[str, int] = rule(UNION_MIN)  # status -> when it was first reached


def account_of(account_key: str) -> str | None:
    return account_key or None


def load_states(
    connection: sa.Connection, table: sa.Table, keys: Sequence[Key]
) -> dict[Key, dict[str, Any]]:
    """The stored states of ``keys``, as stored (JSON; absent keys are left out)."""
    names = tuple(column.name for column in table.primary_key.columns)
    rows = bulk.select(connection, table, names, keys, (*names, "state"))
    return {tuple(row[: len(names)]): row[-1] for row in rows}


def write_rows(
    connection: sa.Connection,
    table: sa.Table,
    changes: Sequence[Change[Any]],
    rows: Sequence[dict[str, Any]],
) -> None:
    """Write each change's row (``rows[i]`` holds the non-key columns of ``changes[i]``) in ONE
    upsert: the objects that existed are updated, the new ones inserted (an UPDATE and an INSERT
    were two round trips per table and batch). The worker holds the projection's checkpoint row
    FOR UPDATE, so nobody else writes here; each key comes once (the batch is grouped by it)."""
    assert len(changes) == len(rows), (len(changes), len(rows))
    key_names = tuple(column.name for column in table.primary_key.columns)
    upserts = [
        {**dict(zip(key_names, change.key, strict=True)), **values}
        for change, values in zip(changes, rows, strict=True)
    ]
    bulk.upsert(connection, table, key_names, upserts)


class Projection(Generic[K]):
    """A fold of the event store into tables suffixed by a generation (``invoices_g1``).

    A batch is folded per object: each handled event becomes a snapshot of one object
    (``snapshot``), the batch's snapshots are grouped by object, the stored states of those
    objects are read in one query, each object's snapshots are merged into its state in memory
    (the merge is order-free, see merge.py), and only the objects whose state changed are
    written back (``write``), in bulk. A handful of statements per batch, not several per event.
    """

    name: ClassVar[str]
    # event type -> what this projection does with it (the catalogue reads this table).
    handlers: ClassVar[Mapping[str, str]]
    # the ledger's own fact types (``ledger.*``, recorded by balance-sync) -> what it does
    fact_handlers: ClassVar[Mapping[str, str]] = {}
    # logical name of the table holding each object's merged state (its primary key = Found.key)
    state_table: ClassVar[str]
    # tables several objects add to (written as deltas the database commutes, so that shards
    # never conflict there; each other table's row belongs to one object, hence to one shard)
    shared_tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._tables: dict[int, dict[str, sa.Table]] = {}

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        """The projection's tables for ``generation``, defined on ``metadata``."""
        raise NotImplementedError

    def snapshot(
        self, event: StoredEvent, payload: dict[str, Any], counts: Counts
    ) -> Found[K] | None:
        """What one (upcast) event says about its object; None when it carries no usable one."""
        raise NotImplementedError

    def write(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        changes: list[Change[K]],
        own_rows: bool = False,
    ) -> None:
        """Bring the tables in line with the changed merged states. ``own_rows``: the tables
        were filled from empty by this fold alone (a rebuild's new generation), so an object's
        rows are what its ``before`` state implies, not rows an older version of the rules
        wrote; a projection may then derive them instead of reading them back."""
        raise NotImplementedError

    def route(self, event: StoredEvent) -> K | None:
        """The key of the object ``event`` folds into, from the event's columns alone (no
        payload), or None when only the payload can tell. A shard skips, undecoded, the events
        routed to another shard; where an event is decoded, the snapshot's key must be this one
        (asserted in ``apply``)."""
        return None

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

    def create_scratch_tables(self, connection: sa.Connection, generation: int) -> None:
        """The generation's tables as TEMPORARY ones (verify's throw-away fold): seen by this
        connection only, and creatable on a read-only SQLite file or by a role without CREATE."""
        tables = self.tables(sa.MetaData(), generation)
        for table in tables.values():
            table._prefixes = ["TEMPORARY"]  # the same columns and indexes, in the temp schema
        next(iter(tables.values())).metadata.create_all(
            connection, tables=list(tables.values()), checkfirst=False
        )

    def drop_tables(self, connection: sa.Connection, generation: int) -> None:
        tables = self.cached_tables(generation)
        next(iter(tables.values())).metadata.drop_all(connection, tables=list(tables.values()))

    def apply(
        self,
        connection: sa.Connection,
        events: Sequence[StoredEvent],
        generation: int,
        payloads: Sequence[dict[str, Any]] | None = None,
        cache: StateCache | None = None,
        shard: Shard | None = None,
        *,
        own_rows: bool = False,
    ) -> Counts:
        """Fold ``events`` into the generation's tables inside the caller's transaction: ``plan``
        then ``write``. ``payloads`` (the upcast payloads of ``events``, see ``upcast_all``)
        saves the upcast when several projections fold the same batch; ``cache`` (a rebuild's)
        saves reading back the states the previous batches wrote; ``shard`` folds only the
        objects that shard owns (see shard.py). ``own_rows``: the tables are a new generation
        written only by this caller (a rebuild's), so the stored entries can be derived from
        the ``before`` states instead of read back (see ``write``)."""
        # A StateCache is only for a writer nobody else writes beside: its tables are its own.
        assert cache is None or own_rows, "a cache given for tables others may write"
        planned = self.plan(connection, events, generation, payloads, cache, shard)
        if planned.changes:
            tables = self.cached_tables(generation)
            self.write(connection, tables, planned.changes, own_rows=own_rows)
            if cache is not None:
                for change in planned.changes:
                    cache.put(change.key, change.after)
        return planned.counts

    def plan(
        self,
        connection: sa.Connection,
        events: Sequence[StoredEvent],
        generation: int,
        payloads: Sequence[dict[str, Any]] | None = None,
        cache: StateCache | None = None,
        shard: Shard | None = None,
    ) -> Plan[K]:
        """The objects whose merged state ``events`` change, before and after: ``connection``
        only reads the stored states of those ``cache`` does not hold. Nothing is written."""
        assert payloads is None or len(payloads) == len(events), "one payload per event"
        counts = Counts()
        grouped: dict[K, list[Found[K]]] = {}
        for index, event in enumerate(events):
            if event.type not in self.handlers and event.type not in self.fact_handlers:
                counts.skipped += 1
                continue
            routed = self.route(event) if shard is not None else None
            if shard is not None and routed is not None and not shard.owns(routed):
                counts.elsewhere += 1  # maybe read undecoded (``wanted``): never looked into
                continue
            assert event.decoded, ("an event this fold needs was read undecoded", event.position)
            payload = (
                payloads[index]
                if payloads is not None
                else upcast(event.payload, event.api_version)
            )
            try:
                found = self.snapshot(event, payload, counts)
            except Exception:
                if shard is not None and not shard.owns_event(event.event_id):
                    counts.elsewhere += 1  # no key: the event id's shard records it
                    continue
                raise
            if found is None:
                counts.ignored += 1
                continue
            # a shard trusts ``route`` for the events it skips: it must name the snapshot's key
            assert routed is None or found.key == routed, (routed, found.key)
            if shard is not None and not shard.owns(found.key):
                counts.elsewhere += 1
                continue
            counts.applied += 1
            grouped.setdefault(found.key, []).append(found)
        if not grouped:
            return Plan(counts, [])
        tables = self.cached_tables(generation)
        return Plan(counts, self._changes(connection, tables, grouped, cache))

    def _changes(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        grouped: dict[K, list[Found[K]]],
        cache: StateCache | None,
    ) -> list[Change[K]]:
        missing = [key for key in grouped if cache is None or key not in cache]
        if cache is not None:  # of those, only a forgotten object may be stored
            missing = [key for key in missing if cache.may_be_stored(key)]
        stored = load_states(connection, tables[self.state_table], missing) if missing else {}
        changes = []
        for key, found in grouped.items():
            before: MergedState[Fields] | None
            if cache is not None and key in cache:
                before = cache.get(key)
            else:
                stored_state = stored.get(key)
                fields_type = type(found[0].snapshot.fields)  # one object: one Fields type
                before = (
                    MergedState.from_json(fields_type, stored_state)
                    if stored_state is not None
                    else None
                )
            after = before
            for item in found:
                after = merge(after, item.snapshot)
            assert after is not None, key
            if after != before:  # an unchanged state implies unchanged rows: nothing to write
                changes.append(Change(key, before, after))
        return changes

    def dump(self, connection: sa.Connection, generation: int) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, in a canonical order (for comparisons and debugging)."""
        result: dict[str, list[dict[str, Any]]] = {}
        for logical, table in self.cached_tables(generation).items():
            rows = [dict(row._mapping) for row in connection.execute(sa.select(table))]
            result[logical] = sorted(
                rows, key=lambda row: json.dumps(row, sort_keys=True, default=str)
            )
        return result


class ObjectProjection(Projection[ObjectKey]):
    """One row per Stripe object of one type, plus each status it reached (invoices, disputes).

    A subclass names the object and its ``Fields`` type (merge rules and lifecycle), and says
    how a payload becomes a snapshot (``object_snapshot``) and which columns derive from the
    merged fields (``derived``); the row is the merged fields that are columns, the derived
    ones, the tie-break key of the latest snapshot and the whole state."""

    object_name: ClassVar[str]  # data.object.object, e.g. "invoice"
    fields_type: ClassVar[type[StatusFields]]
    history_table: ClassVar[str]  # logical name of the status history table
    id_column: ClassVar[str]  # e.g. "invoice_id"

    def object_snapshot(
        self, event: StoredEvent, obj: dict[str, Any], counts: Counts
    ) -> Snapshot[Fields]:
        raise NotImplementedError

    def derived(self, fields: Fields) -> dict[str, Any]:
        """Columns computed from the merged fields (none by default)."""
        return {}

    def route(self, event: StoredEvent) -> ObjectKey | None:
        # the store keeps data.object's ``object`` and ``id`` as columns (upcasters keep both)
        if event.object_type != self.object_name or not isinstance(event.object_id, str):
            return None
        return ObjectKey(event.object_id, event.account or PLATFORM, event.livemode)

    def snapshot(
        self, event: StoredEvent, payload: dict[str, Any], counts: Counts
    ) -> Found[ObjectKey] | None:
        obj = data_object(payload)
        object_id = obj.get("id")
        if obj.get("object") != self.object_name or not isinstance(object_id, str):
            return None  # e.g. invoice.upcoming: no id yet
        key = ObjectKey(object_id, event.account or PLATFORM, event.livemode)
        return Found(key, self.object_snapshot(event, obj, counts))

    def write(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        changes: list[Change[ObjectKey]],
        own_rows: bool = False,
    ) -> None:
        # every row written follows from ``after`` alone: nothing is read back either way
        table = tables[self.state_table]
        columns = [name for name, _rule in self.fields_type.rules() if name in table.c]
        rows = []
        for change in changes:
            fields = change.after.fields
            assert isinstance(fields, self.fields_type), fields
            created, _rank, event_id = change.after.key
            rows.append(
                {
                    **{name: getattr(fields, name) for name in columns},
                    **self.derived(fields),
                    "account": account_of(change.key.account_key),
                    "last_event_id": event_id,
                    "last_event_created": created,
                    "state": change.after.to_json(),
                }
            )
        write_rows(connection, table, changes, rows)
        write_history(connection, tables[self.history_table], self.id_column, changes)


def upcast_all(events: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    """Every event's payload in the newest shape, once for all projections of a batch (an
    event read undecoded, which no projection of the reader needs, keeps its empty payload)."""
    return [
        upcast(event.payload, event.api_version) if event.decoded else event.payload
        for event in events
    ]


def wanted(projections: Sequence[Projection[Any]], shard: Shard | None = None) -> Wanted:
    """The store reader's filter for ``projections`` (and ``shard``): an event is decoded only
    when one of them handles its type and, for a shard, the object it folds into may be the
    shard's (``Projection.route``). Most of a demo store's events are of types no projection
    folds (payment intents, customers, subscriptions), and a shard's are mostly another's."""
    handled = [(p, frozenset(p.handlers) | frozenset(p.fact_handlers)) for p in projections]
    every_type = frozenset().union(*(types for _p, types in handled))
    if shard is None:  # one set lookup per event: no routing to ask about
        return Wanted(every_type)

    def needs(event: StoredEvent) -> bool:
        for projection, types in handled:
            if event.type not in types:
                continue
            routed = projection.route(event)
            if routed is None or shard.owns(routed):
                return True
        return False

    return Wanted(every_type, needs)


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


def write_history(
    connection: sa.Connection,
    history: sa.Table,
    id_column: str,
    changes: Sequence[Change[ObjectKey]],
) -> None:
    """Bring each changed object's history rows in line with its merged ``reached`` map
    (status -> first time): a function of the merged state, so the same whatever the order
    events came in. Only the differences are written (new statuses, earlier times)."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for change in changes:
        object_id, account_key, livemode = change.key
        key = {id_column: object_id, "account_key": account_key, "livemode": livemode}
        before = _reached(change.before) if change.before else {}
        after = _reached(change.after)
        for status, when in sorted(after.items()):
            if status not in before:
                inserts.append(
                    {
                        **key,
                        "account": account_of(account_key),
                        "status": status,
                        "reached_at": when,
                    }
                )
            elif before[status] != when:
                updates.append({**key, "status": status, "reached_at": when})
        deletes.extend({**key, "status": status} for status in before if status not in after)
    history_key = (id_column, "account_key", "livemode", "status")
    bulk.delete(connection, history, history_key, deletes)
    bulk.update(connection, history, history_key, ("reached_at",), updates)
    bulk.insert(connection, history, inserts)


def _reached(state: MergedState[Fields]) -> dict[str, int]:
    assert isinstance(state.fields, StatusFields), state.fields
    return state.fields.reached
