"""Logs (#20): in JSON mode every line is JSON, the libraries' too, with fixed event names."""

from __future__ import annotations

import ast
import json
import logging
import re

import pytest

from cli.progress import Progress
from ledger.logs import LIBRARY_EVENT, configure, get_logger
from tests.conftest import ROOT


def _json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_library_records_are_json_lines_in_json_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in serve and ingest (uvicorn with log_config=None): uvicorn's loggers propagate to the
    # root handler. A test that ran uvicorn with its own logging config may have changed that.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "propagate", True)
        monkeypatch.setattr(logger, "handlers", [])
        monkeypatch.setattr(logger, "disabled", False)
    configure("json", "info")
    logging.getLogger("kafka.conn").warning(
        "connect to %s failed, secret whsec_%s", "127.0.0.1:1", "abc123"
    )
    try:
        raise ConnectionRefusedError("refused")
    except ConnectionRefusedError:
        logging.getLogger("uvicorn.error").exception("bind failed")
    get_logger("cli").info("ours", count=1)
    lines = _json_lines(capsys.readouterr().err)  # json.loads fails on any plain-text line
    assert [line["event"] for line in lines] == [LIBRARY_EVENT, LIBRARY_EVENT, "ours"]
    kafka, uvicorn, _ = lines
    assert kafka["logger"] == "kafka.conn" and kafka["level"] == "warning"
    assert kafka["message"] == "connect to 127.0.0.1:1 failed, secret [redacted]"
    assert "ConnectionRefusedError: refused" in str(uvicorn["exception"])
    assert str(kafka["timestamp"]).endswith("Z")


def test_console_mode_keeps_library_lines_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure("console", "info")
    logging.getLogger("kafka.conn").warning("broker away")
    assert capsys.readouterr().err == "WARNING kafka.conn: broker away\n"


def test_progress_has_a_fixed_event_name_and_never_goes_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("json", "info")
    progress = Progress("posting", 10, get_logger("demo"))
    progress.update(10)  # logged: done
    progress.update(7)  # a slower sender's older count
    assert progress.done == 10
    lines = _json_lines(capsys.readouterr().err)
    assert lines and all(
        (line["event"], line["task"], line["done"]) == ("progress", "posting", 10) for line in lines
    )


LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _log_calls() -> list[tuple[str, ast.expr | None]]:
    """(where, first argument) of every ``log.<level>(...)`` call in the project's code."""
    calls = []
    for package in ("cli", "ledger", "ingest", "projections", "reports", "demo"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and (
                        ast.unparse(node.func.value).endswith("log")
                        or ast.unparse(node.func.value).startswith(
                            ("logs.get_logger(", "get_logger(")
                        )
                    )
                ):
                    first = node.args[0] if node.args else None
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", first))
    return calls


def test_every_event_is_a_fixed_snake_case_name_in_the_docs_table() -> None:
    docs = (ROOT / "docs" / "LOGS.md").read_text(encoding="utf-8")
    table = set(re.findall(r"`([a-z][a-z0-9_]*)`", "\n".join(
        line.split("|")[1] for line in docs.splitlines() if line.startswith("| `")
    )))  # fmt: skip
    calls = _log_calls()
    assert len(calls) > 40, "the scan finds the calls"
    named = []
    for where, first in calls:
        literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
        assert literal and EVENT_NAME.match(first.value), f"{where}: not a fixed event name"
        named.append(first.value)
    assert set(named) <= table, sorted(set(named) - table)
