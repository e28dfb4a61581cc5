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


@pytest.mark.slow
def test_no_secret_key_or_signature_in_any_log_line(
    postgres_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    secret = "whsec_" + secrets.token_urlsafe(24)
    old_secret = "whsec_" + secrets.token_urlsafe(24)
    api_key = "sk_test_" + secrets.token_hex(16)
    debug = {"LEDGER_LOG_LEVEL": "debug", "LEDGER_LOG_FORMAT": "json"}
    env = env_for(
        postgres_url,
        kafka_bootstrap,
        topic,
        STRIPE_WEBHOOK_SECRET=f"{secret},{old_secret}",
        **debug,
    )
    create_topic(kafka_bootstrap, topic, partitions=2)
    migrate(create_engine(postgres_url))
    outputs: list[bytes] = []
    sent_signatures: list[str] = []

    def hostile(port: int) -> None:
        body = web.event_body()
        now = int(time.time())
        for header in (
            sign(body, secret, now - 3600),  # a real HMAC with our secret, expired
            sign(body, secret, now + 3600),  # post-dated
            sign(body, "whsec_" + secrets.token_urlsafe(24), now),  # forged
            sign(body, secret, now) + ",v1=" + "f" * 64,  # tampered body below
            f"t={now}," + ",".join(f"v1={secrets.token_hex(32)}" for _ in range(50)),
        ):
            sent_signatures.extend(re.findall(r"v1=([0-9a-f]+)", header))
            tampered = body + b" " if header.endswith("f" * 64) else body
            status, _ = web.post_webhook(port, tampered, header)
            assert status == 400, header
        good = sign(body, secret, now)
        sent_signatures.append(good.split("v1=")[1])
        assert web.post_webhook(port, body, good)[0] == 200

    db = Db(postgres_url)
    ingest, port = start_http_worker("ingest", env, tmp_path / "ingest.log")
    consumer = Worker(
        ["consume", "--topic", topic, "--group", "g-secrets"], env, tmp_path / "c.log"
    )
    projector = Worker(["project"], env, tmp_path / "project.log")
    workers = [ingest, consumer, projector]
    try:
        url = f"http://127.0.0.1:{port}{web.WEBHOOK}"
        code, out = _cli(["demo", "--url", url, "--events", "300"], env)
        outputs.append(out)
        assert code == 0, out[-2000:]
        hostile(port)
        wait_until(lambda: db.events() > 300, "the demo history stored")
        for worker in workers:
            worker.signal(signal.SIGTERM)
            assert worker.wait(STOP_S_MAX) == 0
        for args in (
            ["verify"],
            ["report", "balances", "--format", "json"],
            ["report", "invoices"],
        ):
            code, out = _cli(args, env)
            outputs.append(out)
            assert code == 0, out[-2000:]

        # serve (embedded) with the same secrets, the demo through it, then the embedded demo.
        serve_env = env_for(
            f"sqlite:///{tmp_path / 'serve.db'}", STRIPE_WEBHOOK_SECRET=secret, **debug
        )
        assert _cli(["migrate"], serve_env)[0] == 0
        serve, serve_port = start_http_worker("serve", serve_env, tmp_path / "serve.log")
        workers.append(serve)
        code, out = _cli(
            ["demo", "--url", f"http://127.0.0.1:{serve_port}{web.WEBHOOK}", "--events", "200"],
            serve_env,
        )
        outputs.append(out)
        assert code == 0, out[-2000:]
        hostile(serve_port)
        serve.signal(signal.SIGTERM)
        assert serve.wait(STOP_S_MAX) == 0
        code, out = _cli(["demo", "--events", "200"], env_for(f"sqlite:///{tmp_path / 'd.db'}"))
        outputs.append(out)
        assert code == 0, out[-2000:]

        # backfill, reconcile and balance-sync: a fake key, an API that is not there.
        api_env = env_for(
            f"sqlite:///{tmp_path / 'backfill.db'}",
            STRIPE_API_KEY=api_key,
            STRIPE_API_BASE="http://127.0.0.1:1",
            **debug,
        )
        assert _cli(["migrate"], api_env)[0] == 0
        for args in (
            ["backfill", "--since", "1h"],
            ["reconcile", "--since", "1h"],
            ["balance-sync", "--since", "1h"],
        ):
            code, out = _cli(args, api_env)
            outputs.append(out)
            assert code != 0, "an unreachable API must be an error"
            assert b"/v1/" in out, "it must have tried the API (with the key)"
    finally:
        for worker in workers:
            worker.kill()
        db.close()
    for worker in workers:
        outputs.append(worker.log_path.read_bytes())

    everything = b"\n".join(outputs)
    lines = everything.splitlines()
    # Not vacuous: the run logged at debug level, accepted and rejected webhooks included.
    assert len(lines) > 200
    assert b'"webhook_accepted"' in everything and b'"webhook_rejected"' in everything
    assert b'"level": "debug"' in everything
    needles = {
        "secret": secret,
        "secret without prefix": secret.removeprefix("whsec_"),
        "old secret": old_secret.removeprefix("whsec_"),
        "api key": api_key,
        "api key without prefix": api_key.removeprefix("sk_test_"),
    }
    needles.update({f"signature {i}": s for i, s in enumerate(sent_signatures)})
    leaks = [name for name, needle in needles.items() if needle.encode() in everything]
    assert not leaks, leaks
    assert b"whsec_" not in everything.replace(b"whsec_...", b"")
    assert not re.search(rb"(?:sk|rk)_(?:test|live)_[A-Za-z0-9]", everything)
    shapes = [line[:200] for line in lines if SIGNATURE_SHAPES.search(line)]
    assert not shapes, shapes[:5]
