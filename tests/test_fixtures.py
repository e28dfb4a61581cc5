"""A fresh clone has no ../shared: the suite reads only the repository's own files."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from tests import conftest
from tests.conftest import ROOT, STRIPE_FIXTURES

# What a path out of the repository looks like in a test's source.
ESCAPES = re.compile(r"""parent\.parent\.parent|ROOT\.parent|["']\.\./|["']shared["']|/work/""")


def test_no_test_names_a_path_outside_the_repository() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "bench").glob("*.py")):
        if path.name in ("test_fixtures.py", "conftest.py"):  # the guard itself
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ESCAPES.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_the_audit_hook_flags_a_read_beside_the_repository() -> None:
    clone = Path("/srv/src/stripe-ledger")
    assert conftest.beside("/srv/src/shared/stripe/event_types.json", clone)
    assert conftest.beside("/srv/src/stripe-ledger-other/x.json", clone)  # not a prefix match
    assert not conftest.beside("/srv/src/stripe-ledger/tests/fixtures/x.json", clone)
    assert not conftest.beside("/usr/lib/python3/json/__init__.py", clone)
    if conftest.WATCH_BESIDE:  # the hook itself, where the clone is watched (not in /tmp)
        target = ROOT.parent / "shared" / "stripe" / "event_types.json"
        with contextlib.suppress(OSError):  # the hook sees the attempt, found or not
            target.open("rb").close()
        assert conftest.OUTSIDE_READS == [str(target)]
        conftest.OUTSIDE_READS.clear()  # this test's read was on purpose


def test_every_fixture_file_has_its_source_named() -> None:
    readme = (ROOT / "tests" / "fixtures" / "README.md").read_text(encoding="utf-8")
    sources = (STRIPE_FIXTURES / "samples" / "SOURCES.md").read_text(encoding="utf-8")
    for path in sorted(STRIPE_FIXTURES.rglob("*.json")):
        relative = path.relative_to(STRIPE_FIXTURES.parent).as_posix()
        if path.parent.name == "samples":
            assert path.name in sources, path
        elif path.parent.name == "stripe-ruby-mock":
            assert "stripe/extra/stripe-ruby-mock/*.json" in readme, path
        else:
            assert f"`{relative}`" in readme, path
        json.loads(path.read_text(encoding="utf-8"))  # data only, and valid
