"""docs/PROJECTIONS.md's merge-rule tables say what the code's Fields classes declare: a field
added, removed or given another rule in one and not the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

from projections.disputes import DISPUTE_LIFECYCLE, DisputeFields
from projections.invoices import INVOICE_LIFECYCLE, InvoiceFields
from projections.journal_rules import ROOT_FIELDS, MoneyFacts
from projections.merge import Fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "PROJECTIONS.md"
Pairs = set[tuple[str, str]]


def _section(heading: str) -> str:
    text = DOC.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _rows(section: str, header: str) -> list[list[str]]:
    """The cells of the table that starts with ``header`` in ``section``."""
    lines = section[section.index(header) :].splitlines()[2:]  # past the header and |---|
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([cell.strip() for cell in cells])
    return rows


def _names(cell: str) -> list[str]:
    """``finalized_at, paid_at (`status_transitions`)`` -> the field names, without remarks."""
    return [name.strip() for name in re.sub(r"\([^)]*\)", "", cell).split(",") if name.strip()]


def _pairs(fields_type: type[Fields]) -> Pairs:
    return {(name, rule.name) for name, rule in fields_type.rules()}


def _documented(section: str) -> Pairs:
    return {
        (name, rule) for cell, rule in _rows(section, "| field | rule |") for name in _names(cell)
    }


def _lifecycle(section: str) -> dict[str, int]:
    line = next(line for line in section.splitlines() if line.startswith("Lifecycle:"))
    text = " ".join(section[section.index(line) :].split("\n\n")[0].split())
    ranks = {}
    for statuses, rank in re.findall(r"((?:\w+ \| )*\w+) (\d+)", text):  # `paid 3 | void 3`
        ranks.update({status.strip(): int(rank) for status in statuses.split("|")})
    return ranks


def test_invoice_rules_table_is_the_code() -> None:
    section = _section("#### Invoices (`invoices.InvoiceFields`)")
    assert _documented(section) == _pairs(InvoiceFields)
    assert _lifecycle(section) == dict(INVOICE_LIFECYCLE.ranks)


def test_dispute_rules_table_is_the_code() -> None:
    section = _section("#### Disputes (`disputes.DisputeFields`)")
    assert _documented(section) == _pairs(DisputeFields)
    assert _lifecycle(section) == dict(DISPUTE_LIFECYCLE.ranks)


def test_journal_root_rules_table_is_the_code() -> None:
    section = _section("#### Journal roots (`journal_rules.ROOT_FIELDS`)")
    money_roots = [root for root, cls in ROOT_FIELDS.items() if issubclass(cls, MoneyFacts)]
    documented: dict[str, Pairs] = {root: set() for root in ROOT_FIELDS}
    for roots, cell, rule in _rows(section, "| root | field | rule |"):
        named = money_roots if roots == "every root" else _names(roots)
        for root in named:
            documented[root.replace(" ", "_")] |= {(name, rule) for name in _names(cell)}
    assert documented == {root: _pairs(cls) for root, cls in ROOT_FIELDS.items()}
