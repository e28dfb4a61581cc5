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


LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "msg", "log"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PACKAGES = ("cli", "ledger", "ingest", "projections", "reports", "demo", "bench", "deploy")
# What logs an event its caller names (ingest/http_server.py): their calls are checked instead,
# and what they do with the name inside is not. Name -> position of the event name argument.
EVENT_NAMED_BY_CALLER = {"ListeningServer": 2, "make_server": 5}
DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_logger(receiver: ast.expr) -> bool:
    text = ast.unparse(receiver)
    return text.endswith(("log", "logger")) or text.startswith(
        ("logs.get_logger(", "get_logger(", "logging.getLogger(", "structlog.get_logger(")
    )


def _passing_on(tree: ast.AST) -> set[int]:
    """ids of the calls inside the definitions of ``EVENT_NAMED_BY_CALLER``."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, DEFINITIONS) and node.name in EVENT_NAMED_BY_CALLER:
            inside |= {id(call) for call in ast.walk(node) if isinstance(call, ast.Call)}
    return inside


def _event_argument(call: ast.Call) -> tuple[bool, ast.expr | None]:
    """(whether ``call`` names an event, the expression that names it)."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in LEVELS and _is_logger(func.value):
        return True, call.args[0] if call.args else None
    called = ast.unparse(func).rsplit(".", 1)[-1]
    if called in EVENT_NAMED_BY_CALLER:
        index = EVENT_NAMED_BY_CALLER[called]
        by_keyword = [keyword.value for keyword in call.keywords if keyword.arg == "event"]
        return True, (call.args[index : index + 1] or by_keyword or [None])[0]
    return False, None


def _log_calls() -> list[tuple[str, ast.expr | None]]:
    """(where, event name argument) of every ``log.<level>(...)`` call in the project's code,
    and of every call that names the event another object logs (``EVENT_NAMED_BY_CALLER``)."""
    calls = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            passing_on = _passing_on(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and id(node) not in passing_on:
                    names, first = _event_argument(node)
                    if names:
                        calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", first))
    return calls


def _documented() -> set[str]:
    docs = (ROOT / "docs" / "LOGS.md").read_text(encoding="utf-8")
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", "\n".join(
        line.split("|")[1] for line in docs.splitlines() if line.startswith("| `")
    )))  # fmt: skip


def _named() -> list[str]:
    calls = _log_calls()
    assert len(calls) > 40, "the scan finds the calls"
    named = []
    for where, first in calls:
        literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
        assert literal, f"{where}: the event is not named by a fixed string"
        assert EVENT_NAME.match(first.value), f"{where}: {first.value!r} is not a snake_case name"
        named.append(first.value)
    return named


def test_every_event_is_a_fixed_snake_case_name_in_the_docs_table() -> None:
    named = _named()
    assert {"ingest_listening", "serve_listening"} <= set(named), "named by their callers"
    assert set(named) <= _documented(), sorted(set(named) - _documented())


def test_every_documented_event_is_logged_somewhere() -> None:
    """The table stays true: an event no code logs any more leaves it."""
    logged = set(_named()) | {LIBRARY_EVENT}
    assert _documented() <= logged, sorted(_documented() - logged)


def test_a_sentence_is_not_an_event_name() -> None:
    for sentence in ("Consumer stopped", "batch stored.", "retrying in 5 s", "Kafka-connected"):
        assert not EVENT_NAME.match(sentence)
    assert EVENT_NAME.match("batch_stored")
