"""The read side's preparation: live projection tables, their ``proj_*`` views, the reports'
``report_*`` views. What ``migrate``, ``project``, ``rebuild`` and ``serve`` make sure of before
they read or fold, and what a test or script calls to read reports from a fresh store.
"""

from __future__ import annotations

import sqlalchemy as sa

from ledger.database import WRITE
from projections import registry, worker
from reports import views


def prepare_read_side(engine: sa.Engine, *, refresh_views: bool = True) -> None:
    """Live projection tables, their ``proj_*`` views and the ``report_*`` views.

    ``refresh_views=False`` (``project``): create the report views only when one is missing. A
    worker logged in as ``ledger_runtime`` does not own the views migrate made, so it cannot
    drop and recreate them (docs/RELIABILITY.md, runtime role)."""
    worker.prepare(engine, registry.get(), worker=False)
    if not refresh_views:
        existing = set(sa.inspect(engine).get_view_names())
        if all(f"report_{name}" in existing for name in views.report_names()):
            return
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        views.create_views(connection)
