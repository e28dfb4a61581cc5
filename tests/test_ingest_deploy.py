"""deploy/aws: the SAM template passes cfn-lint, and the Lambda code needs only its requirements."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "aws" / "template.yaml"


def _cfn_lint() -> str:
    pytest.importorskip("cfnlint", reason="cfn-lint is not installed (pip install cfn-lint)")
    beside = Path(sys.executable).parent / "cfn-lint"
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    assert found, "cfnlint is importable but its cfn-lint script is missing"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_cfn_lint(), str(path)], capture_output=True, text=True, timeout=300, check=False
    )


def test_template_passes_cfn_lint() -> None:
    result = _lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("MemorySize: 512", "MemorySize: 50"))
    assert _lint(broken).returncode != 0


def test_template_wires_the_handler_and_parameters() -> None:
    text = TEMPLATE.read_text()
    for needle in (
        "Handler: ingest.lambda_handler.handler",
        "KafkaBootstrap:",
        "KafkaTopic:",
        "NoEcho: true",
        "WebhookSecretArn:",
        "Path: /webhooks/stripe",
    ):
        assert needle in text
    requirements = (ROOT / "deploy" / "aws" / "requirements.txt").read_text()
    assert "kafka-python" in requirements and "structlog" in requirements


def test_lambda_module_imports_only_what_the_package_ships() -> None:
    """The Lambda zip has kafka-python and structlog only: no web server, no prometheus."""
    code = (
        "import sys, ingest.lambda_handler\n"
        "bad = {'uvicorn', 'starlette', 'prometheus_client', 'sqlalchemy', 'stripe'}\n"
        "print(sorted(bad & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]"
