"""Balances and journal: a double-entry journal of every money movement the events reveal.

An entry is one movement of one object (a charge's capture, its refunds, one dispute balance
transaction, a payout, its reversal), identified by a deterministic ``entry_id``. Its postings
hold what the object's MERGED state implies; a new snapshot that implies more (a further partial
refund) posts the DELTA into the same entry and into ``balances``. So postings and balances are a
function of the merged states alone: the same whatever the arrival order, duplicates included.

Signed amounts: debit positive, credit negative; every entry sums to zero in its currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger.store import StoredEvent
from projections import bulk
from projections.base import (
    PLATFORM,
    Change,
    Counts,
    Found,
    Key,
    Projection,
    State,
    account_of,
    balance_transactions,
    currency_of,
    data_object,
    money,
    scope_columns,
    table_name,
    timestamp,
    write_rows,
)
from projections.disputes import DISPUTE_LIFECYCLE
from projections.merge import (
    LATEST,
    MAX,
    MIN,
    RANK,
    UNION,
    UNION_MIN,
    Lifecycle,
    Rules,
    Snapshot,
    tie_key,
)

# Chart of accounts (ledger accounts; debit-normal assets/expenses, credit-normal revenue).
STRIPE_BALANCE = "stripe_balance"  # asset: funds held by Stripe
BANK = "bank"  # asset: paid out to the bank account
REVENUE = "revenue"  # income: captured charge amounts
REFUNDS = "refunds"  # contra-revenue: refunded amounts
DISPUTE_LOSSES = "dispute_losses"  # expense: withdrawn minus reinstated dispute amounts
DISPUTE_FEES = "dispute_fees"  # expense: dispute fees (net of reversed fees)
PROCESSING_FEES = "processing_fees"  # expense: Stripe fees on charges
CHART_OF_ACCOUNTS = (
    STRIPE_BALANCE,
    BANK,
    REVENUE,
    REFUNDS,
    DISPUTE_LOSSES,
    DISPUTE_FEES,
    PROCESSING_FEES,
)

CHARGE_LIFECYCLE = Lifecycle({"pending": 0, "succeeded": 1, "failed": 1})
PAYOUT_LIFECYCLE = Lifecycle({"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3})

# The merge rules per object type, one row per field.
CHARGE_RULES: Rules = (
    ("status", RANK),
    ("currency", LATEST),
    ("amount_captured", MAX),
    ("amount_refunded", MAX),
    ("balance_transactions", UNION),  # expanded charge.balance_transaction: its fee
    ("created", MIN),  # the day the reports file the charge's volume under
)
DISPUTE_RULES: Rules = (
    ("status", RANK),
    ("currency", LATEST),
    ("amount", LATEST),
    ("balance_transactions", UNION),  # withdrawal / reinstatement, each txn id once
    ("withdrawn_seen", MAX),
    ("reinstated_seen", MAX),
    ("created", MIN),
)
PAYOUT_RULES: Rules = (
    ("status", RANK),
    ("amount", LATEST),
    ("currency", LATEST),
    ("reached", UNION_MIN),  # status -> first seen: "paid then failed" needs both
    ("created", MIN),
)
BALANCE_RULES: Rules = (
    ("available", LATEST),  # currency -> amount, from the latest balance.available
    ("pending", LATEST),
)

_CHARGE = (
    "folds the charge: captured amount (revenue), amount_refunded (refunds), "
    "fees of an expanded balance_transaction"
)
_DISPUTE = "folds the dispute's balance transactions: withdrawals, reinstatements, dispute fees"
_PAYOUT = "folds the payout: posts it once paid, reverses it if a paid payout fails or is canceled"
HANDLERS: dict[str, str] = {
    "balance.available": "replaces the Stripe-reported available/pending balance per currency",
    "charge.captured": _CHARGE,
    "charge.expired": _CHARGE,
    "charge.failed": _CHARGE,
    "charge.pending": _CHARGE,
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
}

# entry_id -> (kind, currency, {ledger account: signed amount})
Implied = dict[str, tuple[str, str, dict[str, int]]]


def _status(obj: dict[str, Any]) -> str | None:
    return obj.get("status") if isinstance(obj.get("status"), str) else None


def _snapshot(
    event: StoredEvent, obj: dict[str, Any], counts: Counts
) -> tuple[str, Snapshot, Rules, Lifecycle | None] | None:
    """(object type, snapshot, rules, lifecycle) of a journal-relevant object, or None."""
    kind = obj.get("object")
    status = _status(obj)
    if kind == "charge":
        bt = obj.get("balance_transaction")
        fields: dict[str, Any] = {
            "status": status,
            "currency": currency_of(obj),
            "amount_captured": money(
                obj.get("amount_captured"), counts, event, "charge.amount_captured"
            ),
            "amount_refunded": money(
                obj.get("amount_refunded"), counts, event, "charge.amount_refunded"
            ),
            "balance_transactions": balance_transactions(bt, counts, event)
            if isinstance(bt, dict)
            else {},
            "created": timestamp(obj.get("created")),
        }
        return "charge", _keyed(event, fields, CHARGE_LIFECYCLE), CHARGE_RULES, CHARGE_LIFECYCLE
    if kind == "dispute":
        fields = {
            "status": status,
            "currency": currency_of(obj),
            "amount": money(obj.get("amount"), counts, event, "dispute.amount"),
            "balance_transactions": balance_transactions(
                obj.get("balance_transactions"), counts, event
            ),
            "withdrawn_seen": event.type == "charge.dispute.funds_withdrawn",
            "reinstated_seen": event.type == "charge.dispute.funds_reinstated",
            "created": timestamp(obj.get("created")),
        }
        return "dispute", _keyed(event, fields, DISPUTE_LIFECYCLE), DISPUTE_RULES, DISPUTE_LIFECYCLE
    if kind == "payout":
        fields = {
            "status": status,
            "amount": money(obj.get("amount"), counts, event, "payout.amount"),
            "currency": currency_of(obj),
            "reached": {status: event.created} if status else {},
            "created": timestamp(obj.get("created")),
        }
        return "payout", _keyed(event, fields, PAYOUT_LIFECYCLE), PAYOUT_RULES, PAYOUT_LIFECYCLE
    if kind == "balance":
        fields = {
            "available": _funds(obj.get("available"), counts, event, "balance.available"),
            "pending": _funds(obj.get("pending"), counts, event, "balance.pending"),
        }
        return "balance", _keyed(event, fields, None), BALANCE_RULES, None
    return None


def _keyed(event: StoredEvent, fields: dict[str, Any], lifecycle: Lifecycle | None) -> Snapshot:
    rank = lifecycle.rank(fields.get("status")) if lifecycle else 0
    return Snapshot(tie_key(event.created, rank, event.event_id), fields)


def _funds(values: Any, counts: Counts, event: StoredEvent, field: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in values if isinstance(values, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("currency"), str):
            continue
        amount = money(item.get("amount"), counts, event, field)
        if amount is not None:
            currency = item["currency"].lower()
            totals[currency] = totals.get(currency, 0) + amount
    return totals


def _movement(
    kind: str, currency: str, *postings: tuple[str, int]
) -> tuple[str, str, dict[str, int]]:
    return kind, currency, {account: amount for account, amount in postings if amount != 0}


def implied_entries(object_type: str, object_id: str, fields: dict[str, Any]) -> Implied:
    """Posting rules: the entries an object's merged state implies (deterministic ids)."""
    entries: Implied = {}
    if object_type == "charge":
        currency = fields["currency"]
        captured = fields["amount_captured"] or 0
        refunded = fields["amount_refunded"] or 0
        if currency and captured:
            entries[f"{object_id}:capture"] = _movement(
                "capture", currency, (STRIPE_BALANCE, captured), (REVENUE, -captured)
            )
        if currency and refunded:
            entries[f"{object_id}:refund"] = _movement(
                "refund", currency, (REFUNDS, refunded), (STRIPE_BALANCE, -refunded)
            )
        for txn, bt in sorted((fields["balance_transactions"] or {}).items()):
            entries[f"{object_id}:fee:{txn}"] = _movement(
                "fee", bt["currency"], (PROCESSING_FEES, bt["fee"]), (STRIPE_BALANCE, -bt["fee"])
            )
    elif object_type == "dispute":
        bts = fields["balance_transactions"] or {}
        for txn, bt in sorted(bts.items()):
            kind = "dispute_withdrawal" if bt["amount"] < 0 else "dispute_reinstatement"
            entries[f"{object_id}:{txn}"] = _movement(
                kind,
                bt["currency"],
                (STRIPE_BALANCE, bt["amount"] - bt["fee"]),
                (DISPUTE_LOSSES, -bt["amount"]),
                (DISPUTE_FEES, bt["fee"]),
            )
        amount, currency = fields["amount"] or 0, fields["currency"]
        if not bts and currency and amount:  # no balance transactions known: the amount
            if fields["withdrawn_seen"]:
                entries[f"{object_id}:withdrawal"] = _movement(
                    "dispute_withdrawal",
                    currency,
                    (DISPUTE_LOSSES, amount),
                    (STRIPE_BALANCE, -amount),
                )
            if fields["reinstated_seen"]:
                entries[f"{object_id}:reinstatement"] = _movement(
                    "dispute_reinstatement",
                    currency,
                    (STRIPE_BALANCE, amount),
                    (DISPUTE_LOSSES, -amount),
                )
    elif object_type == "payout":
        amount, currency = fields["amount"] or 0, fields["currency"]
        reached = fields["reached"] or {}
        paid = "paid" in reached or fields["status"] == "paid"
        if paid and currency and amount:
            entries[f"{object_id}:payout"] = _movement(
                "payout", currency, (BANK, amount), (STRIPE_BALANCE, -amount)
            )
            if fields["status"] in ("failed", "canceled"):
                entries[f"{object_id}:payout_reversal"] = _movement(
                    "payout_reversal", currency, (STRIPE_BALANCE, amount), (BANK, -amount)
                )
    return {entry_id: entry for entry_id, entry in entries.items() if entry[2]}


class JournalProjection(Projection):
    name = "journal"
    handlers = HANDLERS
    state_table = "journal_objects"

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        objects = sa.Table(
            table_name("journal_objects", generation),
            metadata,
            sa.Column("object_type", sa.String(32), nullable=False),
            sa.Column("object_id", sa.String(255), nullable=False),
            *scope_columns(),
            sa.Column("state", State, nullable=False),
            sa.PrimaryKeyConstraint("object_type", "object_id", "account_key", "livemode"),
        )
        entries = sa.Table(
            table_name("journal_entries", generation),
            metadata,
            sa.Column("entry_id", sa.String(255), nullable=False),
            *scope_columns(),
            sa.Column("currency", sa.String(8), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("object_type", sa.String(32), nullable=False),
            sa.Column("object_id", sa.String(255), nullable=False),
            sa.Column("created", sa.BigInteger),  # the object's own created (unix s)
            sa.PrimaryKeyConstraint("entry_id", "account_key", "livemode"),
            sa.Index(f"journal_entries_g{generation}_object", "object_type", "object_id"),
        )
        postings = sa.Table(
            table_name("journal_postings", generation),
            metadata,
            sa.Column("entry_id", sa.String(255), nullable=False),
            *scope_columns(),
            sa.Column("ledger_account", sa.String(32), nullable=False),
            sa.Column("currency", sa.String(8), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("amount", sa.BigInteger, nullable=False),  # debit > 0, credit < 0
            sa.PrimaryKeyConstraint("entry_id", "account_key", "livemode", "ledger_account"),
        )
        balances = sa.Table(
            table_name("balances", generation),
            metadata,
            *scope_columns(),
            sa.Column("currency", sa.String(8), nullable=False),
            sa.Column("ledger_account", sa.String(32), nullable=False),
            sa.Column("amount", sa.BigInteger, nullable=False),
            sa.PrimaryKeyConstraint("account_key", "livemode", "currency", "ledger_account"),
        )
        stripe_balances = sa.Table(
            table_name("stripe_balances", generation),
            metadata,
            *scope_columns(),
            sa.Column("currency", sa.String(8), nullable=False),
            sa.Column("available", sa.BigInteger, nullable=False),
            sa.Column("pending", sa.BigInteger, nullable=False),
            sa.Column(
                "as_of", sa.BigInteger, nullable=False
            ),  # created of the latest balance.available
            sa.Column("event_id", sa.String(255), nullable=False),
            sa.PrimaryKeyConstraint("account_key", "livemode", "currency"),
        )
        return {
            "journal_objects": objects,
            "journal_entries": entries,
            "journal_postings": postings,
            "balances": balances,
            "stripe_balances": stripe_balances,
        }

    def snapshot(self, event: StoredEvent, payload: dict[str, Any], counts: Counts) -> Found | None:
        obj = data_object(payload)
        found = _snapshot(event, obj, counts)
        if found is None:
            return None
        object_type, snapshot, rules, lifecycle = found
        object_id = "balance" if object_type == "balance" else obj.get("id")
        if not isinstance(object_id, str):
            return None
        key = (object_type, object_id, event.account or PLATFORM, event.livemode)
        return Found(key, snapshot, rules, lifecycle)

    def write(
        self, connection: sa.Connection, tables: dict[str, sa.Table], changes: list[Change]
    ) -> None:
        rows = [{"account": account_of(c.key[2]), "state": c.after} for c in changes]
        write_rows(connection, tables["journal_objects"], changes, rows)
        stripe_balances = [change for change in changes if change.key[0] == "balance"]
        if stripe_balances:
            _write_stripe_balances(connection, tables["stripe_balances"], stripe_balances)
        moved = [change for change in changes if change.key[0] != "balance"]
        if moved:
            plan = _plan_postings(connection, tables, moved)
            plan.execute(connection, tables)


def _write_stripe_balances(
    connection: sa.Connection, table: sa.Table, changes: list[Change]
) -> None:
    """Replace each scope's rows by its latest Stripe-reported balance, per currency."""
    rows: list[dict[str, Any]] = []
    scopes: list[dict[str, Any]] = []
    for change in changes:
        _type, _id, account_key, livemode = change.key
        scopes.append({"account_key": account_key, "livemode": livemode})
        created, _rank, event_id = change.after["key"]
        fields = change.after["fields"]
        available, pending = fields["available"] or {}, fields["pending"] or {}
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


# (entry_id, account_key, livemode): the primary key of an entry
EntryKey = tuple[str, str, bool]
# (account_key, livemode, currency, ledger_account): the primary key of a balance
BalanceKey = tuple[str, bool, str, str]


@dataclass
class _PostingPlan:
    """The writes that move a batch's objects' entries to what their merged states imply.
    Collected first, then executed as one bulk statement per table and kind (projections/bulk.py),
    deletes first (an entry whose currency or kind changed is deleted and inserted again under
    the same id)."""

    entry_deletes: list[dict[str, Any]] = field(default_factory=list)
    entry_inserts: list[dict[str, Any]] = field(default_factory=list)
    entry_updates: list[dict[str, Any]] = field(default_factory=list)
    posting_deletes: list[dict[str, Any]] = field(default_factory=list)
    posting_updates: list[dict[str, Any]] = field(default_factory=list)
    posting_inserts: list[dict[str, Any]] = field(default_factory=list)
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
        bulk.insert(connection, entries, self.entry_inserts)
        bulk.update(connection, entries, _ENTRY_KEY, ("created",), self.entry_updates)
        bulk.delete(connection, postings, _POSTING_KEY, self.posting_deletes)
        bulk.update(connection, postings, _POSTING_KEY, ("amount",), self.posting_updates)
        bulk.insert(connection, postings, self.posting_inserts)
        _write_balances(connection, tables["balances"], self.balance_deltas)


_ENTRY_KEY = ("entry_id", "account_key", "livemode")
_POSTING_KEY = ("entry_id", "account_key", "livemode", "ledger_account")
_BALANCE_KEY = ("account_key", "livemode", "currency", "ledger_account")


def _plan_postings(
    connection: sa.Connection, tables: dict[str, sa.Table], changes: list[Change]
) -> _PostingPlan:
    """Diff each object's implied entries against the entries and postings stored for it (read
    in bulk), posting the differences: postings and balances always follow the merged states."""
    existing, posted = _stored_entries(connection, tables, [change.key for change in changes])
    plan = _PostingPlan()
    for change in changes:
        object_type, object_id, account_key, livemode = change.key
        fields = change.after["fields"]
        implied = implied_entries(object_type, object_id, fields)
        stored = existing.get(change.key, {})
        for entry_id, (kind, currency, amounts) in implied.items():
            assert sum(amounts.values()) == 0, (entry_id, amounts)
            entry_key = (entry_id, account_key, livemode)
            old = stored.get(entry_id)
            old_postings = posted.get(entry_key, {})
            if old is not None and (old["currency"], old["kind"]) != (currency, kind):
                plan.remove_entry(entry_key, old["currency"], old_postings)
                old, old_postings = None, {}
            if old is None:
                plan.entry_inserts.append(
                    {
                        "entry_id": entry_id,
                        "account_key": account_key,
                        "livemode": livemode,
                        "account": account_of(account_key),
                        "currency": currency,
                        "kind": kind,
                        "object_type": object_type,
                        "object_id": object_id,
                        "created": fields.get("created"),
                    }
                )
            elif old["created"] != fields.get("created"):
                plan.entry_updates.append(
                    {**_named(_ENTRY_KEY, entry_key), "created": fields.get("created")}
                )
            for ledger_account in sorted(set(amounts) | set(old_postings)):
                new_amount = amounts.get(ledger_account, 0)
                old_amount = old_postings.get(ledger_account, 0)
                if new_amount == old_amount:
                    continue
                posting_key = (*entry_key, ledger_account)
                if new_amount == 0:
                    plan.posting_deletes.append(_named(_POSTING_KEY, posting_key))
                elif ledger_account in old_postings:
                    plan.posting_updates.append(
                        {**_named(_POSTING_KEY, posting_key), "amount": new_amount}
                    )
                else:
                    plan.posting_inserts.append(
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


def _named(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(names, values, strict=True))


def _stored_entries(
    connection: sa.Connection, tables: dict[str, sa.Table], keys: list[Key]
) -> tuple[dict[Key, dict[str, dict[str, Any]]], dict[EntryKey, dict[str, int]]]:
    """The stored entries of the objects ``keys`` (object key -> entry id -> row) and their
    postings (entry key -> ledger account -> amount): two SELECTs per 500 objects."""
    entries, postings = tables["journal_entries"], tables["journal_postings"]
    existing: dict[Key, dict[str, dict[str, Any]]] = {}
    entry_keys: list[EntryKey] = []
    object_key = ("object_type", "object_id", "account_key", "livemode")
    columns = tuple(column.name for column in entries.c)
    for row in bulk.select(connection, entries, object_key, keys, columns):
        found = row._mapping
        object_ref = tuple(found[name] for name in object_key)
        existing.setdefault(object_ref, {})[found["entry_id"]] = dict(found)
        entry_keys.append((found["entry_id"], found["account_key"], found["livemode"]))
    posted: dict[EntryKey, dict[str, int]] = {}
    selected = (*_ENTRY_KEY, "ledger_account", "amount")
    for row in bulk.select(connection, postings, _ENTRY_KEY, entry_keys, selected):
        entry_id, account_key, livemode, ledger_account, amount = row
        posted.setdefault((entry_id, account_key, livemode), {})[ledger_account] = amount
    return existing, posted


def _write_balances(
    connection: sa.Connection, balances: sa.Table, deltas: dict[BalanceKey, int]
) -> None:
    """Add the batch's summed deltas to the balances (a balance is a sum: the order of the
    deltas does not matter). A balance row exists iff it is non-zero: the same rows whatever
    the order events came in."""
    moved = sorted(key for key, delta in deltas.items() if delta != 0)
    if not moved:
        return
    selected = (*_BALANCE_KEY, "amount")
    current = {
        tuple(row[:4]): row[4]
        for row in bulk.select(connection, balances, _BALANCE_KEY, moved, selected)
    }
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for key in moved:
        amount = current.get(key, 0) + deltas[key]
        if key not in current:
            inserts.append(
                {
                    **_named(_BALANCE_KEY, key),
                    "account": account_of(key[0]),
                    "amount": amount,
                }
            )
        elif amount == 0:
            deletes.append(_named(_BALANCE_KEY, key))
        else:
            updates.append({**_named(_BALANCE_KEY, key), "amount": amount})
    bulk.delete(connection, balances, _BALANCE_KEY, deletes)
    bulk.update(connection, balances, _BALANCE_KEY, ("amount",), updates)
    bulk.insert(connection, balances, inserts)
