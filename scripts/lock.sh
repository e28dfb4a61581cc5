#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml and deploy/aws/requirements.txt (PyPI):
#   requirements/runtime.lock      the Dockerfile's (runtime dependencies only)
#   requirements/test.lock         `make install`'s (runtime + the test extra)
#   deploy/aws/requirements.lock   the Lambda package's (deploy/aws/build.sh)
# Run it after changing a dependency (`make lock`); tests/test_lock.py fails while a dependency
# of pyproject.toml is missing from the locks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
cd "$ROOT"
"$PY" -m pip install -q "pip-tools>=7.4"
compile() { "$PY" -m piptools compile -q --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-find-links --no-emit-index-url "$@"; }
compile -o requirements/runtime.lock pyproject.toml
compile --extra test -o requirements/test.lock pyproject.toml
compile -o deploy/aws/requirements.lock deploy/aws/requirements.txt
echo "locked: requirements/runtime.lock requirements/test.lock deploy/aws/requirements.lock" >&2
