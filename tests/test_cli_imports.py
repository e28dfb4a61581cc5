"""No import cycle among the modules of cli/ (issue 14): a module that two commands share lives
below both (cli/run.py, cli/errors.py ...), never in a command module or cli/main.py.

Every import counts, at module level or inside a function (a deferred import is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "cli"
MODULES_MAX = 200  # a bound on the walk; cli/ has a few dozen modules


def _cli_imports(path: Path) -> set[str]:
    """The cli modules ``path`` imports (names without the ``cli.`` prefix)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from cli import backfill_cmds` names modules; `from cli.run import x` names one.
            if node.module == "cli":
                names = [f"cli.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        found.update(name.split(".")[1] for name in names if name.startswith("cli."))
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(CLI.glob("*.py"))
    assert 0 < len(paths) <= MODULES_MAX
    modules = {path.stem for path in paths}
    return {path.stem: _cli_imports(path) & modules - {path.stem} for path in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of module names (first == last), or [] if there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return [*path[path.index(imported) :], imported]
            if imported not in state:
                found = visit(imported, [*path, imported])
                if found:
                    return found
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return []


def test_no_import_cycle_in_cli() -> None:
    assert _cycle(_graph()) == []


def test_the_walk_finds_a_cycle() -> None:
    """The check can fail: a made-up graph with a cycle is reported as that cycle."""
    graph = {"main": {"backfill_cmds"}, "backfill_cmds": {"run", "main"}, "run": set()}
    assert _cycle(graph) == ["backfill_cmds", "main", "backfill_cmds"]
    # And the real graph is walked (the imports of cli/main.py are seen).
    assert "run" in _graph()["main"]
