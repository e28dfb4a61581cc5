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


def parse_major(text: str, currency: str) -> int:
    """A non-negative amount in major units ("0", "0.01", "5") -> minor units of ``currency``,
    exactly (no float): ``parse_major("0.01", "usd") == 1``, ``("1", "jpy") == 1``."""
    digits = exponent(currency)
    whole, _dot, fraction = text.strip().partition(".")
    if not whole.isdigit() and not (whole == "" and fraction.isdigit()):
        raise ValueError(f"not an amount in major units: {text!r} (e.g. 0, 0.01, 5)")
    if len(fraction) > digits or (fraction and not fraction.isdigit()):
        raise ValueError(f"{text!r} has more decimals than {currency.upper()} ({digits})")
    return int(whole or "0") * 10**digits + int((fraction or "0").ljust(digits, "0") or "0")
