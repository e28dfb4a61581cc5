"""docs/BOOKS.md's month closed end to end: every command it shows, run in its order on the story
of tests/support/books_story.py, prints what the doc says; its default mapping is the code's.

After a deliberate change to an export layout, rewrite the doc's outputs with:
    .venv/bin/python -m tests.test_books_doc
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

import pytest

from cli.main import main
from reports import closing, export, periods
from tests.conftest import ROOT
from tests.support.books_story import late, october
from tests.test_export import _csv_totals, _load, _text

DOC = ROOT / "docs" / "BOOKS.md"
BLOCK = re.compile(r"```\n(stripe-ledger [^\n]*)\n```\n```text\n(.*?)```", re.DOTALL)
MAPPING = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def _outputs(database_url: str) -> list[tuple[str, str]]:
    """(command, its stdout) for each command of the doc, the late fact after the close."""
    _load(database_url, october())
    out = []
    for command, _expected in BLOCK.findall(DOC.read_text()):
        argv = shlex.split(command.split("  #")[0])[1:]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(argv)
        assert code == 0, command
        out.append((command, stdout.getvalue()))
        if argv[0] == "close-period":
            _load(database_url, late())  # balance-sync stores a late balance transaction
    return out


def test_the_doc_shows_every_format_and_a_close() -> None:
    commands = [command for command, _ in BLOCK.findall(DOC.read_text())]
    for fmt in export.FORMATS:
        assert any(f"--format {fmt}" in command for command in commands), fmt
    assert any(command.startswith("stripe-ledger close-period") for command in commands)


def test_every_command_prints_what_the_doc_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'books.db'}"
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    expected = [output for _command, output in BLOCK.findall(DOC.read_text())]
    got = [output for _command, output in _outputs(url)]
    assert got == expected


def test_the_doc_shows_the_default_mapping() -> None:
    assert MAPPING.findall(DOC.read_text()) == [export.default_mapping_toml()]


def update() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/books.db"
        os.environ["LEDGER_DATABASE_URL"] = url
        outputs = iter(_outputs(url))
    text = DOC.read_text()

    def fill(match: re.Match[str]) -> str:
        command, output = next(outputs)
        assert command == match[1]
        return f"```\n{command}\n```\n```text\n{output}```"

    text = BLOCK.sub(fill, text)
    text = MAPPING.sub(lambda _m: f"```toml\n{export.default_mapping_toml()}```", text)
    DOC.write_text(text)
    print(f"rewrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    update()


def test_the_story_ties_to_the_balance_summary(tmp_path: Path) -> None:
    """Where every entry is Stripe's own (no estimates), the Stripe balance accounts of the
    export move by what Stripe's Balance summary says: activity net + payouts."""
    store = _load(f"sqlite:///{tmp_path / 'story.db'}", october())
    since, until = closing.parse_period("2026-10")
    totals = _csv_totals(_text(store, "csv-gl", since=since, until=until))
    balance = sum(
        total
        for (_currency, name), total in totals.items()
        if name in ("Assets:Stripe:Pending", "Assets:Stripe:Available")
    )
    columns, rows = periods.balance_summary(store.engine, since, until, "platform", False)
    summary = dict(zip(columns, rows[0], strict=True))
    assert balance == summary["activity_net"] + summary["payouts"] == 2883
    assert summary["ending_balance"] - summary["starting_balance"] == balance
