"""Disputes: one row per dispute with the money it moved, and each status it reached, once."""

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
    balance_transactions,
    currency_of,
    money,
    scope_columns,
    status_history_table,
    string,
    table_name,
    timestamp,
)
from projections.merge import LATEST, MAX, MIN, UNION, Fields, Lifecycle, Snapshot, rule, tie_key

# warning_needs_response < warning_under_review < needs_response < under_review
#   < warning_closed | won | lost | prevented (terminal; ties go to the tie-break key)
DISPUTE_LIFECYCLE = Lifecycle(
    {
        "warning_needs_response": 0,
        "warning_under_review": 1,
        "needs_response": 2,
        "under_review": 3,
        "warning_closed": 4,
        "won": 4,
        "lost": 4,
        "prevented": 4,
    }
)


@dataclass(slots=True)
class DisputeFields(StatusFields):
    """A dispute's merged state, one field per merge rule (status RANK and reached UNION_MIN,
    status -> first event time it was seen, come from StatusFields)."""

    lifecycle = DISPUTE_LIFECYCLE
    charge: str | None = rule(LATEST)
    payment_intent: str | None = rule(LATEST)
    amount: int | None = rule(LATEST)
    currency: str | None = rule(LATEST)
    reason: str | None = rule(LATEST)
    evidence_due_by: int | None = rule(LATEST)
    created: int | None = rule(MIN)
    # txn id -> {amount, fee, currency}: each id counts once
    balance_transactions: dict[str, dict[str, Any]] = rule(UNION)
    withdrawn_seen: bool | None = rule(MAX)  # a charge.dispute.funds_withdrawn event was seen
    reinstated_seen: bool | None = rule(MAX)  # a charge.dispute.funds_reinstated event was seen


_FOLDS = "folds the dispute snapshot: status (rank), balance transactions, evidence due date"
HANDLERS: dict[str, str] = {
    "charge.dispute.created": _FOLDS,
    "charge.dispute.updated": _FOLDS,
    "charge.dispute.closed": _FOLDS + "; sets closed_at",
    "charge.dispute.funds_withdrawn": _FOLDS + "; funds_withdrawn and dispute_fees",
    "charge.dispute.funds_reinstated": _FOLDS + "; funds_reinstated (and reversed fees)",
}


def dispute_snapshot(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Snapshot[Fields]:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    evidence = obj.get("evidence_details")
    fields = DisputeFields(
        status=status,
        charge=string(obj.get("charge")),
        payment_intent=string(obj.get("payment_intent")),
        amount=money(obj.get("amount"), counts, event, "dispute.amount"),
        currency=currency_of(obj),
        reason=obj.get("reason") if isinstance(obj.get("reason"), str) else None,
        evidence_due_by=timestamp(evidence.get("due_by")) if isinstance(evidence, dict) else None,
        created=timestamp(obj.get("created")),
        balance_transactions=balance_transactions(obj.get("balance_transactions"), counts, event),
        withdrawn_seen=event.type == "charge.dispute.funds_withdrawn",
        reinstated_seen=event.type == "charge.dispute.funds_reinstated",
        reached={status: event.created} if status is not None else {},
    )
    return Snapshot(tie_key(event.created, DISPUTE_LIFECYCLE.rank(status), event.event_id), fields)


def dispute_money(fields: DisputeFields) -> dict[str, int]:
    """funds_withdrawn, funds_reinstated (positive) and dispute_fees (net of reversals).

    From the embedded balance transactions when any is known (withdrawals are negative,
    reinstatements positive); an old or trimmed payload without them falls back to the dispute
    amount for each funds_* event seen (fees unknown: 0)."""
    bts = fields.balance_transactions or {}
    if bts:
        return {
            "funds_withdrawn": sum(-bt["amount"] for bt in bts.values() if bt["amount"] < 0),
            "funds_reinstated": sum(bt["amount"] for bt in bts.values() if bt["amount"] > 0),
            "dispute_fees": sum(bt["fee"] for bt in bts.values()),
        }
    amount = fields.amount or 0
    return {
        "funds_withdrawn": amount if fields.withdrawn_seen else 0,
        "funds_reinstated": amount if fields.reinstated_seen else 0,
        "dispute_fees": 0,
    }


class DisputesProjection(ObjectProjection):
    name = "disputes"
    handlers = HANDLERS
    state_table = "disputes"
    object_name = "dispute"
    fields_type = DisputeFields
    history_table = "dispute_status_history"
    id_column = "dispute_id"

    def tables(self, metadata: sa.MetaData, generation: int) -> dict[str, sa.Table]:
        disputes = sa.Table(
            table_name("disputes", generation),
            metadata,
            sa.Column("dispute_id", sa.String(255), nullable=False),
            *scope_columns(),
            sa.Column("charge", sa.String(255)),
            sa.Column("payment_intent", sa.String(255)),
            sa.Column("amount", sa.BigInteger),
            sa.Column("currency", sa.String(8)),
            sa.Column("reason", sa.String(64)),
            sa.Column("status", sa.String(32)),
            sa.Column("evidence_due_by", sa.BigInteger),
            sa.Column("funds_withdrawn", sa.BigInteger, nullable=False),
            sa.Column("funds_reinstated", sa.BigInteger, nullable=False),
            sa.Column("dispute_fees", sa.BigInteger, nullable=False),
            sa.Column("created", sa.BigInteger),
            sa.Column("closed_at", sa.BigInteger),
            sa.Column("last_event_id", sa.String(255), nullable=False),
            sa.Column("last_event_created", sa.BigInteger, nullable=False),
            sa.Column("state", State, nullable=False),
            sa.PrimaryKeyConstraint("dispute_id", "account_key", "livemode"),
        )
        history = status_history_table(metadata, "dispute_status_history", "dispute_id", generation)
        return {"disputes": disputes, "dispute_status_history": history}

    def object_snapshot(
        self, event: StoredEvent, obj: dict[str, Any], counts: Counts
    ) -> Snapshot[Fields]:
        return dispute_snapshot(event, obj, counts)

    def derived(self, fields: Fields) -> dict[str, Any]:
        assert isinstance(fields, DisputeFields), fields
        terminal = DISPUTE_LIFECYCLE.terminal()
        closed = [when for status, when in fields.reached.items() if status in terminal]
        return {**dispute_money(fields), "closed_at": min(closed) if closed else None}
