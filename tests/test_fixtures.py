"""A fresh clone has no ../shared: the suite reads only the repository's own files."""

from __future__ import annotations

import json
import re

import pytest

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


@pytest.mark.skipif(not conftest.WATCH_BESIDE, reason="the clone sits at / or in $HOME")
def test_the_audit_hook_catches_a_read_beside_the_repository() -> None:
    beside = ROOT.parent / "shared" / "stripe" / "event_types.json"
    assert conftest.outside_repository(str(beside))
    assert not conftest.outside_repository(str(STRIPE_FIXTURES / "event_types.json"))
    try:
        beside.open("rb").close()
    except OSError:
        pass  # the hook sees the attempt whether or not the file exists
    assert conftest.OUTSIDE_READS == [str(beside)]
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
