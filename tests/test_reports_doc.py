"""docs/REPORTS.md's example queries, run on both databases, must print what the doc says."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from demo.balance import sync_in_process
from demo.history import generate
from ledger.database import create_engine, migrate
from ledger.envelope import event_from_dict
from ledger.store import Incoming, open_event_store, utc_now
from projections import worker
from reports import render
from reports.read_side import prepare_read_side
from tests.conftest import ROOT

DOC = ROOT / "docs" / "REPORTS.md"
BLOCK = re.compile(r"```sql\n(.*?)\n```(?:\n```text\n(.*?)```)?", re.DOTALL)


def examples() -> list[tuple[str, str | None]]:
    return [(sql, expected) for sql, expected in BLOCK.findall(DOC.read_text())]


def test_the_doc_has_examples_with_outputs() -> None:
    found = examples()
    assert len(found) >= 6
    assert sum(1 for _sql, expected in found if expected) >= 4


def test_every_example_prints_what_the_doc_says(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    history = generate(seed=7, events=400)  # the demo's defaults
    store.append([Incoming(event_from_dict(e), "import", utc_now()) for e in history.deliveries])
    sync_in_process(history, store)  # and its balance transactions, as the demo syncs them
    worker.run(store, until_idle_s=0)
    for sql, expected in examples():
        with engine.connect() as connection:
            result = connection.execute(sa.text(sql))
            got = render.render(list(result.keys()), [tuple(row) for row in result], "table")
        if expected:
            assert got == expected, (
                f"docs/REPORTS.md is stale (scripts/update-report-examples.py rewrites it) "
                f"for:\n{sql}\n\ngot:\n{got}"
            )


@pytest.mark.parametrize("name", ["balances", "invoices", "disputes"])
def test_the_doc_names_every_column_of_the_main_views(name: str) -> None:
    from tests.test_rebuild_reports import REPORT_COLUMNS

    row = next(
        line for line in DOC.read_text().splitlines() if line.startswith(f"| `report_{name}`")
    )
    assert row.split("|")[3].strip() == ", ".join(REPORT_COLUMNS[name])
