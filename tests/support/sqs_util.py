"""The real SQS-compatible server (ElasticMQ from scripts/services.sh), boto3, and EventBridge
envelopes for the consume-sqs and Lambda tests. No mocks: every call goes to ElasticMQ."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.support.services import script_exports

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "eventbridge"
SOURCE = "aws.partner/stripe.com/ed_test_61RM8ltWaABC0Lj4H16RM8lSHESQ2ZIWlr1pAGy9Yq1Q"
OTHER_SOURCE = "aws.partner/stripe.com/ed_test_61RM8ltWaAnotherDestinationXXXXXXXXXXXX"
AWS_ACCOUNT = "123456789012"
# ElasticMQ checks no signature, but boto3 needs some credentials and a region to sign with.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test-key-id",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_REGION": "us-east-1",
}
SQS_START_TIMEOUT_S = 600
SEND_BATCH_MAX = 10


def sample(name: str) -> dict[str, Any]:
    """A real Stripe event from tests/fixtures/eventbridge (sources in SOURCES.md)."""
    value: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return value


def eventbridge_envelope(detail: dict[str, Any], source: str = SOURCE) -> dict[str, Any]:
    """The EventBridge event around a Stripe event, as Stripe's partner source delivers it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),  # EventBridge's own id: new on every delivery, never the key
        "detail-type": detail.get("type", "unknown"),
        "source": source,
        "account": AWS_ACCOUNT,
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1::event-source/{source}"],
        "detail": detail,
    }


def body(detail: dict[str, Any], source: str = SOURCE) -> str:
    return json.dumps(eventbridge_envelope(detail, source), separators=(",", ":"))


def sqs_endpoint_url() -> str:
    """LEDGER_SQS_ENDPOINT, or ElasticMQ started (or reused) by scripts/services.sh."""
    found = os.environ.get("LEDGER_SQS_ENDPOINT", "")
    if found:
        return found
    exports = script_exports("services.sh", "start-sqs", timeout_s=SQS_START_TIMEOUT_S)
    if "LEDGER_SQS_ENDPOINT" not in exports:
        raise RuntimeError(f"services.sh start-sqs printed no endpoint: {exports!r}")
    return exports["LEDGER_SQS_ENDPOINT"]


def client(endpoint_url: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=AWS_ENV["AWS_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
    )


@dataclass
class Queue:
    """A fresh queue with its DLQ (redrive after ``max_receives``), deleted afterwards."""

    sqs: Any
    url: str
    dlq_url: str

    def send(self, bodies: Iterable[str]) -> int:
        sent = 0
        chunk: list[str] = []
        for item in bodies:
            chunk.append(item)
            if len(chunk) == SEND_BATCH_MAX:
                sent += self._send_chunk(chunk)
                chunk = []
        if chunk:
            sent += self._send_chunk(chunk)
        return sent

    def _send_chunk(self, chunk: Sequence[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": text} for i, text in enumerate(chunk)]
        response = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        return len(response["Successful"])

    def count(self, url: str | None = None) -> int:
        """Visible + in flight + delayed messages of the queue (or of ``url``)."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        found = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)
        return sum(int(found["Attributes"].get(name, 0)) for name in names)

    def dlq_bodies(self) -> list[str]:
        out: list[str] = []
        for _ in range(20):  # bounded: ten per receive
            got = self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                break
            out += [message["Body"] for message in got]
        return out


@contextmanager
def make_queue(
    sqs: Any, *, visibility_timeout_s: int = 30, max_receives: int = 3
) -> Iterator[Queue]:
    """A uniquely named queue + DLQ on the shared ElasticMQ; both deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    try:
        yield Queue(sqs, url, dlq_url)
    finally:
        for queue_url in (url, dlq_url):
            sqs.delete_queue(QueueUrl=queue_url)


def consume_args(queue: Queue, endpoint: str, *extra: str) -> list[str]:
    """consume-sqs arguments for the tests: short polls, the test's partner source."""
    return [
        "consume-sqs",
        "--queue-url",
        queue.url,
        "--endpoint-url",
        endpoint,
        "--source",
        SOURCE,
        "--wait-time",
        "1",
        *extra,
    ]


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, **AWS_ENV, "LEDGER_DATABASE_URL": database_url, **extra}
    env["LEDGER_LOG_FORMAT"] = "json"
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        env.pop(name, None)
    return env
