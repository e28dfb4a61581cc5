"""Balances and journal: a double-entry journal of every money movement the events reveal.

An entry is one movement of one object (a charge's capture, its refunds, one dispute balance
transaction, a payout, its reversal), identified by a deterministic ``entry_id``. Its postings
hold what the object's MERGED state implies; a new snapshot that implies more (a further partial
refund) posts the DELTA into the same entry and into ``balances``. So postings and balances are a
function of the merged states alone: the same whatever the arrival order, duplicates included.

Signed amounts: debit positive, credit negative; every entry sums to zero in its currency.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ledger.store import StoredEvent
from projections.base import (
    Counts,
    Projection,
    State,
    balance_transactions,
    currency_of,
    data_object,
    load_state,
    money,
    save,
    scope,
    scope_columns,
    table_name,
    timestamp,
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
    merge,
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

    def apply_event(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        event: StoredEvent,
        payload: dict[str, Any],
        counts: Counts,
    ) -> bool:
        obj = data_object(payload)
        found = _snapshot(event, obj, counts)
        if found is None:
            return False
        object_type, snapshot, rules, lifecycle = found
        object_id = "balance" if object_type == "balance" else obj.get("id")
        if not isinstance(object_id, str):
            return False
        where = scope(event)
        scope_key = {"account_key": where["account_key"], "livemode": where["livemode"]}
        key = {"object_type": object_type, "object_id": object_id, **scope_key}
        objects = tables["journal_objects"]
        state = merge(load_state(connection, objects, key), snapshot, rules, lifecycle)
        save(connection, objects, key, {"account": where["account"], "state": state})
        if object_type == "balance":
            self._stripe_balance(connection, tables["stripe_balances"], where, state)
        else:
            self._post(connection, tables, where, object_type, object_id, state["fields"])
        return True

    def _stripe_balance(
        self,
        connection: sa.Connection,
        table: sa.Table,
        where: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        condition = sa.and_(
            table.c.account_key == where["account_key"], table.c.livemode == where["livemode"]
        )
        connection.execute(sa.delete(table).where(condition))
        created, _rank, event_id = state["key"]
        available, pending = state["fields"]["available"] or {}, state["fields"]["pending"] or {}
        rows = [
            {
                **where,
                "currency": currency,
                "available": available.get(currency, 0),
                "pending": pending.get(currency, 0),
                "as_of": created,
                "event_id": event_id,
            }
            for currency in sorted(set(available) | set(pending))
        ]
        if rows:
            connection.execute(sa.insert(table), rows)

    def _post(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        where: dict[str, Any],
        object_type: str,
        object_id: str,
        fields: dict[str, Any],
    ) -> None:
        """Move the object's entries to what its merged state implies, posting the deltas."""
        entries, postings, balances = (
            tables["journal_entries"],
            tables["journal_postings"],
            tables["balances"],
        )
        in_scope = sa.and_(
            entries.c.object_type == object_type,
            entries.c.object_id == object_id,
            entries.c.account_key == where["account_key"],
            entries.c.livemode == where["livemode"],
        )
        existing = {
            row.entry_id: row for row in connection.execute(sa.select(entries).where(in_scope))
        }
        posted: dict[tuple[str, str], int] = {}
        if existing:
            rows = connection.execute(
                sa.select(postings).where(
                    postings.c.entry_id.in_(list(existing)),
                    postings.c.account_key == where["account_key"],
                    postings.c.livemode == where["livemode"],
                )
            )
            posted = {(row.entry_id, row.ledger_account): row.amount for row in rows}
        implied = implied_entries(object_type, object_id, fields)
        scope_key = {"account_key": where["account_key"], "livemode": where["livemode"]}
        for entry_id, (kind, currency, amounts) in implied.items():
            assert sum(amounts.values()) == 0, (entry_id, amounts)
            old = existing.get(entry_id)
            if old is not None and (old.currency, old.kind) != (currency, kind):
                self._remove_entry(connection, tables, where, entry_id, old.currency, posted)
                old = None
            if old is None:
                connection.execute(
                    sa.insert(entries).values(
                        entry_id=entry_id,
                        **where,
                        currency=currency,
                        kind=kind,
                        object_type=object_type,
                        object_id=object_id,
                        created=fields.get("created"),
                    )
                )
            elif old.created != fields.get("created"):
                connection.execute(
                    sa.update(entries)
                    .where(_match(entries, {"entry_id": entry_id, **scope_key}))
                    .values(created=fields.get("created"))
                )
            for ledger_account in sorted(set(amounts) | {a for (e, a) in posted if e == entry_id}):
                new_amount = amounts.get(ledger_account, 0)
                old_amount = posted.get((entry_id, ledger_account), 0) if old is not None else 0
                if new_amount == old_amount:
                    continue
                posting_key = {"entry_id": entry_id, **scope_key, "ledger_account": ledger_account}
                if new_amount == 0:
                    connection.execute(sa.delete(postings).where(_match(postings, posting_key)))
                else:
                    save(
                        connection,
                        postings,
                        posting_key,
                        {
                            "account": where["account"],
                            "currency": currency,
                            "kind": kind,
                            "amount": new_amount,
                        },
                    )
                self._balance(
                    connection, balances, where, currency, ledger_account, new_amount - old_amount
                )
        for entry_id, old in existing.items():
            if entry_id not in implied:
                self._remove_entry(connection, tables, where, entry_id, old.currency, posted)

    def _remove_entry(
        self,
        connection: sa.Connection,
        tables: dict[str, sa.Table],
        where: dict[str, Any],
        entry_id: str,
        currency: str,
        posted: dict[tuple[str, str], int],
    ) -> None:
        scope_key = {
            "entry_id": entry_id,
            "account_key": where["account_key"],
            "livemode": where["livemode"],
        }
        for (posted_entry, ledger_account), amount in posted.items():
            if posted_entry == entry_id:
                self._balance(
                    connection, tables["balances"], where, currency, ledger_account, -amount
                )
        connection.execute(
            sa.delete(tables["journal_postings"]).where(
                _match(tables["journal_postings"], scope_key)
            )
        )
        connection.execute(
            sa.delete(tables["journal_entries"]).where(_match(tables["journal_entries"], scope_key))
        )

    def apply(
        self, connection: sa.Connection, events: Sequence[StoredEvent], generation: int
    ) -> Counts:
        """The batch's balance deltas are summed in memory and written once per balance row at
        the end (a balance is a sum, so the order of the deltas does not matter): one UPDATE per
        touched row instead of two or three statements per posting."""
        _batch.deltas = {}
        try:
            counts = super().apply(connection, events, generation)
            self._flush_balances(connection, self.cached_tables(generation)["balances"])
        finally:
            _batch.deltas = None
        return counts

    def _balance(
        self,
        connection: sa.Connection,
        balances: sa.Table,
        where: dict[str, Any],
        currency: str,
        ledger_account: str,
        delta: int,
    ) -> None:
        if delta == 0:
            return
        key = (where["account_key"], where["livemode"], currency, ledger_account)
        deltas: dict[tuple[Any, ...], list[Any]] | None = getattr(_batch, "deltas", None)
        if deltas is not None:  # inside apply(): written by _flush_balances
            pending = deltas.setdefault(key, [where["account"], 0])
            pending[1] += delta
            return
        self._write_balance(connection, balances, key, where["account"], delta)

    def _flush_balances(self, connection: sa.Connection, balances: sa.Table) -> None:
        deltas: dict[tuple[Any, ...], list[Any]] = _batch.deltas or {}
        for key, (account, delta) in sorted(deltas.items(), key=lambda item: repr(item[0])):
            if delta != 0:
                self._write_balance(connection, balances, key, account, delta)

    def _write_balance(
        self,
        connection: sa.Connection,
        balances: sa.Table,
        key_values: tuple[Any, ...],
        account: str | None,
        delta: int,
    ) -> None:
        names = ("account_key", "livemode", "currency", "ledger_account")
        key = dict(zip(names, key_values, strict=True))
        updated = connection.execute(
            sa.update(balances)
            .where(_match(balances, key))
            .values(amount=balances.c.amount + delta)
        )
        if updated.rowcount == 0:
            connection.execute(sa.insert(balances).values(**key, account=account, amount=delta))
        else:  # a balance row exists iff it is non-zero: the same rows whatever the order
            connection.execute(
                sa.delete(balances).where(_match(balances, key), balances.c.amount == 0)
            )


# Per thread (the embedded mode runs the worker in a thread; tests run rebuilds in threads):
# the balance deltas of the batch being applied, None outside JournalProjection.apply.
_batch = threading.local()


def _match(table: sa.Table, key: dict[str, Any]) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[name] == value for name, value in key.items()))
