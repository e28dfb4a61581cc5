"""Money in a demo history: zero-decimal currencies, Stripe's card fees, settlement in another
currency, and the shape of a fee-less balance transaction. Integers in minor units only."""

from __future__ import annotations

from demo.history.ids import Json

ZERO_DECIMAL = frozenset({"jpy"})
# Settlement currency: the US platform holds no EUR, so its EUR charges settle in USD at this
# rate (percent: 108 = 1.08), as Stripe converts them; the connected account (DE) holds both.
FX_SETTLEMENT: dict[tuple[str | None, str], tuple[str, int]] = {(None, "eur"): ("usd", 108)}
APPLICATION_FEE_PERCENT = 2  # of each direct charge on the connected account, to the platform


def processing_fee(amount: int, currency: str) -> int:
    """Stripe's card pricing, roughly: 2.9% + 30c (US), 1.5% + 25c (EEA), 3.6% (Japan)."""
    if currency == "jpy":
        return (amount * 36 + 500) // 1000
    if currency == "eur":
        return (amount * 15 + 500) // 1000 + 25
    return (amount * 29 + 500) // 1000 + 30


def settled(account: str | None, currency: str, amount: int) -> tuple[str, int, float | None]:
    """(settlement currency, amount in it, exchange_rate or None): a charge, refund or dispute
    of ``amount`` (minor units of ``currency``) as the account's balance transaction holds it."""
    if (account, currency) not in FX_SETTLEMENT:
        return currency, amount, None
    into, rate_percent = FX_SETTLEMENT[(account, currency)]
    magnitude = (abs(amount) * rate_percent + 50) // 100  # both two-decimal: round half up
    return into, magnitude if amount >= 0 else -magnitude, rate_percent / 100


def simple_bt(
    bt_id: str,
    created: int,
    currency: str,
    amount: int,
    source: str,
    bt_type: str,
    category: str,
    description: str,
) -> Json:
    """A fee-less balance transaction, available at once (refunds, payouts, reversals)."""
    return {
        "id": bt_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created,
        "balance_type": "payments",
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": amount,
        "reporting_category": category,
        "source": source,
        "status": "available",
        "type": bt_type,
    }
