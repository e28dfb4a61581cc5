"""Run a report view with the filters a person asks for."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from reports import periods
from reports.views import report_names


def cli_names() -> list[str]:
    """The report names as the command line spells them (balance-summary)."""
    return [name.replace("_", "-") for name in report_names()]


class UnknownReport(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no report named {name!r}; available: {', '.join(cli_names())}")


# The pipeline's views: one row per store, projection, dead letter or partition, not per
# account and mode, so --account/--livemode do not apply and they sort by their first column.
UNSCOPED = frozenset({"store_position", "projection_checkpoints", "projection_failures",
                      "dead_letters",
                      "consumer_offsets"})  # fmt: skip


class NotScoped(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"--account/--livemode do not apply to {name.replace('_', '-')}")


class PeriodNotSupported(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"--since/--until apply to balance-summary, journal and balance-itemized, not {name}"
        )


def run_report(
    engine: sa.Engine,
    name: str,
    account: str | None = None,
    livemode: bool | None = None,
    since: int | None = None,
    until: int | None = None,
    as_of: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows of ``report_<name>`` (``balance-summary`` and ``balance_summary`` alike), for
    one account and mode if asked; ``since``/``until`` (unix s, half-open) and ``as_of`` where
    the report has a period (see periods.py)."""
    name = name.replace("-", "_")
    if name not in report_names():  # the view's name is an identifier: only the known ones
        raise UnknownReport(name)
    if name == "balance_summary" and (since is not None or until is not None):
        return periods.balance_summary(engine, since, until, account, livemode)
    if name == "trial_balance" and as_of is not None:
        return periods.trial_balance(engine, as_of, account, livemode)
    if (since is not None or until is not None) and name not in periods.TIME_COLUMNS:
        raise PeriodNotSupported(name)
    if name in UNSCOPED:
        if account is not None or livemode is not None:
            raise NotScoped(name)
        return _run(engine, sa.select(sa.text("*")).select_from(sa.table(f"report_{name}")),
                    f"report_{name}", [sa.text("1")])  # fmt: skip
    time_column = periods.TIME_COLUMNS.get(name, "account")
    view = sa.table(
        f"report_{name}", sa.column("account"), sa.column("livemode"), sa.column(time_column)
    )
    statement = sa.select(sa.text("*")).select_from(view)
    if since is not None:
        statement = statement.where(view.c[time_column] >= since)
    if until is not None:
        statement = statement.where(view.c[time_column] < until)
    if account is not None:
        statement = statement.where(
            view.c.account.is_(None) if account == "platform" else view.c.account == account
        )
    if livemode is not None:
        statement = statement.where(view.c.livemode == livemode)
    # The same order on both databases (they sort NULLs differently): live last, platform first;
    # then the first and third columns and the report's time column (_run breaks the ties).
    leading = [
        view.c.livemode, sa.func.coalesce(view.c.account, ""), sa.text("1"), sa.text("3"),
        view.c[time_column],
    ]  # fmt: skip
    return _run(engine, statement, f"report_{name}", leading)


def _run(
    engine: sa.Engine, statement: sa.Select[Any], view: str, leading: list[Any]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows in ONE order, whatever the plan: after ``leading``, every column of the view in
    turn (NULLs last on both databases), so that rows equal in the leading keys (a report's
    per-day rows, daily_volume's) never come back in the order a hash aggregate left them."""
    with engine.connect() as connection:
        names = connection.execute(sa.text(f"SELECT * FROM {view} WHERE 1 = 0")).keys()
        ties: list[Any] = []
        for name in names:
            ties += [sa.column(name).is_(None), sa.column(name)]
        result = connection.execute(statement.order_by(*leading, *ties))
        return list(result.keys()), [tuple(row) for row in result]
