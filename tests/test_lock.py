"""The lock files (issue 19): every dependency pinned and hashed, h11 >= 0.16, and the lock is what
``make``, the Dockerfile and the Lambda build install. No network: it reads the files and the
installed environment."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"
LAMBDA_LOCK = ROOT / "deploy" / "aws" / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.M)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pins(lock: Path) -> dict[str, str]:
    return {
        name.lower().replace("_", "-"): version for name, version in _PIN.findall(lock.read_text())
    }


def test_every_pin_has_a_hash() -> None:
    for lock in (RUNTIME_LOCK, TEST_LOCK, LAMBDA_LOCK):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
        pinned = [block for block in blocks if _PIN.match(block)]
        assert pinned, lock
        for block in pinned:
            assert "--hash=sha256:" in block, (lock.name, block.splitlines()[0])


def test_the_locks_hold_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    test = {_name(r) for r in project["optional-dependencies"]["test"]}
    assert runtime <= set(pins(RUNTIME_LOCK)), "run `make lock`"
    assert runtime | test <= set(pins(TEST_LOCK)), "run `make lock`"
    lambda_needs = {
        _name(line)
        for line in (ROOT / "deploy/aws/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lambda_needs <= set(pins(LAMBDA_LOCK)), "run `make lock`"


def test_h11_is_past_the_request_smuggling_fix() -> None:
    for lock in (RUNTIME_LOCK, TEST_LOCK):
        major, minor = (int(part) for part in pins(lock)["h11"].split(".")[:2])
        assert (major, minor) >= (0, 16), lock


def test_make_docker_and_lambda_install_from_the_locks() -> None:
    assert "--require-hashes -r requirements/test.lock" in (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/runtime.lock" in (ROOT / "Dockerfile").read_text()
    build = (ROOT / "deploy" / "aws" / "build.sh").read_text()
    assert "--require-hashes" in build and "deploy/aws/requirements.lock" in build


@pytest.mark.parametrize("name", sorted(pins(TEST_LOCK)))
def test_the_environment_is_the_lock(name: str) -> None:
    """`make install` installed exactly the locked versions."""
    assert metadata.version(name) == pins(TEST_LOCK)[name]
