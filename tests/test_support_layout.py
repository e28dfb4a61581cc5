"""Where test code lives (issue 14): helpers in tests/support/, tests in tests/test_*.py, and the
suite's fixtures below the benchmarks (tests/conftest.py imports nothing of bench/)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _defines_a_test(tree: ast.Module) -> bool:
    return any(
        (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"))
        or (isinstance(node, ast.ClassDef) and node.name.startswith("Test"))
        for node in tree.body
    )


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_test_module_holds_tests() -> None:
    helpers = [p.name for p in sorted(TESTS.glob("test_*.py")) if not _defines_a_test(_tree(p))]
    assert helpers == [], "helpers belong in tests/support/"


def test_support_holds_no_tests() -> None:
    modules = sorted((TESTS / "support").glob("*.py"))
    assert modules, "tests/support/ is where the helpers are"
    assert [p.name for p in modules if _defines_a_test(_tree(p))] == []


def test_conftest_imports_nothing_of_bench() -> None:
    imported = _imported(_tree(TESTS / "conftest.py"))
    assert {name for name in imported if name.split(".")[0] == "bench"} == set()
