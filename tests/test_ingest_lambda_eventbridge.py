"""The Lambda handler with EventBridge events and SQS batches: real Kafka broker, real ElasticMQ
messages (the SQS event is built from what ElasticMQ delivered), real Stripe samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ingest import lambda_handler
from ingest.lambda_handler import EventRejected, LambdaEventBridge, SinkUnavailable
from ledger.envelope import parse_event
from ledger.settings import Settings
from tests.support import sqs_util as u
from tests.support.ingest import read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
def bridge(kafka_bootstrap: str, topic: str) -> Iterator[LambdaEventBridge]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, kafka_topic=topic, eventbridge_sources=(u.SOURCE,)
    )
    state = LambdaEventBridge(settings)
    yield state
    state.close()


def sqs_event(queue: u.Queue, count: int) -> dict[str, Any]:
    """What an event source mapping hands the function: the messages ElasticMQ delivered."""
    messages: list[dict[str, Any]] = []
    for _ in range(10):  # bounded
        got = queue.sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        messages += got
        if len(messages) >= count:
            break
    assert len(messages) == count
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:" + queue.url.split("/")[-1],
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_a_direct_eventbridge_event_goes_to_the_topic(
    bridge: LambdaEventBridge, kafka_bootstrap: str, topic: str
) -> None:
    detail = u.sample("account.updated__dj-stripe.json")
    reply = bridge.handle(u.eventbridge_envelope(detail))
    assert reply == {"status": "accepted", "event_id": detail["id"]}
    [record] = read_topic(kafka_bootstrap, topic, 1)
    assert record.key == b"acct_1Fg9jUA3kq9o1aTc"
    assert parse_event(record.value).payload == detail  # what `consume` will store


def test_a_direct_event_from_another_source_is_refused(
    bridge: LambdaEventBridge, kafka_bootstrap: str, topic: str
) -> None:
    envelope = u.eventbridge_envelope(u.sample("charge.succeeded__dj-stripe.json"), u.OTHER_SOURCE)
    with pytest.raises(EventRejected, match="not a configured Stripe partner event source"):
        bridge.handle(envelope)
    assert read_topic(kafka_bootstrap, topic, 0) == []


def test_an_sqs_batch_answers_with_its_poison_messages_only(
    bridge: LambdaEventBridge, queue_for_lambda: u.Queue, kafka_bootstrap: str, topic: str
) -> None:
    good = [
        u.sample("charge.succeeded__dj-stripe.json"),
        u.sample("account.updated__dj-stripe.json"),
    ]
    poison = ["not json", u.body(good[0], u.OTHER_SOURCE)]
    queue_for_lambda.send([u.body(d) for d in good] + poison)
    event = sqs_event(queue_for_lambda, 4)
    reply = bridge.handle(event)
    failed = {item["itemIdentifier"] for item in reply["batchItemFailures"]}
    expected = {r["messageId"] for r in event["Records"] if r["body"] in poison}
    assert failed == expected and len(failed) == 2
    records = read_topic(kafka_bootstrap, topic, 2)
    assert sorted(parse_event(r.value).event_id for r in records) == sorted(d["id"] for d in good)


def test_an_sqs_batch_with_the_broker_away_fails_every_message(sqs: Any, topic: str) -> None:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:1", kafka_topic=topic, eventbridge_sources=(u.SOURCE,)
    )
    state = LambdaEventBridge(settings, produce_timeout_s=1.0)
    try:
        with u.make_queue(sqs) as queue:
            queue.send([u.body(u.sample("charge.succeeded__dj-stripe.json"))])
            event = sqs_event(queue, 1)
        reply = state.handle(event)
        assert reply["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
        with pytest.raises(SinkUnavailable):
            state.handle(u.eventbridge_envelope(u.sample("charge.succeeded__dj-stripe.json")))
    finally:
        state.close()


def test_the_module_handler_routes_eventbridge_without_a_webhook_secret(
    kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET_FILE", raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("LEDGER_KAFKA_TOPIC", topic)
    monkeypatch.delenv("LEDGER_EVENTBRIDGE_SOURCES", raising=False)
    detail = u.sample("charge.succeeded__dj-stripe.json")
    lambda_handler._reset_for_tests()
    try:
        with pytest.raises(RuntimeError, match="misconfigured"):  # no partner source: refuse
            lambda_handler.handler(u.eventbridge_envelope(detail), None)
        monkeypatch.setenv("LEDGER_EVENTBRIDGE_SOURCES", u.SOURCE)
        reply = lambda_handler.handler(u.eventbridge_envelope(detail), None)
        assert reply["event_id"] == detail["id"]
        [record] = read_topic(kafka_bootstrap, topic, 1)
        assert json.loads(record.value)["id"] == detail["id"]
    finally:
        lambda_handler._reset_for_tests()


@pytest.fixture
def queue_for_lambda(sqs: Any) -> Iterator[u.Queue]:
    with u.make_queue(sqs) as queue:
        yield queue
