"""Minor units -> a human amount string. Integers in, strings out: never a float on the way."""

from __future__ import annotations

# Stripe's currency exponents (docs.stripe.com/currencies): most have two decimals.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def exponent(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_amount(minor: int, currency: str) -> str:
    """``format_amount(123456, "usd") == "1,234.56 USD"``; ``(3000, "jpy") == "3,000 JPY"``."""
    assert isinstance(minor, int) and not isinstance(minor, bool), minor
    digits = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    text = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    return f"{sign}{text} {currency.upper()}"
