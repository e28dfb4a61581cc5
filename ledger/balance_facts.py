"""The facts ``balance-sync`` stores: balance transactions, balances and opening balances.

Stripe sends no webhook for balance transactions, so they are fetched and stored as event-shaped
facts (``object: "event"``, source ``backfill``), each parsed by the one envelope parser like any
other event. The projections read them from the store, so ``rebuild`` works offline. The shapes
are a contract with the journal projection (docs/BALANCE_SYNC.md):

* ``ledger.balance_transaction``: ``data.object`` is the BalanceTransaction exactly as Stripe
  returned it (``source`` expanded), ``ledger.automatic_payout_id`` the automatic payout it was
  listed under (``GET /v1/balance_transactions?payout=po_...``) or null. The id is a hash of
  both: identical content is stored once, a changed one (pending -> available, a payout
  assigned) is a new fact beside the old one, never an overwrite.
* ``ledger.balance``: the Balance object (``GET /v1/balance``) at the end of a complete pass.
* ``ledger.opening_balance``: per currency, Stripe's balance at the start of the synced range,
  one per (account, mode): its id has no hash, so the first one stored wins.

Only pure functions here: no I/O, so the tests and the projections can build the same facts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.envelope import StripeEvent, event_from_dict

BALANCE_TRANSACTION_FACT = "ledger.balance_transaction"
BALANCE_FACT = "ledger.balance"
OPENING_BALANCE_FACT = "ledger.opening_balance"
FACT_TYPES = (BALANCE_TRANSACTION_FACT, BALANCE_FACT, OPENING_BALANCE_FACT)
HASH_HEX_CHARS = 16  # 64 bits of sha256: ids of one BT's versions never collide in practice

Json = dict[str, Any]


def canonical_json(value: Any) -> str:
    """The one encoding the ids hash: sorted keys, no spaces (the contract says so)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:HASH_HEX_CHARS]


def _fact(
    fact_id: str,
    fact_type: str,
    obj: Mapping[str, Any],
    *,
    fetched_s: int,
    livemode: bool,
    account: str | None,
    api_version: str | None,
    ledger: Mapping[str, Any] | None = None,
) -> StripeEvent:
    payload: Json = {
        "id": fact_id,
        "object": "event",
        "type": fact_type,
        "api_version": api_version,
        "created": fetched_s,
        "livemode": livemode,
        "account": account,
        "data": {"object": dict(obj)},
    }
    if ledger is not None:
        payload["ledger"] = dict(ledger)
    return event_from_dict(payload)  # EnvelopeError for what no event could hold


def bt_fact_id(bt: Mapping[str, Any], automatic_payout_id: str | None) -> str:
    """'bt_' + txn id + '_' + sha256 of {"bt": BT, "automatic_payout_id": P}[:16]."""
    txn_id = bt.get("id")
    assert isinstance(txn_id, str) and txn_id, "a balance transaction has an id"
    digest = _digest({"bt": bt, "automatic_payout_id": automatic_payout_id})
    return f"bt_{txn_id}_{digest}"


def bt_fact(
    bt: Mapping[str, Any],
    *,
    automatic_payout_id: str | None,
    fetched_s: int,
    livemode: bool,
    account: str | None,
    api_version: str | None,
) -> StripeEvent:
    """A fetched BalanceTransaction -> its ``ledger.balance_transaction`` fact."""
    assert automatic_payout_id is None or automatic_payout_id.startswith("po_")
    return _fact(
        bt_fact_id(bt, automatic_payout_id),
        BALANCE_TRANSACTION_FACT,
        bt,
        fetched_s=fetched_s,
        livemode=livemode,
        account=account,
        api_version=api_version,
        ledger={"automatic_payout_id": automatic_payout_id},
    )


def balance_fact(
    balance: Mapping[str, Any],
    *,
    fetched_s: int,
    livemode: bool,
    account: str | None,
    api_version: str | None,
) -> StripeEvent:
    """The Balance of a scope at ``fetched_s`` -> its ``ledger.balance`` fact."""
    fact_id = "bal_" + _digest([account, livemode, fetched_s, balance])
    return _fact(
        fact_id,
        BALANCE_FACT,
        balance,
        fetched_s=fetched_s,
        livemode=livemode,
        account=account,
        api_version=api_version,
    )


def opening_fact_id(account: str | None, livemode: bool) -> str:
    return f"opening_{account or 'platform'}_{'live' if livemode else 'test'}"


def balance_totals(balance: Mapping[str, Any]) -> dict[str, int]:
    """available + pending per currency of a Balance object (minor units)."""
    totals: dict[str, int] = {}
    for part in ("available", "pending"):
        for item in balance.get(part) or ():
            if not isinstance(item, Mapping):
                continue
            amount, currency = item.get("amount"), item.get("currency")
            if isinstance(amount, int) and not isinstance(amount, bool) and currency:
                key = str(currency).lower()
                totals[key] = totals.get(key, 0) + amount
    return totals


def opening_balances(balance: Mapping[str, Any], nets: Mapping[str, int]) -> list[Json]:
    """Per currency: (available + pending now) - sum of the nets since the start, sorted."""
    now = balance_totals(balance)
    currencies = sorted(set(now) | {c.lower() for c in nets})
    lowered: dict[str, int] = {}
    for currency, net in nets.items():
        lowered[currency.lower()] = lowered.get(currency.lower(), 0) + net
    return [
        {"currency": currency, "amount": now.get(currency, 0) - lowered.get(currency, 0)}
        for currency in currencies
    ]


def opening_fact(
    balances: Sequence[Mapping[str, Any]],
    *,
    since_s: int,
    fetched_s: int,
    livemode: bool,
    account: str | None,
    api_version: str | None,
) -> StripeEvent:
    """The opening balance of a scope at ``since_s`` (``balances``: see opening_balances)."""
    for item in balances:
        assert isinstance(item.get("amount"), int) and item.get("currency"), item
    obj = {
        "object": "opening_balance",
        "id": "opening",
        "as_of": since_s,
        "balances": [dict(item) for item in balances],
    }
    return _fact(
        opening_fact_id(account, livemode),
        OPENING_BALANCE_FACT,
        obj,
        fetched_s=fetched_s,
        livemode=livemode,
        account=account,
        api_version=api_version,
    )


__all__ = [
    "BALANCE_FACT",
    "BALANCE_TRANSACTION_FACT",
    "FACT_TYPES",
    "OPENING_BALANCE_FACT",
    "balance_fact",
    "balance_totals",
    "bt_fact",
    "bt_fact_id",
    "canonical_json",
    "opening_balances",
    "opening_fact",
    "opening_fact_id",
]
