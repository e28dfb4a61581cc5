"""Rows of a report view -> a table for people, JSON or CSV for machines.

People: aligned columns, amounts in major units with their currency (``1,234.56 USD``,
``3,000 JPY``), timestamps as ``YYYY-MM-DD HH:MM UTC``; on a terminal the table fits its width
(the columns that do not fit are named under it; ``--wide`` shows them all). Machines: JSON is
a list of objects keyed by the view's columns, amounts as integer minor units, timestamps
ISO-8601 UTC; CSV likewise.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from reports.money import format_amount

# Columns holding money (minor units) and columns holding unix-second timestamps, by name.
AMOUNT_COLUMNS = frozenset(
    {
        "amount", "amount_due", "amount_paid", "amount_remaining", "captured", "refunded",
        "dispute_withdrawn", "dispute_reinstated", "dispute_fees", "fees", "payouts",
        "ledger_balance", "stripe_available", "stripe_pending", "drift", "funds_withdrawn",
        "funds_reinstated", "gross", "fee", "net", "starting_balance", "activity_gross",
        "activity_fee", "activity_net", "ending_balance", "bt_gross", "bt_fee", "bt_net",
        "debits", "credits", "balance",
    }
)  # fmt: skip
TIME_COLUMNS = frozenset(
    {
        "due_date", "finalized_at", "paid_at", "voided_at", "marked_uncollectible_at",
        "evidence_due_by", "created", "closed_at", "posted_at", "created_utc",
        "available_on_utc", "arrival_date", "as_of",
    }
)  # fmt: skip
FORMATS = ("table", "json", "csv")
COLUMN_GAP_CHARS = 2
TABLE_WIDTH_CHARS_MIN = 40  # below this a table is unreadable anyway: fit 40


def _iso(value: int) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")


def machine_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in TIME_COLUMNS:
        return _iso(int(value))
    if column in AMOUNT_COLUMNS or column == "livemode":
        return bool(value) if column == "livemode" else int(value)
    return value


def person_value(column: str, value: Any, currency: str | None) -> str:
    if value is None:
        return ""
    if column in AMOUNT_COLUMNS and currency:
        return format_amount(int(value), currency)
    if column in TIME_COLUMNS:
        return dt.datetime.fromtimestamp(int(value), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if column == "livemode":
        return "live" if value else "test"
    if column == "account":
        return str(value)
    return str(value)


def terminal_width(wide: bool) -> int | None:
    """The width a table must fit: the terminal's (or $COLUMNS), none when ``wide`` or when
    the output goes to a file or a pipe (nothing there wraps).

    COLUMNS is read here, not through ``Settings``: it is the terminal's width, set by the
    shell (and read by ``shutil.get_terminal_size`` too), not a configuration of the ledger."""
    if wide or not (os.environ.get("COLUMNS") or sys.stdout.isatty()):
        return None
    return max(shutil.get_terminal_size().columns, TABLE_WIDTH_CHARS_MIN)


def render(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, width: int | None = None
) -> str:
    """``width``: the table's columns beyond it are left out and named (table format only)."""
    assert fmt in FORMATS, fmt
    if fmt == "json":
        objects = [
            {
                column: machine_value(column, value)
                for column, value in zip(columns, row, strict=True)
            }
            for row in rows
        ]
        return json.dumps(objects, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                _csv_cell(column, value) for column, value in zip(columns, row, strict=True)
            )
        return out.getvalue()
    return _table(columns, rows, width)


def _csv_cell(column: str, value: Any) -> Any:
    cell = machine_value(column, value)
    if cell is None:
        return ""
    return str(cell).lower() if isinstance(cell, bool) else cell


def _fitting(widths: Sequence[int], width: int | None) -> list[int]:
    """Indexes of the columns that fit in ``width``, left to right (the first always)."""
    if width is None:
        return list(range(len(widths)))
    kept, used = [0], widths[0]
    for index in range(1, len(widths)):
        if used + COLUMN_GAP_CHARS + widths[index] <= width:
            kept.append(index)
            used += COLUMN_GAP_CHARS + widths[index]
    return kept


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None) -> str:
    currency_at = columns.index("currency") if "currency" in columns else None
    cells = [
        [
            person_value(column, value, row[currency_at] if currency_at is not None else None)
            for column, value in zip(columns, row, strict=True)
        ]
        for row in rows
    ]
    # The platform account has no id: say so rather than leave the cell blank.
    if "account" in columns:
        at = columns.index("account")
        for cell_row in cells:
            cell_row[at] = cell_row[at] or "platform"
    all_widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    kept = _fitting(all_widths, width)
    hidden = [columns[i] for i in range(len(columns)) if i not in kept]
    widths = [all_widths[i] for i in kept]
    right = [columns[i] in AMOUNT_COLUMNS or columns[i] in ("invoices", "attempt_count",
             "hours_left") for i in kept]  # fmt: skip

    def line(values: Sequence[str]) -> str:
        return (" " * COLUMN_GAP_CHARS).join(
            value.rjust(width) if align else value.ljust(width)
            for value, width, align in zip(values, widths, right, strict=True)
        ).rstrip()

    out = [line([columns[i] for i in kept]), line(["-" * width for width in widths])]
    out += [line([values[i] for i in kept]) for values in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    if hidden:
        out.append(f"(not shown, to fit {width} columns: {', '.join(hidden)}; --wide shows all)")
    return "\n".join(out) + "\n"
