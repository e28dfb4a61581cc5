"""Configuration is read in one place (#14): no module but ledger/settings.py reads the environment.

A read is ``os.environ.get(NAME)``, ``os.environ[NAME]``, ``NAME in os.environ`` or
``os.getenv(NAME)``; handing the whole environment on to a child process (``dict(os.environ,
...)``) is not a read. bench/ (the benchmark harness's own BENCH_* knobs) and tests/ are not the
ledger's configuration and are not scanned.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ledger.settings import Settings
from tests.conftest import ROOT

PACKAGES = ("cli", "demo", "deploy", "ingest", "ledger", "migrations", "projections", "reports")
SETTINGS = Path("ledger/settings.py")

# Names another module may read, and why.
READS_ALLOWED = {
    "COLUMNS": "the terminal's width (reports/render.py), set by the shell, not by an operator",
}
# Reads not yet moved into Settings (none left): each would name the Settings field it becomes.
READS_PENDING: dict[str, str] = {}
# Modules that hand the environment on to a child process they start, and why they do.
CHILD_ENV_ALLOWED = {
    Path("cli/serve_cmd.py"): "the projector child gets the database URL in its environment",
    Path("cli/demo_cmd.py"): "the serve child gets the demo's database URL and secret",
    Path("demo/balance.py"): "balance-sync runs with the stand-in's STRIPE_* instead of the user's",
}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _name(node: ast.expr | None) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return f"<{ast.unparse(node) if node is not None else 'nothing'}>"  # not a fixed name


def environment_uses(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, NAME) of each read of a variable, (line, None) of each use of the whole environ."""
    reads: dict[int, tuple[int, str | None]] = {}  # id(environ node) -> use
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (_is_environ(func.value) and func.attr in ("get", "pop", "setdefault")) or (
                func.attr == "getenv"
            ):
                first = node.args[0] if node.args else None
                reads[id(func.value)] = (node.lineno, _name(first))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            reads[id(node.value)] = (node.lineno, _name(node.slice))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            for comparator in node.comparators:
                if _is_environ(comparator):
                    reads[id(comparator)] = (node.lineno, _name(node.left))
    for node in ast.walk(tree):
        if _is_environ(node) and id(node) not in reads:
            reads[id(node)] = (getattr(node, "lineno", 0), None)
    return sorted(reads.values(), key=lambda use: (use[0], use[1] or ""))


def _uses() -> list[tuple[Path, int, str | None]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [(relative, line, name) for line, name in environment_uses(tree)]
    return found


def test_the_scan_finds_each_kind_of_read() -> None:
    source = (
        "import os\n"
        "a = os.environ.get('A')\nb = os.environ['B']\nc = 'C' in os.environ\n"
        "d = os.getenv('D')\nchild = dict(os.environ, X='1')\n"
    )
    assert environment_uses(ast.parse(source)) == [
        (2, "A"), (3, "B"), (4, "C"), (5, "D"), (6, None)
    ]  # fmt: skip


def test_only_settings_reads_the_environment() -> None:
    uses = _uses()
    assert any(path == SETTINGS for path, _, _ in uses), "the scan finds settings.py's reads"
    wrong = [
        f"{path}:{line}: {'reads ' + name if name else 'uses os.environ'}"
        for path, line, name in uses
        if path != SETTINGS
        and (
            (name is None and path not in CHILD_ENV_ALLOWED)
            or (name is not None and name not in READS_ALLOWED and name not in READS_PENDING)
        )
    ]
    assert not wrong, "read it through ledger.settings.Settings:\n" + "\n".join(wrong)


def test_each_allowed_use_is_still_there() -> None:
    """An entry whose use went away leaves the lists (they stay short and true)."""
    uses = _uses()
    assert set(CHILD_ENV_ALLOWED) <= {path for path, _, name in uses if name is None}
    assert set(READS_ALLOWED) <= {name for _, _, name in uses}


def test_what_modules_read_themselves_before_is_in_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111")
    monkeypatch.setenv("LEDGER_DASHBOARD_TOKEN", "t" * 32)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:secret:w")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = Settings.from_env()
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.dashboard_token == "t" * 32 and "t" * 32 not in repr(settings)
    assert settings.webhook_secret_arn.endswith(":secret:w")
    assert settings.aws_region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-east-2")  # boto3's order: AWS_REGION first
    monkeypatch.setenv("STRIPE_API_BASE", "")
    monkeypatch.delenv("LEDGER_DASHBOARD_TOKEN")
    settings = Settings.from_env()
    assert settings.aws_region == "us-east-2"
    assert settings.stripe_api_base is None and settings.dashboard_token is None
