"""Run a report view with the filters a person asks for."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from reports.views import report_names


class UnknownReport(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no report named {name!r}; available: {', '.join(report_names())}")


def run_report(
    engine: sa.Engine, name: str, account: str | None = None, livemode: bool | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    if name not in report_names():
        raise UnknownReport(name)
    view = sa.table(f"report_{name}", sa.column("account"), sa.column("livemode"))
    statement = sa.select(sa.text("*")).select_from(view)
    if account is not None:
        statement = statement.where(
            view.c.account.is_(None) if account == "platform" else view.c.account == account
        )
    if livemode is not None:
        statement = statement.where(view.c.livemode == livemode)
    # The same order on both databases (they sort NULLs differently): live last, platform first.
    statement = statement.order_by(
        view.c.livemode, sa.func.coalesce(view.c.account, ""), sa.text("1"), sa.text("3")
    )
    with engine.connect() as connection:
        result = connection.execute(statement)
        return list(result.keys()), [tuple(row) for row in result]
