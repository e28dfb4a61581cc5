"""``stripe-ledger demo`` at its edges (#20): a closed pipe, Ctrl-C, its temporary folder, and
``make demo`` installing the runtime dependencies only. Real ``serve`` processes, small sizes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

DEMO_S_MAX = 120


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "LEDGER_LOG_FORMAT": "json"}
    for name in ("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_FILE", "LEDGER_DATABASE_URL"):
        env.pop(name, None)
    return env


def _left(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("stripe-ledger-demo-*"))


def test_a_closed_pipe_exits_quietly_and_the_folder_is_removed(tmp_path: Path) -> None:
    command = f"{sys.executable} -m cli.main demo --events 30 | head -2"
    done = subprocess.run(
        ["bash", "-c", command + '; echo "demo_status=${PIPESTATUS[0]}" >&2'],
        env=_env(tmp_path), cwd=ROOT, capture_output=True, timeout=DEMO_S_MAX,
    )  # fmt: skip
    stderr = done.stderr.decode()
    assert len(done.stdout.decode().splitlines()) == 2
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert f"demo_status={128 + signal.SIGPIPE}" in stderr, stderr
    assert _left(tmp_path) == []


def test_keep_keeps_the_store_and_says_where(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--events", "30", "--keep"],
        env=_env(tmp_path), cwd=ROOT, capture_output=True, timeout=DEMO_S_MAX,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (kept,) = _left(tmp_path)
    assert (kept / "demo.db").is_file()
    assert f"The demo store is kept at {kept / 'demo.db'}" in done.stdout.decode()


def test_ctrl_c_says_interrupted_and_where_the_store_is(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--events", "3000", "--concurrency", "1"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().startswith(b"demo history")
        time.sleep(3)  # serve is starting or the history is being posted: either is mid-run
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=DEMO_S_MAX)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err.decode()
    assert process.returncode == 130, stderr[-2000:]
    assert re.search(
        r"stripe-ledger demo: interrupted; the demo store \(.*demo\.db\) is removed", stderr
    )
    assert "Traceback" not in stderr
    assert _left(tmp_path) == []


def test_make_demo_installs_the_runtime_dependencies_only() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (prerequisites,) = re.findall(r"^demo: ([^#\n]*)", makefile, re.MULTILINE)
    assert "install" not in prerequisites.split()
    rule = makefile.split("$(RUNTIME_STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "-e ." in rule and "[test]" not in rule
    assert "--require-hashes -r requirements/runtime.lock" in rule  # the pinned runtime (issue 19)
    assert "echo" in rule  # it says what it is doing
