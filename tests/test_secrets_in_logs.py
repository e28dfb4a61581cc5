"""No secret, API key or signature in any line any process writes, JSON logs at debug level.

One full run with the real processes: ingest + consume + project (PostgreSQL, Kafka), the demo
posting a signed history through ingest and through serve, the embedded demo, forged and expired
requests (whose v1 is a real HMAC with our secret), verify and the reports, and backfill and
reconcile with a fake ``sk_test_`` key against an unreachable Stripe API. Every byte of their
stdout and stderr is searched for the secrets (whole and without their prefix), the key, and
anything shaped like a signature.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from demo.client import sign
from ledger.database import create_engine, migrate
from tests.support import ingest as web
from tests.support.kafka_util import create_topic
from tests.support.reliability import (
    CLI,
    ROOT,
    STOP_S_MAX,
    Db,
    Worker,
    env_for,
    start_http_worker,
    wait_until,
)

SIGNATURE_SHAPES = re.compile(rb"v[01]=[0-9a-fA-F]{8,}|[0-9a-fA-F]{64}")


def _cli(args: list[str], env: dict[str, str], timeout_s: float = 180) -> tuple[int, bytes]:
    done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, timeout=timeout_s)
    return done.returncode, done.stdout + done.stderr


@dataclass
class _Run:
    """The secrets of one run, and everything its processes wrote."""

    secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    old_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(16))
    debug: dict[str, str] = field(
        default_factory=lambda: {"LEDGER_LOG_LEVEL": "debug", "LEDGER_LOG_FORMAT": "json"}
    )
    outputs: list[bytes] = field(default_factory=list)
    sent_signatures: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def cli_ok(self, args: list[str], env: dict[str, str]) -> None:
        code, out = _cli(args, env)
        self.outputs.append(out)
        assert code == 0, out[-2000:]

    def hostile(self, port: int) -> None:
        """Expired, post-dated, forged, tampered and oversized signatures (400), then one good."""
        body = web.event_body()
        now = int(time.time())
        for header in (
            sign(body, self.secret, now - 3600),  # a real HMAC with our secret, expired
            sign(body, self.secret, now + 3600),  # post-dated
            sign(body, "whsec_" + secrets.token_urlsafe(24), now),  # forged
            sign(body, self.secret, now) + ",v1=" + "f" * 64,  # tampered body below
            f"t={now}," + ",".join(f"v1={secrets.token_hex(32)}" for _ in range(50)),
        ):
            self.sent_signatures.extend(re.findall(r"v1=([0-9a-f]+)", header))
            tampered = body + b" " if header.endswith("f" * 64) else body
            status, _ = web.post_webhook(port, tampered, header)
            assert status == 400, header
        good = sign(body, self.secret, now)
        self.sent_signatures.append(good.split("v1=")[1])
        assert web.post_webhook(port, body, good)[0] == 200


def _through_kafka(run: _Run, env: dict[str, str], db: Db, topic: str, tmp_path: Path) -> None:
    """ingest + consume + project: the demo and the hostile requests, then verify and reports."""
    ingest, port = start_http_worker("ingest", env, tmp_path / "ingest.log")
    consumer = Worker(
        ["consume", "--topic", topic, "--group", "g-secrets"], env, tmp_path / "c.log"
    )
    projector = Worker(["project"], env, tmp_path / "project.log")
    run.workers += [ingest, consumer, projector]
    url = f"http://127.0.0.1:{port}{web.WEBHOOK}"
    run.cli_ok(["demo", "--url", url, "--events", "300"], env)
    run.hostile(port)
    wait_until(lambda: db.events() > 300, "the demo history stored")
    for worker in (ingest, consumer, projector):
        worker.signal(signal.SIGTERM)
        assert worker.wait(STOP_S_MAX) == 0
    for args in (
        ["verify"],
        ["report", "balances", "--format", "json"],
        ["report", "invoices"],
    ):
        run.cli_ok(args, env)


def _embedded(run: _Run, tmp_path: Path) -> None:
    """serve (embedded) with the same secrets, the demo through it, then the embedded demo."""
    serve_env = env_for(
        f"sqlite:///{tmp_path / 'serve.db'}", STRIPE_WEBHOOK_SECRET=run.secret, **run.debug
    )
    assert _cli(["migrate"], serve_env)[0] == 0
    serve, serve_port = start_http_worker("serve", serve_env, tmp_path / "serve.log")
    run.workers.append(serve)
    run.cli_ok(
        ["demo", "--url", f"http://127.0.0.1:{serve_port}{web.WEBHOOK}", "--events", "200"],
        serve_env,
    )
    run.hostile(serve_port)
    serve.signal(signal.SIGTERM)
    assert serve.wait(STOP_S_MAX) == 0
    run.cli_ok(["demo", "--events", "200"], env_for(f"sqlite:///{tmp_path / 'd.db'}"))


def _stripe_api_commands(run: _Run, tmp_path: Path) -> None:
    """backfill, reconcile and balance-sync: a fake key, an API that is not there."""
    api_env = env_for(
        f"sqlite:///{tmp_path / 'backfill.db'}",
        STRIPE_API_KEY=run.api_key,
        STRIPE_API_BASE="http://127.0.0.1:1",
        **run.debug,
    )
    assert _cli(["migrate"], api_env)[0] == 0
    for args in (
        ["backfill", "--since", "1h"],
        ["reconcile", "--since", "1h"],
        ["balance-sync", "--since", "1h"],
    ):
        code, out = _cli(args, api_env)
        run.outputs.append(out)
        assert code != 0, "an unreachable API must be an error"
        assert b"/v1/" in out, "it must have tried the API (with the key)"


def _assert_nothing_leaked(run: _Run) -> None:
    everything = b"\n".join(run.outputs)
    lines = everything.splitlines()
    # Not vacuous: the run logged at debug level, accepted and rejected webhooks included.
    assert len(lines) > 200
    assert b'"webhook_accepted"' in everything and b'"webhook_rejected"' in everything
    assert b'"level": "debug"' in everything
    needles = {
        "secret": run.secret,
        "secret without prefix": run.secret.removeprefix("whsec_"),
        "old secret": run.old_secret.removeprefix("whsec_"),
        "api key": run.api_key,
        "api key without prefix": run.api_key.removeprefix("sk_test_"),
    }
    needles.update({f"signature {i}": s for i, s in enumerate(run.sent_signatures)})
    leaks = [name for name, needle in needles.items() if needle.encode() in everything]
    assert not leaks, leaks
    assert b"whsec_" not in everything.replace(b"whsec_...", b"")
    assert not re.search(rb"(?:sk|rk)_(?:test|live)_[A-Za-z0-9]", everything)
    shapes = [line[:200] for line in lines if SIGNATURE_SHAPES.search(line)]
    assert not shapes, shapes[:5]


@pytest.mark.slow
def test_no_secret_key_or_signature_in_any_log_line(
    postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    run = _Run()
    env = env_for(
        postgres_url,
        kafka_bootstrap,
        topic,
        STRIPE_WEBHOOK_SECRET=f"{run.secret},{run.old_secret}",
        **run.debug,
    )
    create_topic(kafka_bootstrap, topic, partitions=2)
    migrate(create_engine(postgres_url))
    db = Db(postgres_url)
    try:
        _through_kafka(run, env, db, topic, tmp_path)
        _embedded(run, tmp_path)
        _stripe_api_commands(run, tmp_path)
    finally:
        for worker in run.workers:
            worker.kill()
        db.close()
    for worker in run.workers:
        run.outputs.append(worker.log_path.read_bytes())
    _assert_nothing_leaked(run)
