#!/usr/bin/env bash
# Build the Lambda code directory that deploy/aws/template.yaml points at (build/lambda):
# the ingest and ledger packages plus deploy/aws/requirements.lock (pure Python, hashed).
#
#   bash deploy/aws/build.sh && sam deploy --guided --template-file deploy/aws/template.yaml
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/lambda"
PYTHON="${PYTHON:-python3}"
rm -rf "$OUT"
mkdir -p "$OUT"
# Pinned and hashed (deploy/aws/requirements.lock, made by scripts/lock.sh from requirements.txt).
"$PYTHON" -m pip install --quiet --require-hashes --target "$OUT" -r "$ROOT/deploy/aws/requirements.lock"
for package in ingest ledger; do
  mkdir -p "$OUT/$package"
  (cd "$ROOT/$package" && find . -name '*.py' -not -path '*/__pycache__/*' -exec cp --parents {} "$OUT/$package/" \;)
done
echo "built $OUT" >&2
