"""Rewrite the expected outputs in docs/REPORTS.md from the demo history (seed 7, 400 events)
and its balance transactions (synced from the stand-in, as the demo does).

Run it after a deliberate change to the demo generator or a report view:
    .venv/bin/python scripts/update-report-examples.py
tests/test_reports_doc.py then checks the doc on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from demo.balance import sync_in_process  # noqa: E402
from demo.history import generate  # noqa: E402
from ledger.database import create_engine, migrate  # noqa: E402
from ledger.envelope import event_from_dict  # noqa: E402
from ledger.store import Incoming, open_event_store, utc_now  # noqa: E402
from projections import worker  # noqa: E402
from reports import render  # noqa: E402
from reports.read_side import prepare_read_side  # noqa: E402

DOC = ROOT / "docs" / "REPORTS.md"
BLOCK = re.compile(r"```sql\n(.*?)\n```\n```text\n(.*?)```", re.DOTALL)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/doc.db")
        migrate(engine)
        prepare_read_side(engine)
        store = open_event_store(engine)
        history = generate(seed=7, events=400)
        store.append(
            [Incoming(event_from_dict(e), "import", utc_now()) for e in history.deliveries]
        )
        sync_in_process(history, store)  # its balance transactions, as balance-sync gets them
        worker.run(store, until_idle_s=0)

        def replace(match: re.Match[str]) -> str:
            with engine.connect() as connection:
                result = connection.execute(sa.text(match[1]))
                out = render.render(list(result.keys()), [tuple(r) for r in result], "table")
            return f"```sql\n{match[1]}\n```\n```text\n{out}```"

        DOC.write_text(BLOCK.sub(replace, DOC.read_text()))
        engine.dispose()
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
