"""The query string of a dashboard page -> ``Filters``, or ``BadQuery`` (HTTP 400).

Everything a page reads from the URL goes through here: each parameter has a pattern and a
bound, unknown or repeated parameters are refused, so no text from a URL ever reaches SQL
other than as a bound value that already matched its pattern.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

QUERY_BYTES_MAX = 2048
QUERY_FIELDS_MAX = 16
SHOWN_CHARS_MAX = 40  # of a refused parameter or value, quoted in the 400
PAGE_NUMBER_MAX = 1000  # pages of a list: deeper than this, narrow the filters instead
YEAR_MIN, YEAR_MAX = 2000, 2100
DAY_S = 86_400

PATTERNS = {
    "account": re.compile(r"platform|acct_[A-Za-z0-9]{1,64}"),
    "mode": re.compile(r"test|live"),
    "currency": re.compile(r"[a-z]{3}"),
    "since": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "until": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "page": re.compile(r"[1-9]\d{0,3}"),
    "invoice": re.compile(r"in_[A-Za-z0-9_]{1,64}"),
    "ledger_account": re.compile(r"[a-z_]{1,32}"),
    "kind": re.compile(r"[a-z_]{1,40}"),
}
COMMON = ("account", "mode", "currency", "since", "until", "page")


class BadQuery(ValueError):
    """A query string the dashboard refuses; the message is one line, safe to show."""


@dataclass(frozen=True)
class Filters:
    account: str | None = None  # "platform" or acct_...
    mode: str | None = None  # "test", "live" or None (both)
    currency: str | None = None
    since: str | None = None  # YYYY-MM-DD, included
    until: str | None = None  # YYYY-MM-DD, excluded
    page: int = 1
    extra: dict[str, str] = field(default_factory=dict)  # page-specific: invoice, kind, ...

    @property
    def livemode(self) -> bool | None:
        return None if self.mode is None else self.mode == "live"

    @property
    def since_s(self) -> int | None:
        return None if self.since is None else _day_start_s(self.since)

    @property
    def until_s(self) -> int | None:
        return None if self.until is None else _day_start_s(self.until)

    def query(self, **changes: str | int | None) -> str:
        """This page's query string with ``changes`` (None removes a parameter): for links."""
        values: dict[str, str | int | None] = {
            "account": self.account, "mode": self.mode, "currency": self.currency,
            "since": self.since, "until": self.until, **self.extra,
            "page": self.page if self.page != 1 else None,
        }  # fmt: skip
        values.update(changes)
        kept = {key: value for key, value in values.items() if value is not None}
        return ("?" + urlencode(kept)) if kept else ""

    def nav_query(self) -> str:
        """The filters every page shares, for links to the other pages (no page, no extras)."""
        return Filters(self.account, self.mode, self.currency, self.since, self.until).query()


def _day_start_s(text: str) -> int:
    day = dt.date.fromisoformat(text)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def parse(query: bytes, allowed: tuple[str, ...] = ()) -> Filters:
    """Parse a raw query string; ``allowed`` names the page's own parameters beyond COMMON."""
    if len(query) > QUERY_BYTES_MAX:
        raise BadQuery(f"query string longer than {QUERY_BYTES_MAX} bytes")
    try:
        text = query.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=QUERY_FIELDS_MAX)  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise BadQuery(f"query string is not ASCII key=value pairs (at most "
                       f"{QUERY_FIELDS_MAX})") from None  # fmt: skip
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in COMMON and key not in allowed:
            raise BadQuery(f"unknown parameter {key[:SHOWN_CHARS_MAX]!r}")
        if key in values:
            raise BadQuery(f"parameter {key!r} given twice")
        values[key] = value.strip().lower() if key in ("currency", "mode") else value.strip()
    values = {key: value for key, value in values.items() if value != ""}  # empty form fields
    for key, value in values.items():
        if not PATTERNS[key].fullmatch(value):
            raise BadQuery(f"parameter {key!r} is not valid: {value[:SHOWN_CHARS_MAX]!r}")
    for key in ("since", "until"):
        if key in values:
            _check_day(key, values[key])
    if "since" in values and "until" in values and values["since"] >= values["until"]:
        raise BadQuery("since must be before until")
    page = int(values.pop("page", "1"))
    if page > PAGE_NUMBER_MAX:
        raise BadQuery(f"page must be 1..{PAGE_NUMBER_MAX}")
    return Filters(
        account=values.pop("account", None), mode=values.pop("mode", None),
        currency=values.pop("currency", None), since=values.pop("since", None),
        until=values.pop("until", None), page=page, extra=values,
    )  # fmt: skip


def _check_day(key: str, text: str) -> None:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"parameter {key!r} is not a date (YYYY-MM-DD): {text!r}") from None
    if not YEAR_MIN <= day.year <= YEAR_MAX:
        raise BadQuery(f"parameter {key!r} must be within {YEAR_MIN}..{YEAR_MAX}")
