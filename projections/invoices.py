"""Invoices: one row per invoice and each status it reached, once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ledger.store import StoredEvent
from projections.base import (
    Counts,
    ObjectProjection,
    State,
    StatusFields,
    money,
    scope_columns,
    status_history_table,
    string,
    table_name,
    timestamp,
)
from projections.merge import LATEST, MAX, MIN, Fields, Lifecycle, Snapshot, rule, tie_key

# draft < open < uncollectible < paid | void: paid and void are terminal (equal top rank; a tie
# between them goes to the greater (created, rank, event id)), so an invoice never leaves one.
INVOICE_LIFECYCLE = Lifecycle({"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3})

# status_transitions field -> the status it records the time of
TRANSITIONS = (
    ("finalized_at", "open"),
    ("marked_uncollectible_at", "uncollectible"),
    ("paid_at", "paid"),
    ("voided_at", "void"),
)


@dataclass(slots=True)
class InvoiceFields(StatusFields):
    """An invoice's merged state, one field per merge rule (status RANK and reached UNION_MIN
    come from StatusFields)."""

    lifecycle = INVOICE_LIFECYCLE
    amount_paid: int | None = rule(MAX)
    attempt_count: int | None = rule(MAX)
    amount_due: int | None = rule(LATEST)
    amount_remaining: int | None = rule(LATEST)
    customer: str | None = rule(LATEST)
    subscription: str | None = rule(LATEST)
    currency: str | None = rule(LATEST)
    due_date: int | None = rule(LATEST)
    payment_intents: list[str] | None = rule(LATEST)
    finalized_at: int | None = rule(MIN)  # status_transitions.*: set once, the earliest wins
    paid_at: int | None = rule(MIN)
    voided_at: int | None = rule(MIN)
    marked_uncollectible_at: int | None = rule(MIN)
    deleted: bool | None = rule(MAX)  # invoice.deleted (a draft removed)


_MONEY = ("amount_paid", "amount_due", "amount_remaining")
_SELF_DESCRIBING = "folds the invoice snapshot: status (rank), amounts, customer, transitions"

HANDLERS: dict[str, str] = {
    "invoice.created": _SELF_DESCRIBING,
    "invoice.deleted": "marks the draft invoice deleted; folds the snapshot",
    "invoice.finalization_failed": _SELF_DESCRIBING,
    "invoice.finalized": _SELF_DESCRIBING + " (reaches open)",
    "invoice.marked_uncollectible": _SELF_DESCRIBING + " (reaches uncollectible)",
    "invoice.overdue": _SELF_DESCRIBING,
    "invoice.overpaid": _SELF_DESCRIBING,
    "invoice.paid": _SELF_DESCRIBING + " (reaches paid)",
    "invoice.payment_action_required": _SELF_DESCRIBING,
    "invoice.payment_attempt_required": _SELF_DESCRIBING,
    "invoice.payment_failed": _SELF_DESCRIBING + " (attempt_count)",
    "invoice.payment_succeeded": _SELF_DESCRIBING + " (amount_paid)",
    "invoice.sent": _SELF_DESCRIBING,
    "invoice.updated": _SELF_DESCRIBING,
    "invoice.voided": _SELF_DESCRIBING + " (reaches void)",
    "invoice.will_be_due": _SELF_DESCRIBING,
}


def _subscription(obj: dict[str, Any]) -> str | None:
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return string(details.get("subscription")) if isinstance(details, dict) else None


def _payment_intents(obj: dict[str, Any]) -> list[str] | None:
    payments = obj.get("payments")
    if not isinstance(payments, dict):
        return None
    found = []
    for item in payments.get("data") or []:
        payment = item.get("payment") if isinstance(item, dict) else None
        if isinstance(payment, dict) and string(payment.get("payment_intent")):
            found.append(string(payment.get("payment_intent")))
    return sorted(set(found))  # type: ignore[arg-type]


def invoice_snapshot(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Snapshot[Fields]:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    amounts = {name: money(obj.get(name), counts, event, f"invoice.{name}") for name in _MONEY}
    transitions = obj.get("status_transitions")
    transitions = transitions if isinstance(transitions, dict) else {}
    times = {name: timestamp(transitions.get(name)) for name, _status in TRANSITIONS}
    reached: dict[str, int] = {}
    for name, reached_status in TRANSITIONS:
        when = times[name]
        if when is not None:
            reached[reached_status] = when
    if status is not None:
        if status == "draft" and timestamp(obj.get("created")) is not None:
            when = obj["created"]
        else:
            when = reached.get(status, event.created)
        reached[status] = min(reached.get(status, when), when)
    fields = InvoiceFields(
        status=status,
        reached=reached,
        attempt_count=timestamp(obj.get("attempt_count")),
        customer=string(obj.get("customer")),
        subscription=_subscription(obj),
        currency=obj.get("currency") if isinstance(obj.get("currency"), str) else None,
        due_date=timestamp(obj.get("due_date")),
        payment_intents=_payment_intents(obj),
        deleted=event.type == "invoice.deleted" or obj.get("deleted") is True,
        amount_paid=amounts["amount_paid"],
        amount_due=amounts["amount_due"],
        amount_remaining=amounts["amount_remaining"],
        finalized_at=times["finalized_at"],
        paid_at=times["paid_at"],
        voided_at=times["voided_at"],
        marked_uncollectible_at=times["marked_uncollectible_at"],
    )
    return Snapshot(tie_key(event.created, INVOICE_LIFECYCLE.rank(status), event.event_id), fields)


class InvoicesProjection(ObjectProjection):
    name = "invoices"
    handlers = HANDLERS
    state_table = "invoices"
    object_name = "invoice"
    fields_type = InvoiceFields
    history_table = "invoice_status_history"
    id_column = "invoice_id"

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        invoices = sa.Table(
            table_name("invoices", generation),
            metadata,
            sa.Column("invoice_id", sa.String(255), nullable=False),
            *scope_columns(),
            sa.Column("customer", sa.String(255)),
            sa.Column("subscription", sa.String(255)),
            sa.Column("status", sa.String(32)),
            sa.Column("currency", sa.String(8)),
            sa.Column("amount_due", sa.BigInteger),
            sa.Column("amount_paid", sa.BigInteger),
            sa.Column("amount_remaining", sa.BigInteger),
            sa.Column("attempt_count", sa.Integer),
            sa.Column("due_date", sa.BigInteger),
            sa.Column("finalized_at", sa.BigInteger),
            sa.Column("paid_at", sa.BigInteger),
            sa.Column("voided_at", sa.BigInteger),
            sa.Column("marked_uncollectible_at", sa.BigInteger),
            sa.Column("last_event_id", sa.String(255), nullable=False),
            sa.Column("last_event_created", sa.BigInteger, nullable=False),
            sa.Column("state", State, nullable=False),
            sa.PrimaryKeyConstraint("invoice_id", "account_key", "livemode"),
        )
        history = status_history_table(metadata, "invoice_status_history", "invoice_id", generation)
        return {"invoices": invoices, "invoice_status_history": history}

    def object_snapshot(
        self, event: StoredEvent, obj: dict[str, Any], counts: Counts
    ) -> Snapshot[Fields]:
        return invoice_snapshot(event, obj, counts)
