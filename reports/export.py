"""The journal as books an accounting tool imports: Beancount, hledger, a general-ledger CSV,
Xero's manual-journal CSV and QuickBooks Online's journal-entry CSV.

Reads ``report_journal`` only (the reporting role can run it). Each exported entry is a sum of
whole journal entries, so it balances per currency exactly as they do; the grouping decides
which entries are summed:

- ``transaction``: one exported entry per journal entry;
- ``day``: one per UTC day and currency;
- ``payout`` (the bookkeeper's way): every entry Stripe paid out in an automatic payout
  (``automatic_payout_id``), plus the payout's own movements, summed into one entry per payout,
  dated on its last movement (the arrival at the bank); everything else per day.

Amounts leave as exact decimal strings in the currency's major units (reports/money.py), never
floats. The bytes depend only on the stored journal and the arguments: rows are read in a total
order and every group, posting and directive is sorted, so the delivery order cannot show.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from projections import accounts as acc
from reports import closing, periods
from reports.money import exponent

FORMATS = ("beancount", "hledger", "csv-gl", "xero-csv", "qbo-csv")
GROUPS = ("payout", "day", "transaction")
# The tools that take one currency per file (their importers have no currency column).
SINGLE_CURRENCY_FORMATS = ("xero-csv", "qbo-csv")
EXPORT_POSTINGS_MAX = 5_000_000  # ~1 GiB of rows in memory: narrow the period beyond that
MAPPING_BYTES_MAX = 1_000_000
ACCOUNT_NAME_CHARS_MAX = 200
XERO_TAX_RATE_DEFAULT = "Tax Exempt"
XERO_LINES_MAX = 300  # "You can import up to 300 lines in one template file" (Xero's help)

# ledger account (projections/accounts.py) -> the book account it posts to by default.
DEFAULT_ACCOUNTS: dict[str, str] = {
    acc.STRIPE_PENDING: "Assets:Stripe:Pending",
    acc.STRIPE_AVAILABLE: "Assets:Stripe:Available",
    acc.PAYOUTS_IN_TRANSIT: "Assets:Stripe:PayoutsInTransit",
    acc.BANK: "Assets:Bank:Checking",
    acc.REVENUE: "Income:Stripe:Sales",
    acc.REFUNDS: "Income:Stripe:Refunds",
    acc.APPLICATION_FEE_REVENUE: "Income:Stripe:ApplicationFees",
    acc.APPLICATION_FEE_REFUNDS: "Income:Stripe:ApplicationFeeRefunds",
    acc.PROCESSING_FEES: "Expenses:Stripe:ProcessingFees",
    acc.DISPUTE_FEES: "Expenses:Stripe:DisputeFees",
    acc.APPLICATION_FEES_PAID: "Expenses:Stripe:ApplicationFeesPaid",
    acc.FEE_TAXES: "Expenses:Stripe:FeeTaxes",
    acc.STRIPE_FEES: "Expenses:Stripe:Fees",
    acc.DISPUTE_LOSSES: "Expenses:Stripe:DisputeLosses",
    acc.CONNECT_TRANSFERS: "Expenses:Stripe:ConnectTransfers",
    acc.TOPUPS: "Equity:Stripe:TopUps",
    acc.RESERVED_FUNDS: "Assets:Stripe:Reserved",
    acc.ADVANCES: "Liabilities:Stripe:CapitalAdvances",
    acc.ISSUING: "Expenses:Stripe:Issuing",
    acc.TAXES: "Liabilities:Stripe:Taxes",
    acc.ADJUSTMENTS: "Expenses:Stripe:Adjustments",
    acc.OTHER_ACTIVITY: "Expenses:Stripe:OtherActivity",
    acc.OPENING_BALANCE: "Equity:Stripe:OpeningBalance",
}
assert set(DEFAULT_ACCOUNTS) == set(acc.CHART_OF_ACCOUNTS)
assert len(set(DEFAULT_ACCOUNTS.values())) == len(DEFAULT_ACCOUNTS)

# Beancount's account grammar (hledger accepts it too): a root type, then capitalised parts.
BEANCOUNT_ACCOUNT = re.compile(
    r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]*)+$"
)


class ExportError(ValueError):
    """A bad argument, mapping or store state: one line, nothing written."""


@dataclass(frozen=True)
class Mapping:
    accounts: dict[str, str]  # ledger account -> book account
    source: str  # "the default mapping" or the file's path, for error messages
    xero_tax_rate: str = XERO_TAX_RATE_DEFAULT

    def book_account(self, ledger_account: str) -> str:
        name = self.accounts.get(ledger_account)
        if name is None:
            raise ExportError(
                f"ledger account {ledger_account!r} has no mapping in {self.source} "
                f'(add {ledger_account} = "..." under [accounts])'
            )
        return name


@dataclass
class Group:
    """One exported entry: summed postings of one currency."""

    day: str  # YYYY-MM-DD (UTC)
    key: str  # entry id, "day", or the payout id
    currency: str
    amounts: dict[str, int] = field(default_factory=dict)  # book account -> minor units
    entries: int = 0
    estimated: bool = False
    posted_at_max: int = 0

    @property
    def reference(self) -> str:
        return self.key if self.key != "day" else f"stripe-{self.day}"


def default_mapping() -> Mapping:
    return Mapping(dict(DEFAULT_ACCOUNTS), "the default mapping")


def default_mapping_toml() -> str:
    """The default mapping as a file a user can copy and edit."""
    lines = ["[accounts]"]
    lines += [f'{name} = "{DEFAULT_ACCOUNTS[name]}"' for name in acc.CHART_OF_ACCOUNTS]
    lines += ["", "[xero]", f'tax_rate = "{XERO_TAX_RATE_DEFAULT}"']
    return "\n".join(lines) + "\n"


def load_mapping(path: Path) -> Mapping:
    """A TOML file: ``[accounts]`` ledger account -> book account (replaces the default: a
    chart of accounts is the user's whole list), optional ``[xero] tax_rate``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ExportError(f"cannot read the mapping {path}: {error.strerror}") from None
    if len(data) > MAPPING_BYTES_MAX:
        raise ExportError(f"the mapping {path} is over {MAPPING_BYTES_MAX} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ExportError(f"the mapping {path} is not TOML: {error}") from None
    table = document.get("accounts")
    if not isinstance(table, dict) or not table:
        raise ExportError(f"the mapping {path} has no [accounts] table")
    accounts: dict[str, str] = {}
    for name, value in table.items():
        if name not in acc.CHART_OF_ACCOUNTS:
            raise ExportError(
                f"the mapping {path} names {name!r}, not a ledger account "
                f"(one of: {', '.join(acc.CHART_OF_ACCOUNTS)})"
            )
        if not isinstance(value, str) or not 0 < len(value.strip()) <= ACCOUNT_NAME_CHARS_MAX:
            raise ExportError(f"the mapping {path}: {name} must be a non-empty account name")
        accounts[name] = value.strip()
    tax_rate = (document.get("xero") or {}).get("tax_rate", XERO_TAX_RATE_DEFAULT)
    if not isinstance(tax_rate, str) or not tax_rate.strip():
        raise ExportError(f"the mapping {path}: [xero] tax_rate must be a non-empty string")
    return Mapping(accounts, str(path), tax_rate.strip())


def utc_day(posted_at: int) -> str:
    return dt.datetime.fromtimestamp(posted_at, dt.UTC).strftime("%Y-%m-%d")


def major(minor: int, currency: str) -> str:
    """Minor units -> an exact decimal string in major units: ``(-32000, "usd") == "-320.00"``."""
    assert isinstance(minor, int) and not isinstance(minor, bool), minor
    digits = exponent(currency)
    whole, fraction = divmod(abs(minor), 10**digits)
    sign = "-" if minor < 0 else ""
    return f"{sign}{whole}" + (f".{fraction:0{digits}d}" if digits else "")


def read_postings(
    engine: sa.Engine,
    account: str | None,
    livemode: bool,
    since: int | None,
    until: int | None,
    currency: str | None = None,
) -> list[closing.Posting]:
    """The books' postings of one account and mode in ``[since, until)``: the live journal,
    or where a month is closed, its frozen rows and adjustments (reports/closing.py)."""
    with engine.connect() as connection:
        books = closing.effective_postings(connection, account, livemode)
        if books is None:
            books = _journal(connection, account, livemode, since, until, currency)
    code = currency.lower() if currency else None
    return sorted(
        (
            p for p in books
            if (since is None or p.posted_at >= since)
            and (until is None or p.posted_at < until)
            and (code is None or p.currency == code)
        ),
        key=lambda p: (p.currency, p.posted_at, p.entry_id, p.ledger_account, p.adjustment),
    )  # fmt: skip


def _journal(
    connection: sa.Connection,
    account: str | None,
    livemode: bool,
    since: int | None,
    until: int | None,
    currency: str | None,
) -> list[closing.Posting]:
    where, params = periods.scope_filter("platform" if account is None else account, livemode)
    clauses = [where]
    if since is not None:
        clauses.append("COALESCE(posted_at, 0) >= :since")
        params["since"] = since
    if until is not None:
        clauses.append("COALESCE(posted_at, 0) < :until")
        params["until"] = until
    if currency is not None:
        clauses.append("currency = :currency")
        params["currency"] = currency.lower()
    sql = (
        "SELECT currency, COALESCE(posted_at, 0) AS posted_at, entry_id, kind, ledger_account, "
        "amount, automatic_payout_id, object_type, object_id, estimated FROM report_journal "
        f"WHERE {' AND '.join(clauses)} LIMIT :rows_max"
    )
    params["rows_max"] = EXPORT_POSTINGS_MAX + 1
    rows = list(connection.execute(sa.text(sql), params))
    if len(rows) > EXPORT_POSTINGS_MAX:
        raise ExportError(
            f"more than {EXPORT_POSTINGS_MAX} postings in the period: narrow --since/--until"
        )
    return [closing.posting_of(row) for row in rows]


def _group_of(row: closing.Posting, group_by: str) -> tuple[str, str]:
    """(group key, kind of key) of one posting."""
    if row.adjustment:  # each late change of a closed entry stays its own, named entry
        return f"adjusts:{row.entry_id}", "adjustment"
    if group_by == "transaction":
        return str(row.entry_id), "entry"
    if group_by == "payout":
        if row.automatic_payout_id:
            return str(row.automatic_payout_id), "payout"
        if row.object_type == "payout":
            return str(row.object_id), "payout"
    return "day", "day"


def group_postings(rows: Iterable[closing.Posting], group_by: str, mapping: Mapping) -> list[Group]:
    """Sum the postings into exported entries; drop accounts that sum to zero in an entry."""
    assert group_by in GROUPS, group_by
    groups: dict[tuple[str, str, str], Group] = {}
    seen_entries: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for row in rows:
        key, kind = _group_of(row, group_by)
        day = utc_day(int(row.posted_at))
        slot = (row.currency, key, day if kind == "day" else "")
        group = groups.get(slot)
        if group is None:
            group = groups[slot] = Group(day, key, row.currency)
        name = mapping.book_account(row.ledger_account)
        group.amounts[name] = group.amounts.get(name, 0) + int(row.amount)
        group.estimated = group.estimated or bool(row.estimated)
        if int(row.posted_at) >= group.posted_at_max:
            group.posted_at_max = int(row.posted_at)
            group.day = day  # a payout's entry is dated on its last movement
        seen_entries[slot].add(str(row.entry_id))
    out = []
    for slot, group in groups.items():
        assert sum(group.amounts.values()) == 0, (group.key, group.amounts)
        group.amounts = {name: amount for name, amount in group.amounts.items() if amount != 0}
        group.entries = len(seen_entries[slot])
        if group.amounts:
            out.append(group)
    out.sort(key=lambda g: (g.day, g.currency, g.key != "day", g.key))
    return out


def _narration(group: Group, group_by: str) -> str:
    entries = f"{group.entries} {'entry' if group.entries == 1 else 'entries'}"
    if group.key.startswith("adjusts:"):
        return f"Adjustment of {group.key.removeprefix('adjusts:')} (late for a closed period)"
    if group.key == "day":
        return f"Stripe activity {group.day} ({entries})"
    if group_by == "payout":
        return f"Stripe payout {group.key} ({entries})"
    return f"Stripe {group.key}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_beancount(groups: list[Group], group_by: str) -> str:
    out = ['option "title" "Stripe ledger export"', ""]
    if groups:
        first = groups[0].day
        names = sorted({name for g in groups for name in g.amounts})
        out += [f"{first} open {name}" for name in names]
        out.append("")
    for group in groups:
        flag = "!" if group.estimated else "*"
        out.append(f'{group.day} {flag} "Stripe" {_quote(_narration(group, group_by))}')
        out.append(f"  stripe_ref: {_quote(group.reference)}")
        for name in sorted(group.amounts):
            amount = major(group.amounts[name], group.currency)
            out.append(f"  {name}  {amount} {group.currency.upper()}")
        out.append("")
    return "\n".join(out)


def render_hledger(groups: list[Group], group_by: str) -> str:
    out = ["; Stripe ledger export", ""]
    currencies = sorted({g.currency for g in groups})
    for currency in currencies:  # hledger wants a decimal mark even where there are no decimals
        sample = major(100000 * 10 ** exponent(currency), currency)
        out.append(f"commodity {sample if '.' in sample else sample + '.'} {currency.upper()}")
    names = sorted({name for g in groups for name in g.amounts})
    out += [f"account {name}" for name in names]
    out.append("")
    for group in groups:
        flag = "!" if group.estimated else "*"
        out.append(f"{group.day} {flag} Stripe | {_narration(group, group_by)}  "
                   f"; stripe_ref:{group.reference}")  # fmt: skip
        for name in sorted(group.amounts):
            amount = major(group.amounts[name], group.currency)
            out.append(f"    {name}  {amount} {group.currency.upper()}")
        out.append("")
    return "\n".join(out)


def _csv(header: list[str], rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _lines(groups: list[Group]) -> Iterable[tuple[Group, str, int]]:
    for group in groups:
        for name in sorted(group.amounts):
            yield group, name, group.amounts[name]


def render_csv_gl(groups: list[Group], group_by: str) -> str:
    header = ["date", "reference", "description", "account", "currency", "debit", "credit",
              "estimated"]  # fmt: skip
    rows = (
        [g.day, g.reference, _narration(g, group_by), name, g.currency.upper(),
         major(amount, g.currency) if amount > 0 else "",
         major(-amount, g.currency) if amount < 0 else "", "1" if g.estimated else "0"]
        for g, name, amount in _lines(groups)
    )  # fmt: skip
    return _csv(header, rows)


def _xero_date(day: str) -> str:
    year, month, date = day.split("-")
    return f"{date}/{month}/{year}"  # Xero's template: dd/mm/yyyy


def render_xero(groups: list[Group], group_by: str, tax_rate: str) -> str:
    """Xero's manual journal import: lines sharing Narration and Date form one journal;
    Amount > 0 is a debit, < 0 a credit."""
    header = ["*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
              "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2"]  # fmt: skip
    rows = (
        [f"{_narration(g, group_by)} [{g.reference}]", _xero_date(g.day), g.reference, name,
         tax_rate, major(amount, g.currency), "", "", "", ""]
        for g, name, amount in _lines(groups)
    )  # fmt: skip
    return _csv(header, rows)


def _qbo_date(day: str) -> str:
    year, month, date = day.split("-")
    return f"{month}/{date}/{year}"  # QuickBooks Online's journal import: MM/DD/YYYY


def render_qbo(groups: list[Group], group_by: str) -> str:
    """QuickBooks Online's journal entry import: rows sharing Journal No. form one entry."""
    header = ["Journal No.", "Journal Date", "Account Name", "Debits", "Credits", "Description",
              "Name"]  # fmt: skip
    numbers = {id(g): number for number, g in enumerate(groups, start=1)}
    rows = (
        [f"S{numbers[id(g)]:06d}", _qbo_date(g.day), name,
         major(amount, g.currency) if amount > 0 else "",
         major(-amount, g.currency) if amount < 0 else "",
         f"{_narration(g, group_by)} [{g.reference}]", ""]
        for g, name, amount in _lines(groups)
    )  # fmt: skip
    return _csv(header, rows)


def check_names(groups: list[Group], fmt: str) -> None:
    """Beancount and hledger take only names of their grammar: say which one is not."""
    if fmt not in ("beancount", "hledger"):
        return
    for name in sorted({name for g in groups for name in g.amounts}):
        if not BEANCOUNT_ACCOUNT.match(name):
            raise ExportError(
                f"account {name!r} is not a {fmt} account name (Assets|Liabilities|Equity|"
                "Income|Expenses, then :Capitalised parts)"
            )


def render(groups: list[Group], fmt: str, group_by: str, mapping: Mapping) -> str:
    assert fmt in FORMATS, fmt
    check_names(groups, fmt)
    if fmt == "beancount":
        return render_beancount(groups, group_by)
    if fmt == "hledger":
        return render_hledger(groups, group_by)
    if fmt == "csv-gl":
        return render_csv_gl(groups, group_by)
    if fmt == "xero-csv":
        return render_xero(groups, group_by, mapping.xero_tax_rate)
    return render_qbo(groups, group_by)


def export(
    engine: sa.Engine,
    fmt: str,
    group_by: str = "payout",
    mapping: Mapping | None = None,
    account: str | None = None,
    livemode: bool = False,
    since: int | None = None,
    until: int | None = None,
    currency: str | None = None,
) -> dict[str, str]:
    """currency ('' where the format takes many) -> the file's text; one currency per file for
    Xero and QuickBooks Online, and for Xero files of at most 300 lines ('usd', 'usd.2', ...)."""
    if fmt not in FORMATS:
        raise ExportError(f"no format {fmt!r}; available: {', '.join(FORMATS)}")
    if group_by not in GROUPS:
        raise ExportError(f"no grouping {group_by!r}; available: {', '.join(GROUPS)}")
    if since is not None and until is not None and since >= until:
        raise ExportError("--since must be before --until")
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        raise ExportError(f"not a currency code: {currency!r} (e.g. usd)")
    mapping = mapping or default_mapping()
    rows = read_postings(engine, account, livemode, since, until, currency)
    groups = group_postings(rows, group_by, mapping)
    if fmt not in SINGLE_CURRENCY_FORMATS:
        return {"": render(groups, fmt, group_by, mapping)}
    currencies = sorted({g.currency for g in groups}) or [(currency or "").lower()]
    files = {}
    for code in currencies:
        mine = [g for g in groups if g.currency == code]
        parts = _xero_parts(mine) if fmt == "xero-csv" else [mine]
        for number, part in enumerate(parts, start=1):
            files[code if number == 1 else f"{code}.{number}"] = render(
                part, fmt, group_by, mapping
            )
    return files


def payout_entry(
    engine: sa.Engine, payout_id: str, account: str | None, livemode: bool, fmt: str = "beancount"
) -> str | None:
    """The exported entry of one payout (what `export --group-by payout` writes for it, with
    the default mapping), or None when no posting names that payout."""
    rows = read_postings(engine, account, livemode, None, None, None)
    mine = [g for g in group_postings(rows, "payout", default_mapping()) if g.key == payout_id]
    return render(mine, fmt, "payout", default_mapping()) if mine else None


def _xero_parts(groups: list[Group]) -> list[list[Group]]:
    """Xero imports at most XERO_LINES_MAX lines per file: whole journals, in order, per file."""
    parts: list[list[Group]] = [[]]
    lines = 0
    for group in groups:
        size = len(group.amounts)
        if size > XERO_LINES_MAX:
            raise ExportError(
                f"the entry {group.reference} has {size} lines, over Xero's {XERO_LINES_MAX} "
                "per file: use --group-by day or transaction"
            )
        if lines + size > XERO_LINES_MAX:
            parts.append([])
            lines = 0
        parts[-1].append(group)
        lines += size
    return parts
