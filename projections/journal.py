"""Balances and journal: a double-entry journal of every money movement Stripe reports.

The fold and posting rules are tables in ``journal_rules.py`` and the chart of accounts in
``accounts.py``; this module keeps the tables in line with them. An entry is one movement (a
balance transaction, or what an event alone says of a movement until its balance transaction is
known), identified by a deterministic ``entry_id``. Its postings hold what the root object's
MERGED state implies; a new fact that implies more (a further partial refund, the balance
transaction with its fee) posts the DELTA into ``balances``. So postings and balances are a
function of the merged states alone: the same whatever the arrival order, duplicates included.

Signed amounts: debit positive, credit negative; every entry sums to zero in its currency.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ledger.store import StoredEvent
from projections import bulk
from projections.accounts import CHART_OF_ACCOUNTS
from projections.base import (
    PLATFORM,
    Change,
    Counts,
    Found,
    ObjectKey,
    Projection,
    State,
    account_of,
    scope_columns,
    table_name,
    write_rows,
)
from projections.journal_rules import (
    BALANCE_FACT,
    BT_FACT,
    OPENING_FACT,
    BalanceFields,
    Entry,
    MoneyFacts,
    PayoutFields,
    bt_category,
    fields_as,
    found_root,
    implied_entries,
)
from projections.merge import Fields, MergedState

__all__ = ["CHART_OF_ACCOUNTS", "HANDLERS", "JournalProjection", "implied_entries"]

_CHARGE = (
    "folds into the charge: its capture and refunds (estimated until their balance "
    "transactions are synced), an expanded balance_transaction exactly"
)
_REFUND = "folds the refund into its charge: a refund, and its reversal if it fails"
_DISPUTE = (
    "folds the dispute: its balance transactions exactly, else the withdrawn/reinstated amount"
)
_PAYOUT = (
    "folds the payout: out of the balance at creation, in transit until paid, back if it fails"
)
_FEE = "folds the application fee the platform earned, and its refunds"
_TRANSFER = "folds the transfer to a connected account, and its reversals"
HANDLERS: dict[str, str] = {
    "application_fee.created": _FEE,
    "application_fee.refund.updated": _FEE,
    "application_fee.refunded": _FEE,
    "balance.available": "replaces the Stripe-reported available/pending balance per currency",
    "charge.captured": _CHARGE,
    "charge.expired": _CHARGE,
    "charge.failed": _CHARGE,
    "charge.pending": _CHARGE,
    "charge.refund.updated": _REFUND,
    "charge.refunded": _CHARGE,
    "charge.succeeded": _CHARGE,
    "charge.updated": _CHARGE,
    "charge.dispute.created": _DISPUTE,
    "charge.dispute.updated": _DISPUTE,
    "charge.dispute.closed": _DISPUTE,
    "charge.dispute.funds_withdrawn": _DISPUTE,
    "charge.dispute.funds_reinstated": _DISPUTE,
    "payout.canceled": _PAYOUT,
    "payout.created": _PAYOUT,
    "payout.failed": _PAYOUT,
    "payout.paid": _PAYOUT,
    "payout.reconciliation_completed": _PAYOUT,
    "payout.updated": _PAYOUT,
    "refund.created": _REFUND,
    "refund.failed": _REFUND,
    "refund.updated": _REFUND,
    "transfer.created": _TRANSFER,
    "transfer.reversed": _TRANSFER,
    "transfer.updated": _TRANSFER,
}
# Facts the ledger itself records (balance-sync), not Stripe event types.
FACT_HANDLERS: dict[str, str] = {
    BT_FACT: "posts the balance transaction exactly: gross, each fee, net; pending, then available",
    BALANCE_FACT: "replaces the Stripe-reported available/pending balance per currency",
    OPENING_FACT: "posts the opening balance the ledger starts from",
}
# Entry columns that describe the movement (updated in place when a fact changes them).
ENTRY_META = (
    "posted_at",
    "balance_transaction_id",
    "source_id",
    "automatic_payout_id",
    "exchange_rate",
    "description",
    "estimated",
)


# Objects that are their own journal root (found_root); the others fold into a parent.
_OWN_ROOTS = frozenset({"charge", "dispute", "payout", "application_fee", "transfer"})


class RootKey(NamedTuple):
    """The ``journal_objects`` row of one root (its primary key)."""

    object_type: str
    object_id: str
    account_key: str
    livemode: bool


class JournalProjection(Projection[RootKey]):
    name = "journal"
    handlers = HANDLERS
    fact_handlers = FACT_HANDLERS
    state_table = "journal_objects"
    shared_tables = ("balances",)

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        return {
            "journal_objects": sa.Table(
                table_name("journal_objects", generation),
                metadata,
                sa.Column("object_type", sa.String(32), nullable=False),
                sa.Column("object_id", sa.String(255), nullable=False),
                *scope_columns(),
                sa.Column("state", State, nullable=False),
                sa.PrimaryKeyConstraint("object_type", "object_id", "account_key", "livemode"),
            ),
            "journal_entries": _entries_table(metadata, generation),
            "journal_postings": sa.Table(
                table_name("journal_postings", generation),
                metadata,
                sa.Column("entry_id", sa.String(255), nullable=False),
                *scope_columns(),
                sa.Column("ledger_account", sa.String(32), nullable=False),
                sa.Column("currency", sa.String(8), nullable=False),
                sa.Column("kind", sa.String(32), nullable=False),
                sa.Column("amount", sa.BigInteger, nullable=False),  # debit > 0, credit < 0
                sa.PrimaryKeyConstraint("entry_id", "account_key", "livemode", "ledger_account"),
            ),
            "balances": sa.Table(
                table_name("balances", generation),
                metadata,
                *scope_columns(),
                sa.Column("currency", sa.String(8), nullable=False),
                sa.Column("ledger_account", sa.String(32), nullable=False),
                sa.Column("amount", sa.BigInteger, nullable=False),
                sa.PrimaryKeyConstraint("account_key", "livemode", "currency", "ledger_account"),
            ),
            "stripe_balances": sa.Table(
                table_name("stripe_balances", generation),
                metadata,
                *scope_columns(),
                sa.Column("currency", sa.String(8), nullable=False),
                sa.Column("available", sa.BigInteger, nullable=False),
                sa.Column("pending", sa.BigInteger, nullable=False),
                sa.Column("as_of", sa.BigInteger, nullable=False),  # created of the snapshot
                sa.Column("event_id", sa.String(255), nullable=False),
                sa.PrimaryKeyConstraint("account_key", "livemode", "currency"),
            ),
            "balance_transactions": _balance_transactions_table(metadata, generation),
            "payouts": _payouts_table(metadata, generation),
        }

    def route(self, event: StoredEvent) -> RootKey | None:
        """The roots that are the event's own object (journal_rules.found_root: a charge, a
        dispute, a payout, a fee, a transfer, the balance); a refund's charge, a reversal's
        transfer and the ledger's facts need the payload."""
        kind, account = event.object_type, event.account or PLATFORM
        if event.type in FACT_HANDLERS:
            return None
        if kind == "balance":
            return RootKey("balance", "balance", account, event.livemode)
        if kind in _OWN_ROOTS and isinstance(event.object_id, str):
            return RootKey(kind, event.object_id, account, event.livemode)
        return None

    def snapshot(
        self, event: StoredEvent, payload: dict[str, Any], counts: Counts
    ) -> Found[RootKey] | None:
        found = found_root(event, payload, counts)
        if found is None:
            return None
        root, snapshot = found
        key = RootKey(root.object_type, root.object_id, event.account or PLATFORM, event.livemode)
        return Found(key, snapshot)

    def write(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        changes: list[Change[RootKey]],
        own_rows: bool = False,
    ) -> None:
        rows = [
            {"account": account_of(c.key.account_key), "state": c.after.to_json()} for c in changes
        ]
        write_rows(connection, tables["journal_objects"], changes, rows)
        stripe_balances = [change for change in changes if change.key.object_type == "balance"]
        if stripe_balances:
            _write_stripe_balances(connection, tables["stripe_balances"], stripe_balances)
        moved = [change for change in changes if change.key.object_type != "balance"]
        if moved:
            plan = _plan_postings(connection, tables, moved, own_rows)
            plan.execute(connection, tables)
            _write_balance_transactions(connection, tables["balance_transactions"], moved)
            payouts = [change for change in moved if change.key.object_type == "payout"]
            _write_payouts(connection, tables["payouts"], payouts)
            # Last: the balances are the one kind of row writers beside each other share (the
            # shards); their row locks are held from here to the commit, so as briefly as can be.
            _write_balances(connection, tables["balances"], plan.balance_deltas)


def _entries_table(metadata: sa.MetaData, generation: int) -> sa.Table:
    return sa.Table(
        table_name("journal_entries", generation),
        metadata,
        sa.Column("entry_id", sa.String(255), nullable=False),
        *scope_columns(),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),  # reporting category or own move
        sa.Column("object_type", sa.String(32), nullable=False),  # the root object
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("posted_at", sa.BigInteger),  # when the money moved (unix s)
        sa.Column("balance_transaction_id", sa.String(255)),  # NULL: estimated from events
        sa.Column("source_id", sa.String(255)),
        sa.Column("automatic_payout_id", sa.String(255)),
        sa.Column("exchange_rate", sa.String(32)),  # as Stripe gave it (a rate, not money)
        sa.Column("description", sa.String(255)),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "account_key", "livemode"),
        sa.Index(f"journal_entries_g{generation}_object", "object_type", "object_id"),
    )


def _balance_transactions_table(metadata: sa.MetaData, generation: int) -> sa.Table:
    """Every balance transaction known, in its latest state (Stripe's itemized columns)."""
    return sa.Table(
        table_name("balance_transactions", generation),
        metadata,
        sa.Column("balance_transaction_id", sa.String(255), nullable=False),
        *scope_columns(),
        sa.Column("object_type", sa.String(32), nullable=False),  # the root it folded into
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64)),
        sa.Column("reporting_category", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("net", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("created", sa.BigInteger),
        sa.Column("available_on", sa.BigInteger),
        sa.Column("exchange_rate", sa.String(32)),
        sa.Column("description", sa.String(255)),
        sa.Column("source_id", sa.String(255)),
        sa.Column("automatic_payout_id", sa.String(255)),
        sa.PrimaryKeyConstraint(
            "balance_transaction_id", "account_key", "livemode", "object_type", "object_id"
        ),
    )


def _payouts_table(metadata: sa.MetaData, generation: int) -> sa.Table:
    return sa.Table(
        table_name("payouts", generation),
        metadata,
        sa.Column("payout_id", sa.String(255), nullable=False),
        *scope_columns(),
        sa.Column("currency", sa.String(8)),
        sa.Column("amount", sa.BigInteger),
        sa.Column("status", sa.String(16)),
        sa.Column("automatic", sa.Boolean),
        sa.Column("created", sa.BigInteger),
        sa.Column("arrival_date", sa.BigInteger),
        sa.Column("paid_at", sa.BigInteger),
        sa.PrimaryKeyConstraint("payout_id", "account_key", "livemode"),
    )


def _write_stripe_balances(
    connection: sa.Connection, table: sa.Table, changes: list[Change[RootKey]]
) -> None:
    """Replace each scope's rows by its latest Stripe-reported balance, per currency."""
    rows: list[dict[str, Any]] = []
    scopes: list[dict[str, Any]] = []
    for change in changes:
        account_key, livemode = change.key.account_key, change.key.livemode
        scopes.append({"account_key": account_key, "livemode": livemode})
        created, _rank, event_id = change.after.key
        fields = fields_as(change.after.fields, BalanceFields)
        available, pending = fields.available or {}, fields.pending or {}
        rows.extend(
            {
                "account_key": account_key,
                "livemode": livemode,
                "account": account_of(account_key),
                "currency": currency,
                "available": available.get(currency, 0),
                "pending": pending.get(currency, 0),
                "as_of": created,
                "event_id": event_id,
            }
            for currency in sorted(set(available) | set(pending))
        )
    bulk.delete(connection, table, ("account_key", "livemode"), scopes)
    bulk.insert(connection, table, rows)


def _bt_rows(key: RootKey, state: MergedState[Fields]) -> dict[str, dict[str, Any]]:
    """The balance_transactions rows a root's state implies, by balance transaction id."""
    object_type, object_id, account_key, livemode = key
    fields = state.fields
    if not isinstance(fields, MoneyFacts):  # the opening balance: no balance transactions
        return {}
    payouts = fields.bt_payouts or {}
    rows: dict[str, dict[str, Any]] = {}
    for txn, item in sorted((fields.bts or {}).items()):
        bt = item["v"]
        rows[txn] = {
            "balance_transaction_id": txn,
            "account_key": account_key,
            "livemode": livemode,
            "account": account_of(account_key),
            "object_type": object_type,
            "object_id": object_id,
            "type": bt["type"],
            "reporting_category": bt_category(bt, object_type),
            **{name: bt[name] for name in _BT_VALUES},
            "automatic_payout_id": payouts.get(txn),
        }
    return rows


_BT_VALUES = (
    "currency",
    "amount",
    "fee",
    "net",
    "status",
    "created",
    "available_on",
    "exchange_rate",
    "description",
    "source_id",
)
_BT_KEY = ("balance_transaction_id", "account_key", "livemode", "object_type", "object_id")


def _write_balance_transactions(
    connection: sa.Connection, table: sa.Table, changes: list[Change[RootKey]]
) -> None:
    """Bring the rows of each changed root in line with its balance transactions (they only
    grow: a root never forgets one)."""
    changed: list[dict[str, Any]] = []  # new rows and rows that differ: one upsert
    for change in changes:
        before = _bt_rows(change.key, change.before) if change.before else {}
        changed.extend(
            row for txn, row in _bt_rows(change.key, change.after).items() if before.get(txn) != row
        )
    bulk.upsert(connection, table, _BT_KEY, changed)


def _write_payouts(
    connection: sa.Connection, table: sa.Table, changes: list[Change[RootKey]]
) -> None:
    rows = []
    for change in changes:
        fields = fields_as(change.after.fields, PayoutFields)
        payout = fields.payout["v"] if fields.payout else {}
        rows.append(
            {
                "account": account_of(change.key.account_key),
                "currency": payout.get("currency"),
                "amount": payout.get("amount"),
                "status": fields.status,
                "automatic": payout.get("automatic"),
                "created": fields.created,
                "arrival_date": payout.get("arrival_date"),
                "paid_at": (fields.reached or {}).get("paid"),
            }
        )
    keyed = [
        Change(ObjectKey(c.key.object_id, c.key.account_key, c.key.livemode), c.before, c.after)
        for c in changes
    ]
    # An upsert: a payout root may exist before its first payout event (a synced balance
    # transaction), so a change with a ``before`` does not say whether its payouts row exists.
    write_rows(connection, table, keyed, rows)


# (entry_id, account_key, livemode): the primary key of an entry
EntryKey = tuple[str, str, bool]
# (account_key, livemode, currency, ledger_account): the primary key of a balance
BalanceKey = tuple[str, bool, str, str]


@dataclass
class _PostingPlan:
    """The writes that move a batch's objects' entries to what their merged states imply.
    Collected first, then executed as one bulk statement per table and kind (projections/bulk.py),
    deletes first (an entry whose currency or kind changed is deleted and inserted again under
    the same id). The balance deltas are written by the caller, last."""

    entry_deletes: list[dict[str, Any]] = field(default_factory=list)
    entry_writes: list[dict[str, Any]] = field(default_factory=list)  # new or changed: whole rows
    posting_deletes: list[dict[str, Any]] = field(default_factory=list)
    posting_writes: list[dict[str, Any]] = field(default_factory=list)  # new or changed: whole rows
    balance_deltas: dict[BalanceKey, int] = field(default_factory=dict)

    def move_balance(self, key: BalanceKey, delta: int) -> None:
        self.balance_deltas[key] = self.balance_deltas.get(key, 0) + delta

    def remove_entry(self, key: EntryKey, currency: str, posted: dict[str, int]) -> None:
        entry_id, account_key, livemode = key
        for ledger_account, amount in posted.items():
            self.move_balance((account_key, livemode, currency, ledger_account), -amount)
        where = {"entry_id": entry_id, "account_key": account_key, "livemode": livemode}
        self.entry_deletes.append(where)

    def execute(self, connection: sa.Connection, tables: dict[str, sa.Table]) -> None:
        entries, postings = tables["journal_entries"], tables["journal_postings"]
        # an entry's postings go with it
        bulk.delete(connection, postings, _ENTRY_KEY, self.entry_deletes)
        bulk.delete(connection, entries, _ENTRY_KEY, self.entry_deletes)
        # one upsert per table for the new rows and the changed ones (two round trips before)
        bulk.upsert(connection, entries, _ENTRY_KEY, self.entry_writes)
        bulk.delete(connection, postings, _POSTING_KEY, self.posting_deletes)
        bulk.upsert(connection, postings, _POSTING_KEY, self.posting_writes)


_ENTRY_KEY = ("entry_id", "account_key", "livemode")
_POSTING_KEY = ("entry_id", "account_key", "livemode", "ledger_account")
_BALANCE_KEY = ("account_key", "livemode", "currency", "ledger_account")


def _plan_postings(
    connection: sa.Connection,
    tables: dict[str, sa.Table],
    changes: list[Change[RootKey]],
    own_rows: bool = False,
) -> _PostingPlan:
    """Diff each object's implied entries against the entries and postings stored for it (read
    in bulk, or with ``own_rows`` derived from its ``before`` state), posting the differences:
    postings and balances always follow the merged states."""
    # An object's entries are written with its state: a new object (no ``before``) has none.
    if own_rows:
        existing, posted = _entries_of_states(changes)
    else:
        known = [change.key for change in changes if change.before is not None]
        existing, posted = _stored_entries(connection, tables, known)
    plan = _PostingPlan()
    for change in changes:
        object_type, object_id, account_key, livemode = change.key
        implied = implied_entries(object_type, object_id, change.after.fields)
        stored = existing.get(change.key, {})
        for entry_id, entry in implied.items():
            kind, currency, amounts = entry.kind, entry.currency, entry.amounts
            entry_key = (entry_id, account_key, livemode)
            old = stored.get(entry_id)
            old_postings = posted.get(entry_key, {})
            if old is not None and (old["currency"], old["kind"]) != (currency, kind):
                plan.remove_entry(entry_key, old["currency"], old_postings)
                old, old_postings = None, {}
            meta = _entry_meta(entry)
            if old is None or any(old[name] != value for name, value in meta.items()):
                plan.entry_writes.append(
                    {
                        "entry_id": entry_id,
                        "account_key": account_key,
                        "livemode": livemode,
                        "account": account_of(account_key),
                        "currency": currency,
                        "kind": kind,
                        "object_type": object_type,
                        "object_id": object_id,
                        **meta,
                    }
                )
            for ledger_account in sorted(set(amounts) | set(old_postings)):
                new_amount = amounts.get(ledger_account, 0)
                old_amount = old_postings.get(ledger_account, 0)
                if new_amount == old_amount:
                    continue
                posting_key = (*entry_key, ledger_account)
                if new_amount == 0:
                    plan.posting_deletes.append(_named(_POSTING_KEY, posting_key))
                else:  # a new posting or a changed amount: the whole row, upserted
                    plan.posting_writes.append(
                        {
                            **_named(_POSTING_KEY, posting_key),
                            "account": account_of(account_key),
                            "currency": currency,
                            "kind": kind,
                            "amount": new_amount,
                        }
                    )
                balance_key = (account_key, livemode, currency, ledger_account)
                plan.move_balance(balance_key, new_amount - old_amount)
        for entry_id, old in stored.items():
            if entry_id not in implied:
                entry_key = (entry_id, account_key, livemode)
                plan.remove_entry(entry_key, old["currency"], posted.get(entry_key, {}))
    return plan


def _entry_meta(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in ENTRY_META}


def _named(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(names, values, strict=True))


def _stored_entries(
    connection: sa.Connection, tables: dict[str, sa.Table], keys: list[RootKey]
) -> tuple[dict[RootKey, dict[str, dict[str, Any]]], dict[EntryKey, dict[str, int]]]:
    """The stored entries of the objects ``keys`` (object key -> entry id -> row) and their
    postings (entry key -> ledger account -> amount): two SELECTs per 500 objects."""
    entries, postings = tables["journal_entries"], tables["journal_postings"]
    existing: dict[RootKey, dict[str, dict[str, Any]]] = {}
    entry_keys: list[EntryKey] = []
    object_key = ("object_type", "object_id", "account_key", "livemode")
    columns = tuple(column.name for column in entries.c)
    for row in bulk.select(connection, entries, object_key, keys, columns):
        found = row._mapping
        object_ref = RootKey(*(found[name] for name in object_key))
        existing.setdefault(object_ref, {})[found["entry_id"]] = dict(found)
        entry_keys.append((found["entry_id"], found["account_key"], found["livemode"]))
    posted: dict[EntryKey, dict[str, int]] = {}
    selected = (*_ENTRY_KEY, "ledger_account", "amount")
    for row in bulk.select(connection, postings, _ENTRY_KEY, entry_keys, selected):
        entry_id, account_key, livemode, ledger_account, amount = row
        posted.setdefault((entry_id, account_key, livemode), {})[ledger_account] = amount
    return existing, posted


def _entries_of_states(
    changes: list[Change[RootKey]],
) -> tuple[dict[RootKey, dict[str, dict[str, Any]]], dict[EntryKey, dict[str, int]]]:
    """What ``_stored_entries`` would read for the objects of ``changes``, derived from their
    ``before`` states: in tables this fold's rules alone wrote (a rebuild's new generation),
    an object's entries and postings are those its stored state implies, written with it in
    one transaction. (Reading them back was two SELECTs per batch on the rebuild's writer
    thread, its critical path on a 1,000,000-event store: docs/PERFORMANCE.md.)"""
    existing: dict[RootKey, dict[str, dict[str, Any]]] = {}
    posted: dict[EntryKey, dict[str, int]] = {}
    for change in changes:
        if change.before is None:
            continue
        object_type, object_id, account_key, livemode = change.key
        rows = existing.setdefault(change.key, {})
        implied = implied_entries(object_type, object_id, change.before.fields)
        for entry_id, entry in implied.items():
            rows[entry_id] = {"currency": entry.currency, "kind": entry.kind, **_entry_meta(entry)}
            posted[(entry_id, account_key, livemode)] = dict(entry.amounts)  # no zero amount
    return existing, posted


def _write_balances(
    connection: sa.Connection, balances: sa.Table, deltas: dict[BalanceKey, int]
) -> None:
    """Add the batch's summed deltas to the balances, in the database: ``amount = amount +
    delta`` (INSERT ... ON CONFLICT DO UPDATE), so that writers beside each other (the shards of
    ``project --shard``, a rebuild's workers) commute: no read-modify-write, no lost update, the
    same sum in any order. A balance row exists iff it is non-zero (the ones a delta brought to
    zero are deleted after): the same rows whatever the order events came in. Keys are sorted,
    so two writers lock shared rows in one order (no deadlock)."""
    moved = sorted(key for key, delta in deltas.items() if delta != 0)
    if not moved:
        return
    rows = [
        {**_named(_BALANCE_KEY, key), "account": account_of(key[0]), "amount": deltas[key]}
        for key in moved
    ]
    connection.execute(_balance_upsert(balances, connection.dialect.name), rows)
    zero = [{f"p_{n}": v for n, v in zip(_BALANCE_KEY, key, strict=True)} for key in moved]
    connection.execute(_zero_balances_delete(balances), zero)


@functools.lru_cache(maxsize=64)  # per generation's table: a few
def _balance_upsert(balances: sa.Table, dialect: str) -> Any:
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(balances)
    return insert.on_conflict_do_update(
        index_elements=list(_BALANCE_KEY),
        set_={"amount": balances.c.amount + insert.excluded.amount},
    )


@functools.lru_cache(maxsize=64)
def _zero_balances_delete(balances: sa.Table) -> sa.Delete:
    key = (balances.c[name] == sa.bindparam(f"p_{name}") for name in _BALANCE_KEY)
    return sa.delete(balances).where(*key, balances.c.amount == 0)
