"""``KafkaSink`` on its own, against the real broker: grouped sends, bounded waiting, stop.

The HTTP-level behaviour (200 only after the broker's acknowledgement, 503 when it cannot be
had) is in test_ingest_http.py; these tests hold the sink's own invariants (issue 21): every
request's record reaches the topic exactly once, concurrent requests share send jobs, and the
records waiting for the send thread are bounded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from ingest import sink as sink_module
from ingest.sink import KafkaSink, SinkUnavailable
from ledger import kafka_wire
from ledger.envelope import parse_event
from ledger.settings import Settings
from tests.support.ingest import event_body, read_topic

pytestmark = pytest.mark.kafka

CONNECT_WAIT_S_MAX = 20.0


@pytest.fixture
def settings(kafka_bootstrap: str, topic: str) -> Settings:
    return Settings(kafka_bootstrap=kafka_bootstrap, kafka_topic=topic)


async def _connected(sink: KafkaSink) -> None:
    await sink.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_WAIT_S_MAX
    while not await sink.ready():
        assert loop.time() < deadline, "the sink did not connect to the broker"
        await asyncio.sleep(0.1)


def _bodies(count: int) -> list[bytes]:
    # Two accounts and the platform: keys (and so partitions) differ within one group.
    accounts = [None, "acct_1Alpha", "acct_1Beta"]
    return [event_body("charge.succeeded", account=accounts[n % 3]) for n in range(count)]


def _put_all(settings: Settings, bodies: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Put every body concurrently through a connected sink; the size of each send job."""
    jobs: list[int] = []
    send_group = KafkaSink._send_group

    def counting(self: KafkaSink, loop: asyncio.AbstractEventLoop, group: list) -> None:  # type: ignore[type-arg]
        jobs.append(len(group))
        send_group(self, loop, group)

    monkeypatch.setattr(KafkaSink, "_send_group", counting)

    async def run() -> None:
        sink = KafkaSink(settings)
        await _connected(sink)
        try:
            now = kafka_wire.now_ms()
            await asyncio.gather(*(sink.put(body, parse_event(body), now) for body in bodies))
        finally:
            await sink.stop()

    asyncio.run(run())
    return jobs


def test_concurrent_puts_share_send_jobs_and_each_record_lands_once(
    settings: Settings, kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = _bodies(300)
    jobs = _put_all(settings, bodies, monkeypatch)
    assert sum(jobs) == len(bodies)
    # The 300 requests arrived in one loop iteration: far fewer jobs than requests.
    assert len(jobs) <= len(bodies) // sink_module.GROUP_EVENTS_MAX + 1, jobs
    records = read_topic(kafka_bootstrap, topic, len(bodies))
    assert sorted(record.value for record in records) == sorted(bodies)
    for record in records:
        account = json.loads(record.value).get("account")
        assert record.key == (account or kafka_wire.PLATFORM_KEY).encode()
        headers = dict(record.headers)
        assert headers[kafka_wire.EVENT_ID_HEADER] == json.loads(record.value)["id"].encode()


def test_a_group_larger_than_the_job_limit_is_split(
    settings: Settings, kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "GROUP_EVENTS_MAX", 7)
    jobs = _put_all(settings, _bodies(50), monkeypatch)
    assert max(jobs) <= 7 and sum(jobs) == 50, jobs
    assert len(read_topic(kafka_bootstrap, topic, 50)) == 50


def test_waiting_records_are_bounded_and_stop_answers_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no broker, records wait for the send thread; past the bound a put fails at once,
    and ``stop`` answers every waiting put instead of leaving it to its timeout."""
    monkeypatch.setattr(sink_module, "WAITING_EVENTS_MAX", 5)
    dead = replace(settings, kafka_bootstrap="127.0.0.1:1")
    bodies = _bodies(6)

    async def run() -> tuple[list[BaseException | None], float]:
        sink = KafkaSink(dead, produce_timeout_s=30.0)
        await sink.start()
        # The connect job holds the send thread; block the loop's hand-over too, so the puts
        # stay waiting in the outbox.
        monkeypatch.setattr(KafkaSink, "_hand_over_group", lambda self, loop: None)
        now = kafka_wire.now_ms()
        waiting = [
            asyncio.create_task(sink.put(body, parse_event(body), now)) for body in bodies[:5]
        ]
        await asyncio.sleep(0)
        with pytest.raises(SinkUnavailable, match="too many events waiting"):
            await sink.put(bodies[5], parse_event(bodies[5]), now)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sink.stop()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        return list(outcomes), loop.time() - started

    outcomes, stop_s = asyncio.run(run())
    assert all(isinstance(outcome, SinkUnavailable) for outcome in outcomes), outcomes
    assert stop_s < 10.0, stop_s  # answered by stop, not by the 30 s produce timeout
