"""The journal's fold and posting rules, as tables: which object an event or a balance
transaction folds into, the merge rule of each field, and the entries a merged state implies.

Money is folded around a ROOT object: a charge (with its refunds), a dispute, a payout, an
application fee (with its refunds), a transfer (with its reversals), or a lone balance
transaction. Two kinds of facts fold into a root:

- Stripe events: what the object says (amount_captured, a refund's amount and status, a
  payout's status). They imply ESTIMATED entries: Stripe's gross figures, no fees, in the
  currency the object names.
- Balance transactions (``ledger.balance_transaction`` facts from ``balance-sync``, or a
  balance transaction a payload embeds: a dispute's, an expanded ``charge.balance_transaction``):
  Stripe's own record of the movement. Each implies an EXACT entry keyed by its id: gross,
  every fee, net, in the settlement currency.

An estimate stands for one "slot" of its root (a charge's capture, one refund, a dispute's
withdrawal, a payout) and is left out as soon as a balance transaction of that slot is known. So
a movement is counted once whatever arrives first, and the postings stay a function of the set
of stored facts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ledger import balance_facts
from ledger.store import StoredEvent
from projections import accounts as acc
from projections.base import Counts, currency_of, data_object, money, string, timestamp
from projections.disputes import DISPUTE_LIFECYCLE
from projections.merge import (
    LATEST,
    LATEST_KNOWN,
    MAX,
    MIN,
    RANK,
    UNION,
    UNION_LATEST,
    UNION_MIN,
    Fields,
    Item,
    Lifecycle,
    Snapshot,
    rule,
    tie_key,
)

BT_FACT = balance_facts.BALANCE_TRANSACTION_FACT
BALANCE_FACT = balance_facts.BALANCE_FACT
OPENING_FACT = balance_facts.OPENING_BALANCE_FACT
DESCRIPTION_CHARS_MAX = 200

CHARGE_LIFECYCLE = Lifecycle({"pending": 0, "succeeded": 1, "failed": 1})
PAYOUT_LIFECYCLE = Lifecycle({"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3})
REFUND_RANKS = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
BT_STATUS_RANKS = {"pending": 0, "available": 1}
REFUND_FAILED = ("failed", "canceled")

# -- merge rules: one typed Fields class per root, one rule per field -------------------------


@dataclass(slots=True)
class MoneyFacts(Fields):
    """The balance transactions every money root collects (all roots but balance, opening)."""

    bts: dict[str, Item] = rule(UNION_LATEST)  # balance transaction id -> its latest state
    # balance transaction id -> the automatic payout that paid it out
    bt_payouts: dict[str, str] = rule(UNION)


@dataclass(slots=True)
class ChargeFields(MoneyFacts):
    lifecycle = CHARGE_LIFECYCLE
    status: str | None = rule(RANK)
    # currency, amount_refunded of the latest charge snapshot
    charge: Item | None = rule(LATEST_KNOWN)
    amount_captured: int | None = rule(MAX)
    captured_at: int | None = rule(MIN)  # first event showing a capture: when the money moved
    refunded_at: int | None = rule(MIN)  # first event showing amount_refunded > 0
    created: int | None = rule(MIN)
    refunds: dict[str, Item] = rule(UNION_LATEST)  # refund id -> amount, status, created, failed_at


@dataclass(slots=True)
class DisputeRootFields(MoneyFacts):
    lifecycle = DISPUTE_LIFECYCLE
    status: str | None = rule(RANK)
    currency: str | None = rule(LATEST)
    amount: int | None = rule(LATEST)
    withdrawn_at: int | None = rule(MIN)  # charge.dispute.funds_withdrawn seen (when)
    reinstated_at: int | None = rule(MIN)  # charge.dispute.funds_reinstated seen (when)
    created: int | None = rule(MIN)


@dataclass(slots=True)
class PayoutFields(MoneyFacts):
    lifecycle = PAYOUT_LIFECYCLE
    status: str | None = rule(RANK)
    payout: Item | None = rule(LATEST_KNOWN)  # amount, currency, arrival_date, automatic
    reached: dict[str, int] = rule(UNION_MIN)  # status -> first seen: "paid then failed" needs both
    created: int | None = rule(MIN)


@dataclass(slots=True)
class GivenBackFields(MoneyFacts):
    """Application fees and transfers: an amount that can be given back."""

    main: Item | None = rule(LATEST_KNOWN)  # amount, currency, amount_back (refunded / reversed)
    created: int | None = rule(MIN)
    back_at: int | None = rule(MIN)  # first event showing amount_back > 0
    backs: dict[str, Item] = rule(UNION_LATEST)  # fee refund / transfer reversal id -> amount


@dataclass(slots=True)
class LoneFields(MoneyFacts):
    """A balance transaction that belongs to no other root."""


@dataclass(slots=True)
class BalanceFields(Fields):
    available: dict[str, int] | None = rule(LATEST)  # currency -> amount
    pending: dict[str, int] | None = rule(LATEST)


@dataclass(slots=True)
class OpeningFields(Fields):
    opening: Item | None = rule(LATEST_KNOWN)  # as_of, currency -> amount


ROOT_FIELDS: dict[str, type[Fields]] = {
    "charge": ChargeFields,
    "dispute": DisputeRootFields,
    "payout": PayoutFields,
    "application_fee": GivenBackFields,
    "transfer": GivenBackFields,
    "balance_transaction": LoneFields,
    "balance": BalanceFields,
    "opening": OpeningFields,
}
FieldsT = TypeVar("FieldsT", bound=Fields)


def fields_as(fields: Fields, expected: type[FieldsT]) -> FieldsT:
    """``fields`` as the root type's Fields class (an invariant: one root type, one class)."""
    assert isinstance(fields, expected), (type(fields), expected)
    return fields


# An id prefix -> the object a balance transaction's unexpanded `source` is.
SOURCE_PREFIXES = (
    ("ch_", "charge"),
    ("py_", "charge"),
    ("re_", "refund"),
    ("pyr_", "refund"),
    ("dp_", "dispute"),
    ("du_", "dispute"),
    ("po_", "payout"),
    ("fee_", "application_fee"),
    ("fr_", "fee_refund"),
    ("tr_", "transfer"),
    ("trr_", "transfer_reversal"),
)
# The estimate slot a balance transaction's category fills, per root: (root, category) -> slot.
ROOT_SLOT_CATEGORIES = {
    "charge": ("charge",),
    "payout": ("payout", "payout_reversal"),
    "application_fee": ("platform_earning", "platform_earning_refund"),
    "transfer": ("transfer", "transfer_reversal"),
}


@dataclass(frozen=True)
class Root:
    object_type: str
    object_id: str


@dataclass(frozen=True)
class Entry:
    """One implied journal entry: its postings (ledger account -> signed minor units, summing
    to zero) and what it says about the movement."""

    kind: str  # the reporting category, or a move of our own (available, payout_paid, ...)
    currency: str
    amounts: dict[str, int]
    posted_at: int | None  # when the money moved (unix s)
    balance_transaction_id: str | None = None
    source_id: str | None = None
    automatic_payout_id: str | None = None
    exchange_rate: str | None = None
    description: str | None = None
    estimated: bool = False


Implied = dict[str, Entry]


def _item(key: list[Any], value: Any) -> Item:
    return {"k": key, "v": value}


def _source_kind(source: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(object kind, id, expanded object or {}) of a balance transaction's ``source``."""
    if isinstance(source, dict):
        kind = source.get("object")
        return (kind if isinstance(kind, str) else None), string(source), source
    if not isinstance(source, str):
        return None, None, {}
    for prefix, kind in SOURCE_PREFIXES:
        if source.startswith(prefix):
            return kind, source, {}
    return None, source, {}


def bt_root(bt: dict[str, Any]) -> Root:
    """The root a balance transaction folds into. A refund, fee refund or transfer reversal is
    found through its expanded ``source`` (balance-sync always expands it); unexpanded, it
    stands alone."""
    kind, source_id, source = _source_kind(bt.get("source"))
    lone = Root("balance_transaction", str(bt["id"]))
    if source_id is None:
        return lone
    if kind in ("charge", "dispute", "payout", "application_fee", "transfer"):
        return Root(kind, source_id)
    parent = {"refund": "charge", "fee_refund": "fee", "transfer_reversal": "transfer"}
    if kind in parent:
        parent_id = string(source.get(parent[kind]))
        if parent_id:
            root_type = {"refund": "charge", "fee_refund": "application_fee"}.get(kind, "transfer")
            return Root(root_type, parent_id)
    return lone


def reduce_bt(value: Any, counts: Counts, event: StoredEvent) -> tuple[str, dict[str, Any]] | None:
    """A BalanceTransaction reduced to what the journal posts, or None when it cannot be posted
    (no id, a non-integer amount, or net != amount - fee: refused and counted)."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        return None
    amount = money(value.get("amount"), counts, event, "balance_transaction.amount")
    fee = money(value.get("fee", 0), counts, event, "balance_transaction.fee")
    net = money(value.get("net", None), counts, event, "balance_transaction.net")
    currency = currency_of(value)
    if amount is None or fee is None or currency is None:
        return None
    if net is None:
        net = amount - fee
    if net != amount - fee:
        counts.refused += 1
        return None
    details = []
    for detail in value.get("fee_details") or []:
        if isinstance(detail, dict):
            part = money(detail.get("amount"), counts, event, "fee_details.amount")
            if part:
                details.append([str(detail.get("type") or ""), part])
    rate = value.get("exchange_rate")
    description = value.get("description")
    _kind, source_id, _source = _source_kind(value.get("source"))
    category = value.get("reporting_category") or value.get("type")
    return value["id"], {
        "type": value.get("type") if isinstance(value.get("type"), str) else None,
        "category": category if isinstance(category, str) else None,
        "amount": amount,
        "fee": fee,
        "net": net,
        "currency": currency,
        "status": value.get("status") if isinstance(value.get("status"), str) else None,
        "created": timestamp(value.get("created")),
        "available_on": timestamp(value.get("available_on")),
        "exchange_rate": None if rate is None else str(rate),
        "description": description[:DESCRIPTION_CHARS_MAX]
        if isinstance(description, str)
        else None,
        "source_id": source_id,
        "fee_details": details,
    }


def _bt_items(values: Any, counts: Counts, event: StoredEvent) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for value in values if isinstance(values, list) else [values]:
        reduced = reduce_bt(value, counts, event)
        if reduced is not None:
            txn, bt = reduced
            rank = BT_STATUS_RANKS.get(bt["status"] or "", 0)
            items[txn] = _item([rank, event.created, event.event_id], bt)
    return items


def _refund_item(event: StoredEvent, refund: dict[str, Any], counts: Counts) -> Item:
    status = refund.get("status") if isinstance(refund.get("status"), str) else None
    key = [REFUND_RANKS.get(status or "", 0), event.created, event.event_id]
    return _item(
        key,
        {
            "amount": money(refund.get("amount"), counts, event, "refund.amount") or 0,
            "currency": currency_of(refund),
            "status": status,
            "created": timestamp(refund.get("created")),
            "failed_at": event.created if status in REFUND_FAILED else None,
        },
    )


def _back_item(event: StoredEvent, back: dict[str, Any], counts: Counts) -> Item:
    """A fee refund or a transfer reversal: an amount given back."""
    return _item(
        [event.created, event.event_id],
        {
            "amount": money(back.get("amount"), counts, event, f"{back.get('object')}.amount") or 0,
            "created": timestamp(back.get("created")),
        },
    )


def _listed(obj: dict[str, Any], field: str) -> list[dict[str, Any]]:
    listing = obj.get(field)
    data = listing.get("data") if isinstance(listing, dict) else None
    return [
        item for item in data or [] if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]


def _charge(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Snapshot[Fields]:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    key = tie_key(event.created, CHARGE_LIFECYCLE.rank(status), event.event_id)
    captured = money(obj.get("amount_captured"), counts, event, "charge.amount_captured")
    refunded = money(obj.get("amount_refunded"), counts, event, "charge.amount_refunded")
    bt = obj.get("balance_transaction")
    fields = ChargeFields(
        status=status,
        # Within one second the larger amount_refunded is the later snapshot (it only grows,
        # but for a refund that fails: seconds later, which the event time orders).
        charge=_item(
            [event.created, key[1], refunded or 0, event.event_id],
            {"currency": currency_of(obj), "amount_refunded": refunded},
        ),
        amount_captured=captured,
        captured_at=event.created if captured else None,
        refunded_at=event.created if refunded else None,
        created=timestamp(obj.get("created")),
        refunds={r["id"]: _refund_item(event, r, counts) for r in _listed(obj, "refunds")},
        bts=_bt_items(bt, counts, event) if isinstance(bt, dict) else {},
    )
    return Snapshot(key, fields)


def _dispute(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Snapshot[Fields]:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    key = tie_key(event.created, DISPUTE_LIFECYCLE.rank(status), event.event_id)
    fields = DisputeRootFields(
        status=status,
        currency=currency_of(obj),
        amount=money(obj.get("amount"), counts, event, "dispute.amount"),
        withdrawn_at=event.created if event.type.endswith("funds_withdrawn") else None,
        reinstated_at=event.created if event.type.endswith("funds_reinstated") else None,
        created=timestamp(obj.get("created")),
        bts=_bt_items(obj.get("balance_transactions"), counts, event),
    )
    return Snapshot(key, fields)


def _payout(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Snapshot[Fields]:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    key = tie_key(event.created, PAYOUT_LIFECYCLE.rank(status), event.event_id)
    automatic = obj.get("automatic")
    payout = {
        "amount": money(obj.get("amount"), counts, event, "payout.amount"),
        "currency": currency_of(obj),
        "arrival_date": timestamp(obj.get("arrival_date")),
        "automatic": automatic if isinstance(automatic, bool) else None,
    }
    fields = PayoutFields(
        status=status,
        payout=_item(key, payout),
        reached={status: event.created} if status else {},
        created=timestamp(obj.get("created")),
    )
    return Snapshot(key, fields)


def _given_back(
    event: StoredEvent, obj: dict[str, Any], counts: Counts, back: str
) -> Snapshot[Fields]:
    """An application fee (``back`` = its refunds) or a transfer (its reversals)."""
    key = tie_key(event.created, 0, event.event_id)
    back_field = "amount_refunded" if back == "refunds" else "amount_reversed"
    amount_back = money(obj.get(back_field), counts, event, f"{obj.get('object')}.{back_field}")
    main = {
        "amount": money(obj.get("amount"), counts, event, f"{obj.get('object')}.amount"),
        "currency": currency_of(obj),
        "amount_back": amount_back,
    }
    bt = obj.get("balance_transaction")
    fields = GivenBackFields(
        main=_item(key, main),
        created=timestamp(obj.get("created")),
        back_at=event.created if amount_back else None,
        backs={b["id"]: _back_item(event, b, counts) for b in _listed(obj, back)},
        bts=_bt_items(bt, counts, event) if isinstance(bt, dict) else {},
    )
    return Snapshot(key, fields)


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


Found = tuple[Root, Snapshot[Fields]]


def _child(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Found | None:
    """A refund, fee refund or transfer reversal folds into its parent."""
    kind, child_id = obj.get("object"), str(obj["id"])
    key = tie_key(event.created, -1, event.event_id)
    if kind == "refund":
        parent = string(obj.get("charge")) or child_id
        refunds = {child_id: _refund_item(event, obj, counts)}
        return Root("charge", parent), Snapshot(key, ChargeFields(refunds=refunds))
    parent_field, root_type = (
        ("fee", "application_fee") if kind == "fee_refund" else ("transfer", "transfer")
    )
    owner = string(obj.get(parent_field))
    if owner is None:
        return None
    backs = {child_id: _back_item(event, obj, counts)}
    return Root(root_type, owner), Snapshot(key, GivenBackFields(backs=backs))


def _bt_fact(
    event: StoredEvent, payload: dict[str, Any], obj: dict[str, Any], counts: Counts
) -> Found | None:
    items = _bt_items(obj, counts, event)
    if not items:
        return None
    root = bt_root(obj)
    fields = ROOT_FIELDS[root.object_type]()
    assert isinstance(fields, MoneyFacts), root  # bt_root names money roots only
    fields.bts = items
    annotations = payload.get("ledger")
    payout = (
        string(annotations.get("automatic_payout_id")) if isinstance(annotations, dict) else None
    )
    if payout:
        fields.bt_payouts = {str(obj["id"]): payout}
    kind, _source_id, source = _source_kind(obj.get("source"))
    if source and isinstance(source.get("id"), str):  # the expanded child: known by id too
        if kind == "refund" and isinstance(fields, ChargeFields):
            fields.refunds = {source["id"]: _refund_item(event, source, counts)}
        elif kind in ("fee_refund", "transfer_reversal") and isinstance(fields, GivenBackFields):
            fields.backs = {source["id"]: _back_item(event, source, counts)}
    return root, Snapshot(tie_key(event.created, -1, event.event_id), fields)


def _opening(event: StoredEvent, obj: dict[str, Any], counts: Counts) -> Found | None:
    as_of = timestamp(obj.get("as_of"))
    if as_of is None:
        return None
    opening = {"as_of": as_of, "balances": _funds(obj.get("balances"), counts, event, "opening")}
    key = tie_key(event.created, 0, event.event_id)
    return Root("opening", "opening"), Snapshot(key, OpeningFields(opening=_item(key, opening)))


def found_root(event: StoredEvent, payload: dict[str, Any], counts: Counts) -> Found | None:
    """The root one (upcast) event or fact folds into and what it says about it, or None."""
    obj = data_object(payload)
    kind = obj.get("object")
    if event.type == BT_FACT:
        return _bt_fact(event, payload, obj, counts) if kind == "balance_transaction" else None
    if event.type == OPENING_FACT:
        return _opening(event, obj, counts)
    if kind == "balance":
        fields = BalanceFields(
            available=_funds(obj.get("available"), counts, event, "balance.available"),
            pending=_funds(obj.get("pending"), counts, event, "balance.pending"),
        )
        return Root("balance", "balance"), Snapshot(
            tie_key(event.created, 0, event.event_id), fields
        )
    if not isinstance(obj.get("id"), str):
        return None
    object_id = str(obj["id"])
    if kind == "charge":
        return Root("charge", object_id), _charge(event, obj, counts)
    if kind == "dispute":
        return Root("dispute", object_id), _dispute(event, obj, counts)
    if kind == "payout":
        return Root("payout", object_id), _payout(event, obj, counts)
    if kind == "application_fee":
        return Root("application_fee", object_id), _given_back(event, obj, counts, "refunds")
    if kind == "transfer":
        return Root("transfer", object_id), _given_back(event, obj, counts, "reversals")
    if kind in ("refund", "fee_refund", "transfer_reversal"):
        return _child(event, obj, counts)
    return None


# -- posting rules: the entries a root's merged state implies --------------------------------


def bt_category(bt: dict[str, Any], root_type: str) -> str:
    """The reporting category a balance transaction posts under (its type's when absent)."""
    category = bt["category"]
    if category in acc.CATEGORY_ACCOUNTS:
        return str(category)
    category = acc.TYPE_CATEGORIES.get(bt["type"] or "", category or "")
    if root_type == "dispute" and category not in acc.DISPUTE_CATEGORIES:
        return "dispute" if bt["amount"] < 0 else "dispute_reversal"
    return str(category or "other_adjustment")


def _exact(txn: str, bt: dict[str, Any], root_type: str, payout: str | None) -> Implied:
    """A balance transaction's entries: gross, each fee, net into pending; then available."""
    category = bt_category(bt, root_type)
    amounts: dict[str, int] = {}

    def post(account: str, amount: int) -> None:
        amounts[account] = amounts.get(account, 0) + amount

    post(acc.category_account(category), -bt["amount"])
    itemized = 0
    for fee_type, part in bt["fee_details"]:
        post(acc.fee_account(fee_type, category), part)
        itemized += part
    if bt["fee"] != itemized:  # fee_details missing or short: the rest is Stripe's fee
        post(acc.fee_account(None, category), bt["fee"] - itemized)
    post(acc.STRIPE_PENDING, bt["net"])
    meta = {
        "balance_transaction_id": txn,
        "source_id": bt["source_id"],
        "automatic_payout_id": payout,
        "exchange_rate": bt["exchange_rate"],
        "description": bt["description"],
    }
    entries = {txn: Entry(category, bt["currency"], amounts, bt["created"], **meta)}
    if bt["status"] == "available" and bt["net"]:
        moved = {acc.STRIPE_AVAILABLE: bt["net"], acc.STRIPE_PENDING: -bt["net"]}
        when = bt["available_on"] if bt["available_on"] is not None else bt["created"]
        entries[f"{txn}:available"] = Entry("available", bt["currency"], moved, when, **meta)
    return entries


def _estimate(
    kind: str, currency: str, gross: int, account: str, posted_at: int | None, source_id: str
) -> Entry:
    """What an event alone says of a movement: its gross, no fee, into pending."""
    amounts = {account: -gross, acc.STRIPE_PENDING: gross}
    return Entry(kind, currency, amounts, posted_at, source_id=source_id, estimated=True)


def _latest(item: Item | None) -> dict[str, Any]:
    return dict(item["v"]) if isinstance(item, dict) else {}


def _values(items: dict[str, Item] | None) -> dict[str, dict[str, Any]]:
    return {item_id: item["v"] for item_id, item in (items or {}).items()}


def _charge_estimates(cid: str, f: ChargeFields, bts: dict[str, Any]) -> Implied:
    entries: Implied = {}
    charge = _latest(f.charge)
    currency = charge.get("currency")
    captured = f.amount_captured or 0
    known = {(bt["category"], bt["source_id"]) for bt in bts.values()}
    if (
        currency
        and captured
        and not any(bt_category(bt, "charge") == "charge" for bt in bts.values())
    ):
        when = f.captured_at or f.created
        entries[f"{cid}:capture"] = _estimate("charge", currency, captured, acc.REVENUE, when, cid)
    listed = 0
    for rid, refund in sorted(_values(f.refunds).items()):
        amount, rcur = refund["amount"], refund["currency"] or currency
        listed += amount
        if not amount or not rcur:
            continue
        if ("refund", rid) not in known:
            entries[f"{rid}:refund"] = _estimate(
                "refund", rcur, -amount, acc.REFUNDS, refund["created"], rid
            )
        if refund["status"] in REFUND_FAILED and ("refund_failure", rid) not in known:
            when = refund["failed_at"] or refund["created"]
            entries[f"{rid}:refund_failure"] = _estimate(
                "refund_failure", rcur, amount, acc.REFUNDS, when, rid
            )
    # amount_refunded beyond the refunds known by id (a charge.refunded of an API version whose
    # charges list no refunds): never more than was captured (an authorization released
    # without capture refunds nothing).
    remainder = min(charge.get("amount_refunded") or 0, captured) - listed
    if currency and remainder > 0:
        when = f.refunded_at or f.created
        entries[f"{cid}:refund"] = _estimate("refund", currency, -remainder, acc.REFUNDS, when, cid)
    return entries


def _dispute_estimates(did: str, f: DisputeRootFields, bts: dict[str, Any]) -> Implied:
    entries: Implied = {}
    amount, currency = f.amount or 0, f.currency
    # by sign, not label: a withdrawal takes money, a reinstatement gives it back (some
    # payloads label both `dispute`)
    withdrawn = any(bt["amount"] < 0 for bt in bts.values())
    reinstated = any(bt["amount"] > 0 for bt in bts.values())
    if not amount or not currency:
        return entries
    if f.withdrawn_at is not None and not withdrawn:
        entries[f"{did}:withdrawal"] = _estimate(
            "dispute", currency, -amount, acc.DISPUTE_LOSSES, f.withdrawn_at, did
        )
    if f.reinstated_at is not None and not reinstated:
        entries[f"{did}:reinstatement"] = _estimate(
            "dispute_reversal", currency, amount, acc.DISPUTE_LOSSES, f.reinstated_at, did
        )
    return entries


def _payout_estimates(pid: str, f: PayoutFields, bts: dict[str, Any]) -> Implied:
    """A payout leaves the balance when it is created (Stripe's payout balance transaction),
    reaches the bank when paid, and comes back if it fails or is canceled."""
    payout = _latest(f.payout)
    amount, currency = payout.get("amount") or 0, payout.get("currency")
    if not amount or not currency:
        return {}
    entries: Implied = {}
    categories = {bt_category(bt, "payout") for bt in bts.values()}
    reached, status = f.reached or {}, f.status
    failed = status in ("failed", "canceled")
    in_transit, available = acc.PAYOUTS_IN_TRANSIT, acc.STRIPE_AVAILABLE
    if "payout" not in categories:
        entries[f"{pid}:payout"] = Entry(
            "payout",
            currency,
            {in_transit: amount, available: -amount},
            f.created,
            source_id=pid,
            estimated=True,
        )
    if failed and "payout_reversal" not in categories:
        entries[f"{pid}:failure"] = Entry(
            "payout_reversal",
            currency,
            {available: amount, in_transit: -amount},
            reached.get(status or ""),
            source_id=pid,
            estimated=True,
        )
    paid_at = reached.get("paid")
    if paid_at is not None:
        entries[f"{pid}:paid"] = Entry(
            "payout_paid",
            currency,
            {acc.BANK: amount, in_transit: -amount},
            paid_at,
            source_id=pid,
        )
        if failed:  # paid, then failed: the bank gave it back
            entries[f"{pid}:returned"] = Entry(
                "payout_returned",
                currency,
                {in_transit: amount, acc.BANK: -amount},
                reached.get(status or ""),
                source_id=pid,
            )
    return entries


def _given_back_estimates(
    root_type: str, object_id: str, f: GivenBackFields, bts: dict[str, Any]
) -> Implied:
    """An application fee the platform earned (and refunded), or a transfer it sent (and had
    reversed)."""
    main = _latest(f.main)
    amount, currency = main.get("amount") or 0, main.get("currency")
    if not amount or not currency:
        return {}
    fee = root_type == "application_fee"
    out, back = (
        ("platform_earning", "platform_earning_refund")
        if fee
        else ("transfer", "transfer_reversal")
    )
    account = acc.category_account(out)
    back_account = acc.category_account(back)
    sign = 1 if fee else -1  # a fee comes in, a transfer goes out
    known = {(bt_category(bt, root_type), bt["source_id"]) for bt in bts.values()}
    entries: Implied = {}
    if not any(category == out for category, _source in known):
        entries[f"{object_id}:{out}"] = _estimate(
            out, currency, sign * amount, account, f.created, object_id
        )
    listed = 0
    for back_id, item in sorted(_values(f.backs).items()):
        listed += item["amount"]
        if item["amount"] and (back, back_id) not in known:
            entries[f"{back_id}:{back}"] = _estimate(
                back, currency, -sign * item["amount"], back_account, item["created"], back_id
            )
    remainder = min(main.get("amount_back") or 0, amount) - listed
    if remainder > 0:
        entries[f"{object_id}:{back}"] = _estimate(
            back, currency, -sign * remainder, back_account, f.back_at or f.created, object_id
        )
    return entries


def _opening_entries(f: OpeningFields) -> Implied:
    opening = _latest(f.opening)
    return {
        f"opening:{currency}": Entry(
            "opening_balance",
            currency,
            {acc.STRIPE_AVAILABLE: amount, acc.OPENING_BALANCE: -amount},
            opening["as_of"],
        )
        for currency, amount in sorted((opening.get("balances") or {}).items())
    }


def balance_transaction_entry_id(root_id: str, txn: str) -> str:
    """The id of the exact entry of balance transaction ``txn`` folded into root ``root_id``
    (its gross, fees and net; ``<id>:available`` is its move to available). Keyed by root too:
    a balance transaction id that two roots name (a placeholder id shared by fixtures) is two
    entries that `verify` reports, never a crash."""
    return f"{root_id}:{txn}"


def implied_entries(object_type: str, object_id: str, fields: Fields) -> Implied:
    """Posting rules: the entries a root's merged state implies (deterministic ids)."""
    if object_type == "opening":
        entries = _opening_entries(fields_as(fields, OpeningFields))
    else:
        money_facts = fields_as(fields, MoneyFacts)
        bts = _values(money_facts.bts)
        payouts = money_facts.bt_payouts or {}
        entries = {}
        for txn, bt in sorted(bts.items()):
            exact = _exact(txn, bt, object_type, payouts.get(txn))
            entries.update(
                {balance_transaction_entry_id(object_id, key): e for key, e in exact.items()}
            )
        if isinstance(fields, ChargeFields):
            entries.update(_charge_estimates(object_id, fields, bts))
        elif isinstance(fields, DisputeRootFields):
            entries.update(_dispute_estimates(object_id, fields, bts))
        elif isinstance(fields, PayoutFields):
            entries.update(_payout_estimates(object_id, fields, bts))
        elif isinstance(fields, GivenBackFields):
            entries.update(_given_back_estimates(object_type, object_id, fields, bts))
    implied: Implied = {}
    for entry_id, entry in entries.items():
        amounts = {account: amount for account, amount in entry.amounts.items() if amount}
        assert sum(amounts.values()) == 0, (entry_id, amounts)  # every entry balances
        assert set(amounts) <= set(acc.CHART_OF_ACCOUNTS), amounts
        if len(amounts) == len(entry.amounts):  # no zero posting left out: the entry as it is
            implied[entry_id] = entry
        elif amounts:
            implied[entry_id] = replace(entry, amounts=amounts)
    return implied
