"""`stripe-ledger ingest`: help, configuration errors, and a real run against the broker."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import ingest_cmd
from tests.support.ingest import (
    SECRET,
    cli_env,
    event_body,
    post_webhook,
    read_topic,
    run_cli,
    serve_cli,
    stripe_signature,
)


def test_register_adds_the_subcommand_with_defaults() -> None:
    parser = argparse.ArgumentParser(prog="stripe-ledger")
    ingest_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["ingest"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert args.handler is ingest_cmd.run
    args = parser.parse_args(["ingest", "--host", "0.0.0.0", "--port", "9001"])
    assert (args.host, args.port) == ("0.0.0.0", 9001)
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "--port", "70000"])


def test_help_explains_the_environment() -> None:
    result = run_cli("ingest", "--help", env=cli_env())
    assert result.returncode == 0
    for name in (
        "--host",
        "--port",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_WEBHOOK_SECRET_FILE",
        "LEDGER_KAFKA_BOOTSTRAP",
        "LEDGER_KAFKA_TOPIC",
        "/webhooks/stripe",
    ):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LEDGER_KAFKA_BOOTSTRAP": "127.0.0.1:9"}, "STRIPE_WEBHOOK_SECRET"),
        ({"STRIPE_WEBHOOK_SECRET": SECRET}, "LEDGER_KAFKA_BOOTSTRAP"),
        (
            {"STRIPE_WEBHOOK_SECRET": "not-a-whsec", "LEDGER_KAFKA_BOOTSTRAP": "127.0.0.1:9"},
            "whsec_",
        ),
        (
            {
                "STRIPE_WEBHOOK_SECRET": SECRET,
                "LEDGER_KAFKA_BOOTSTRAP": "127.0.0.1:9",
                "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_WHATEVER",
            },
            "LEDGER_KAFKA_SECURITY_PROTOCOL",
        ),
    ],
)
def test_missing_configuration_exits_2_with_a_clear_message(
    env: dict[str, str], needle: str
) -> None:
    result = run_cli("ingest", "--port", "9", env=cli_env(**env))
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.startswith("stripe-ledger ingest: ")
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.kafka
def test_serves_webhooks_end_to_end_and_logs_no_secrets(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"whsec_old0secret0being0rolled0out\n{SECRET}\n")
    env = cli_env(
        STRIPE_WEBHOOK_SECRET_FILE=str(secret_file),
        LEDGER_KAFKA_BOOTSTRAP=kafka_bootstrap,
        LEDGER_KAFKA_TOPIC=topic,
        LEDGER_LOG_FORMAT="json",
    )
    log_path = tmp_path / "ingest.log"
    body = event_body()
    signature = stripe_signature(body)
    with serve_cli(env, log_path) as port:
        assert post_webhook(port, body, signature)[0] == 200
        assert post_webhook(port, body, signature.replace("v1=", "v1=0"))[0] == 400
    [record] = read_topic(kafka_bootstrap, topic, 1)
    assert record.value == body
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line["event"] == "webhook_rejected"]
    assert [line["reason"] for line in rejected] == ["signature_mismatch"]
    text = log_path.read_text()
    assert SECRET not in text
    assert signature.split("v1=")[1] not in text
    assert "ingest_stopped" in text  # SIGTERM -> graceful lifespan shutdown


def test_through_the_main_cli_calling_convention(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli/main.py calls ``args.handler(args, settings)``; register ingest there and run it."""
    import logging

    import structlog

    from cli import main as main_cli

    # main() configures logging for the process: put it back afterwards.
    saved = structlog.get_config()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    assert ingest_cmd.__name__ in main_cli.COMMAND_MODULES
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET_FILE", raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    try:
        assert main_cli.main(["ingest", "--port", "9"]) == 2
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
        monkeypatch.delenv("LEDGER_KAFKA_BOOTSTRAP")
        assert main_cli.main(["ingest", "--port", "9"]) == 2
    finally:
        structlog.configure(**saved)
