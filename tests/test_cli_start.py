"""Start-up imports only what the command that runs needs (issue 21: ``--help`` took 1.7 s).

``cli/main.py`` lists every command from its ``COMMANDS`` table and imports the module of the
command on the line only. Checked in a fresh interpreter (``sys.modules`` after ``main``), and
the table's help lines are checked against the modules' own (the lazy ``--help`` is the full
parser's ``--help``, line for line). Start-up times are measured in ``make bench``, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys

from cli import main as main_cli
from tests.conftest import ROOT

HEAVY = ("stripe", "sqlalchemy", "kafka", "uvicorn", "starlette", "boto3", "alembic")
# --version's distribution metadata pulls in email, zipfile, csv: read only for --version.
STDLIB_HEAVY = ("importlib.metadata",)
# Not needed to print a report: the Stripe SDK, Kafka, the HTTP servers, the SQS client.
NOT_FOR_REPORTS = ("stripe", "kafka", "uvicorn", "starlette", "boto3", "prometheus_client")
# ... nor the store, the folds or the checks (rebuild's and verify's, ~10% of its start-up).
MODULES_NOT_FOR_REPORTS = ("ledger.store", "projections.rebuild", "projections.verify")

PROBE = """
import json, sys
from cli.main import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    """Every module in ``sys.modules`` after ``main(argv)`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _imported(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    names = _modules(argv, env)
    # top-level packages, and the stdlib modules start-up must not pay for either
    return {name.split(".")[0] for name in names} | set(names) & set(STDLIB_HEAVY)


def test_help_imports_no_heavy_package() -> None:
    imported = _imported(["--help"])
    assert not imported & {*HEAVY, *STDLIB_HEAVY}, sorted(imported & {*HEAVY, *STDLIB_HEAVY})


def test_an_unknown_command_imports_no_command_module() -> None:
    imported = _imported(["no-such-command"])
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_report_imports_only_the_read_side(tmp_path: object) -> None:
    import os

    env = dict(os.environ, LEDGER_DATABASE_URL=f"sqlite:///{tmp_path}/missing/x.db")
    modules = _modules(["report", "balances"], env)
    imported = {name.split(".")[0] for name in modules}
    assert "sqlalchemy" in imported  # it did run the command (and failed on the missing dir)
    assert "reports.query" in modules
    assert not imported & set(NOT_FOR_REPORTS), sorted(imported & set(NOT_FOR_REPORTS))
    extra = modules & set(MODULES_NOT_FOR_REPORTS)
    assert not extra, sorted(extra)


def test_the_lazy_help_is_the_full_parsers_help() -> None:
    """Every command's one-line help in ``COMMANDS`` is the one its module registers, in order."""
    assert main_cli.build_parser("").format_help() == main_cli.build_parser().format_help()


def test_each_command_is_added_by_the_module_the_table_names() -> None:
    for name, (module_name, _help) in main_cli.COMMANDS.items():
        parser = main_cli.build_parser(name)
        (subparsers,) = [a for a in parser._actions if a.dest == "command"]
        assert subparsers.choices is not None
        assert name in subparsers.choices, (name, module_name)
        assert subparsers.choices[name].add_help, (name, module_name)  # not the stub
