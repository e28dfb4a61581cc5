"""Issue 16's "done when": a history of 10,000 events through EventBridge -> SQS -> consume-sqs
gives reports identical to the same history through signed webhooks (serve), on both
databases; the two paths' rates are measured in the same run and printed (no timed assert:
speed targets belong in bench)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from demo.client import post_all
from demo.history import encode, generate
from tests.support import ingest as web
from tests.support import sqs_util as u
from tests.support.reliability import (
    Db,
    Worker,
    env_for,
    extra_postgres,
    json_lines,
    reports,
    run,
    start_http_worker,
)

EVENTS = int(os.environ.get("LEDGER_SQS_EQUIVALENCE_EVENTS", "10000"))
pytestmark = pytest.mark.slow


@contextmanager
def _second_database(kind: str, admin_url: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'via-sqs.db'}"
    else:
        with extra_postgres(admin_url) as url:
            yield url


def _stamp(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def _webhooks(env: dict[str, str], payloads: list[bytes], tmp_path: Path) -> float:
    """POST every delivery, signed, to serve (its projector off); deliveries per second."""
    worker, port = start_http_worker("serve", env, tmp_path / "serve.log", ["--no-project"])
    try:
        result = post_all(f"http://127.0.0.1:{port}{web.WEBHOOK}", payloads, web.SECRET, 8)
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait(60)
    assert result.ok == len(payloads) and not result.failed, result
    return len(payloads) / result.elapsed_s


def _via_sqs(env: dict[str, str], queue: u.Queue, endpoint: str, tmp_path: Path) -> float:
    """consume-sqs over the filled queue; messages per second from its first to last batch."""
    log = tmp_path / "consume-sqs.log"
    args = u.consume_args(queue, endpoint, "--batch", "500", "--until-idle", "3")
    worker = Worker(args, {**env, **u.AWS_ENV}, log)
    assert worker.wait(900) == 0, log.read_text()[-3000:]
    lines = json_lines(log.read_bytes())
    started = next(_stamp(line) for line in lines if line.get("event") == "consuming")
    batches = [line for line in lines if line.get("event") == "sqs_batch_stored"]
    assert batches, log.read_text()[-3000:]
    return sum(line["messages"] for line in batches) / (_stamp(batches[-1]) - started)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_history_via_sqs_reports_like_the_same_history_via_webhooks(
    kind: str,
    request: pytest.FixtureRequest,
    sqs: Any,
    sqs_endpoint: str,
    tmp_path: Path,
) -> None:
    webhook_url = str(request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url"))
    admin_url = str(request.getfixturevalue("postgres_admin_url")) if kind == "postgres" else ""
    history = generate(seed=16, events=EVENTS)
    payloads = [encode(event) for event in history.deliveries]  # duplicates, out of order
    webhook_env = env_for(webhook_url)
    run(["migrate"], webhook_env)
    webhook_rate = _webhooks(webhook_env, payloads, tmp_path)
    run(["project", "--until-idle", "1"], webhook_env, 900)
    via_webhooks = reports(webhook_env)

    with (
        _second_database(kind, admin_url, tmp_path) as sqs_url,
        u.make_queue(sqs, visibility_timeout_s=60, max_receives=5) as queue,
    ):
        sqs_env = env_for(sqs_url)
        run(["migrate"], sqs_env)
        queue.send(u.body(event) for event in history.deliveries)
        sqs_rate = _via_sqs(sqs_env, queue, sqs_endpoint, tmp_path)
        run(["project", "--until-idle", "1"], sqs_env, 900)
        via_sqs = reports(sqs_env)
        db = Db(sqs_url)
        try:
            assert db.events() == len(history.events) and db.dead_letters() == 0
        finally:
            db.close()
        assert queue.count() == 0
    figures = {
        "database": kind,
        "events": len(history.events),
        "deliveries": len(payloads),
        "webhook_deliveries_per_s": round(webhook_rate),
        "consume_sqs_messages_per_s": round(sqs_rate),
    }
    print("sqs vs webhooks:", json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert all(via_webhooks[name] for name in via_webhooks), "every report has rows"
    assert via_sqs == via_webhooks
