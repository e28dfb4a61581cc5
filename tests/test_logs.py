"""Logs (#20): in JSON mode every line is JSON, the libraries' too, with fixed event names."""

from __future__ import annotations

import json
import logging

import pytest

from cli.progress import Progress
from ledger.logs import LIBRARY_EVENT, configure, get_logger


def _json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_library_records_are_json_lines_in_json_mode(capsys: pytest.CaptureFixture[str]) -> None:
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


def test_every_fixed_event_name_is_in_the_docs_table() -> None:
    import re

    from tests.conftest import ROOT

    table = set(
        re.findall(r"^\| `([a-z][a-z0-9_]*)` \|", (ROOT / "docs" / "LOGS.md").read_text(), re.M)
    )
    call = re.compile(
        r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z][a-z0-9_]*)\""
    )
    found = set()
    for package in ("cli", "ledger", "ingest", "projections", "reports"):
        for path in (ROOT / package).rglob("*.py"):
            found |= set(call.findall(path.read_text(encoding="utf-8")))
    assert found, "the pattern finds the calls"
    assert found <= table, sorted(found - table)
