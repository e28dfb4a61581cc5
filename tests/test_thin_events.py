"""v2 thin events (issue 16, bullet 4): stored by every door as what they are, counted, skipped by
the projections, and their objects fetched by ``thin-events fetch`` from a stand-in Stripe API.

The stand-in is a small HTTP server written here: stripe-mock does not serve /v2. Its answers
follow Stripe's API reference (the full v2 event adds ``data``; the Meter is a v1 object)."""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from demo.history import generate
from ingest.lambda_handler import LambdaEventBridge
from ledger.database import create_engine
from ledger.envelope import EnvelopeError, event_from_dict, parse_event
from ledger.settings import Settings
from ledger.store import EventStore, Incoming, open_event_store, utc_now
from ledger.stripe_api import StripeApi
from ledger.thin_events import THIN_OBJECT_FACT, RateLimit, counts, fetch, thin_object_fact
from projections import registry, worker
from tests.support import ingest as web
from tests.support import sqs_util as u
from tests.support.json_http import json_server
from tests.support.kafka_util import cli_env, run_cli
from tests.support.projection_world import stored
from tests.support.reliability import Worker, start_http_worker, wait_until
from tests.test_backfill import migrated
from tests.test_projections import dump
from tests.test_serve import _caught_up

FIXTURES = Path(__file__).parent / "fixtures" / "thin"
SAMPLE = "v1.billing.meter.error_report_triggered__stripe-python.json"
LIVE_KEY = "sk_live_" + "standin0key0never0printed00000"
TEST_KEY = "sk_test_" + "standin0key0never0printed00000"


def thin_sample(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((FIXTURES / SAMPLE).read_text())
    value.update(changes)
    return value


def thin_copy(n: int) -> dict[str, Any]:
    """A test-mode copy of the real sample with its own ids."""
    return thin_sample(
        id=f"evt_test_thin{n:04d}",
        livemode=False,
        related_object={
            "id": f"mtr_test_{n:04d}",
            "type": "billing.meter",
            "url": f"/v1/billing/meters/mtr_test_{n:04d}",
        },
    )


def _url(store: EventStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


# -- the envelope -----------------------------------------------------------------------------


def test_the_real_thin_event_is_parsed_from_its_reference() -> None:
    event = parse_event((FIXTURES / SAMPLE).read_bytes())
    assert event.thin
    assert event.event_id == "evt_234"
    assert event.type == "v1.billing.meter.error_report_triggered"
    assert event.created == 1_644_884_865  # 2022-02-15T00:27:45.330Z, floored to the second
    assert event.account == "acct_123"  # from `context`
    assert (event.object_type, event.object_id) == ("billing.meter", "mtr_123")
    assert event.api_version is None and event.livemode is True
    snapshot = parse_event(json.dumps(u.sample("charge.succeeded__dj-stripe.json")).encode())
    assert not snapshot.thin


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"created": 1_644_884_865}, "ISO-8601"),  # a thin event's created is a string
        ({"created": "2022-02-15T00:27:45"}, "time zone"),
        ({"created": "yesterday"}, "ISO-8601"),
        ({"created": "1969-12-31T23:59:59Z"}, "ISO-8601"),
        ({"related_object": "mtr_123"}, "related_object"),
        ({"related_object": {"id": 7}}, "related_object's 'id'"),
        ({"context": 5}, "'context'"),
        ({"context": "acct_" + "x" * 300}, "'context' is longer"),
        ({"type": ""}, "'type'"),
    ],
)
def test_a_malformed_thin_event_is_refused_with_one_line(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(EnvelopeError, match=reason) as caught:
        event_from_dict(thin_sample(**changes))
    assert "\n" not in str(caught.value)


def test_a_thin_event_without_related_object_or_context_is_the_platform_and_no_object() -> None:
    value = thin_sample()
    del value["context"], value["related_object"]
    event = event_from_dict(value)
    assert (event.account, event.object_type, event.object_id) == (None, None, None)


def test_the_fact_id_hashes_what_was_fetched_not_when() -> None:
    [thin] = stored([thin_copy(1)])
    first = thin_object_fact(thin, {"id": "x"}, {"id": "mtr_1"}, fetch_error=None, fetched_s=1)
    again = thin_object_fact(thin, {"id": "x"}, {"id": "mtr_1"}, fetch_error=None, fetched_s=9)
    changed = thin_object_fact(thin, {"id": "x"}, {"id": "mtr_2"}, fetch_error=None, fetched_s=9)
    assert first.event_id == again.event_id != changed.event_id
    assert first.event_id.startswith("thinobj_evt_test_thin0001_")
    assert first.type == THIN_OBJECT_FACT and not first.thin
    gone = thin_object_fact(thin, None, None, fetch_error="HTTP 404", fetched_s=1)
    assert gone.payload["data"]["object"] == {"id": "mtr_test_0001", "object": "billing.meter"}


def test_the_rate_limit_spaces_requests_evenly() -> None:
    now = [100.0]
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(round(seconds, 6))
        now[0] += seconds
        return False

    limit = RateLimit(4.0, wait, clock=lambda: now[0])
    for _ in range(5):
        assert limit.acquire() is False
    assert waits == [0.25, 0.25, 0.25, 0.25]  # the first goes at once, then one per 1/4 s


# -- every door stores it, once, and counts it ------------------------------------------------


def _status(database_url: str) -> dict[str, int]:
    done = run_cli(["thin-events", "status", "--json"], cli_env(database_url))
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def test_a_thin_webhook_through_serve_is_stored_once_counted_and_skipped(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = cli_env(sqlite_url, STRIPE_WEBHOOK_SECRET=web.SECRET)
    served, port = start_http_worker("serve", env, tmp_path / "serve.log")
    try:
        body = (FIXTURES / SAMPLE).read_bytes()  # the real bytes, signed as Stripe signs them
        for _ in range(2):  # Stripe delivers at least once
            status, answer = web.post_webhook(port, body, web.stripe_signature(body))
            assert (status, answer) == (200, {"status": "accepted", "event_id": "evt_234"})
        store = open_event_store(create_engine(sqlite_url))
        wait_until(lambda: _caught_up(store), "the projector past the thin event")
    finally:
        served.signal(15)
        assert served.wait(60) == 0, served.log_path.read_text()
    [stored] = store.read(0, 10)
    assert (stored.event_id, stored.source, stored.payload) == ("evt_234", "webhook", thin_sample())
    assert _status(sqlite_url) == {"stored": 1, "fetched": 0, "gone": 0, "pending": 1}


def test_a_thin_event_file_imports_once(postgres_url: str, tmp_path: Path) -> None:
    store = migrated(postgres_url)
    path = tmp_path / "thin.jsonl"
    lines = [json.dumps(thin_copy(n)) for n in range(3)]
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    for expected in (b"4 events: 3 new, 1 already known", b"4 events: 0 new, 4 already known"):
        done = run_cli(["import", str(path)], cli_env(_url(store)))
        assert done.returncode == 0, done.stderr.decode()
        assert expected in done.stdout
    assert store.count() == 3
    assert _status(postgres_url) == {"stored": 3, "fetched": 0, "gone": 0, "pending": 3}


def test_consume_sqs_stores_thin_events_once_and_deletes_them(
    postgres_url: str, sqs: Any, sqs_endpoint: str, tmp_path: Path
) -> None:
    migrated(postgres_url)
    details = [thin_copy(n) for n in range(5)]
    bodies = [u.body(d) for d in details] * 2  # EventBridge duplicates
    random.Random(4).shuffle(bodies)
    with u.make_queue(sqs, visibility_timeout_s=30, max_receives=3) as queue:
        assert queue.send(bodies) == len(bodies)
        args = u.consume_args(queue, sqs_endpoint, "--until-idle", "3")
        log = tmp_path / "consume.log"
        assert Worker(args, u.worker_env(postgres_url), log).wait(120) == 0, log.read_text()
        assert queue.count() == 0 and queue.count(queue.dlq_url) == 0
    assert _status(postgres_url) == {"stored": 5, "fetched": 0, "gone": 0, "pending": 5}


@pytest.mark.kafka
def test_the_lambdas_sqs_batch_puts_thin_events_on_the_topic_and_consume_stores_them_once(
    postgres_url: str, sqs: Any, kafka_bootstrap: str, topic: str
) -> None:
    from tests.test_ingest_lambda_eventbridge import sqs_event

    migrated(postgres_url)
    details = [thin_copy(n) for n in range(3)]
    bridge = LambdaEventBridge(
        Settings(
            kafka_bootstrap=kafka_bootstrap, kafka_topic=topic, eventbridge_sources=(u.SOURCE,)
        )
    )
    try:
        with u.make_queue(sqs) as queue:
            queue.send([u.body(d) for d in details + details[:1]])
            reply = bridge.handle(sqs_event(queue, 4))
        assert reply == {"batchItemFailures": []}
    finally:
        bridge.close()
    done = run_cli(
        ["consume", "--topic", topic, "--group", "g-thin", "--until-idle", "3"],
        cli_env(postgres_url, kafka_bootstrap),
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _status(postgres_url) == {"stored": 3, "fetched": 0, "gone": 0, "pending": 3}


# -- the fetch worker against a stand-in Stripe API -------------------------------------------


@dataclass
class StandIn:
    """Scripted answers per path: each request takes the next one; the last one repeats."""

    answers: dict[str, list[tuple[int, dict[str, str], Any]]] = field(default_factory=dict)
    seen: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.seen.append((time.monotonic(), path, headers))
            script = self.answers.get(path)
            if not script:
                return 404, {}, {"error": {"type": "invalid_request_error", "message": "no such"}}
            return script.pop(0) if len(script) > 1 else script[0]

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]


@contextmanager
def stand_in() -> Iterator[tuple[StandIn, str]]:
    fake = StandIn()
    with json_server(fake.answer) as base:
        yield fake, base


def full_event(thin: dict[str, Any]) -> dict[str, Any]:
    """GET /v2/core/events/{id}: the thin event plus its ``data`` (the API reference's shape)."""
    return {
        **thin,
        "data": {
            "developer_message_summary": "There is 1 invalid event",
            "reason": {
                "error_count": 1,
                "error_types": [{"code": "meter_event_no_customer_defined"}],
            },
            "validation_start": "2022-02-15T00:00:00.000Z",
            "validation_end": "2022-02-15T00:27:45.000Z",
        },
    }


def meter(meter_id: str) -> dict[str, Any]:
    return {
        "id": meter_id,
        "object": "billing.meter",
        "created": 1_644_880_000,
        "display_name": "API requests",
        "event_name": "api_requests",
        "livemode": False,
        "status": "active",
    }


def _fetch(database_url: str, base: str, key: str = TEST_KEY, *extra: str) -> Any:
    env = cli_env(database_url, STRIPE_API_KEY=key, STRIPE_API_BASE=base, LEDGER_LOG_LEVEL="debug")
    done = run_cli(["thin-events", "fetch", "--once", *extra], env)
    output = done.stdout.decode() + done.stderr.decode()
    assert key[len("sk_live_") :] not in output  # the key is never printed, even at debug level
    return done.returncode, output


def test_fetch_honours_429_stores_each_object_once_and_sends_the_context(
    database_url: str,
) -> None:
    store = migrated(database_url)
    thins = [thin_copy(n) for n in range(3)]
    store.append([Incoming(event_from_dict(t), "webhook", utc_now()) for t in thins])
    with stand_in() as (fake, base):
        for thin in thins:
            fake.answers[f"/v2/core/events/{thin['id']}"] = [(200, {}, full_event(thin))]
            obj_id = thin["related_object"]["id"]
            fake.answers[thin["related_object"]["url"]] = [(200, {}, meter(obj_id))]
        rate_limited = {"error": {"type": "rate_limit", "message": "Too many requests"}}
        first = f"/v2/core/events/{thins[0]['id']}"
        fake.answers[first].insert(0, (429, {"Retry-After": "1"}, rate_limited))
        code, output = _fetch(database_url, base)
        assert code == 0, output
        assert "3 thin event(s), 3 fact(s) appended, 0 already stored, 0 gone" in output
        assert fake.paths()[:2] == [first, first]  # the 429, then its retry
        (asked_s, _, _), (retried_s, _, headers) = fake.seen[:2]
        assert retried_s - asked_s >= 1.0  # Retry-After: 1 was waited for
        assert headers.get("Stripe-Context") == "acct_123"  # the thin event's context
        assert len(fake.seen) == 7  # 1 retry + 3 x (event, object)
        code, output = _fetch(database_url, base)  # nothing pending: no request at all
        assert code == 0 and len(fake.seen) == 7, output
    facts = [e for e in store.read(0, 100) if e.type == THIN_OBJECT_FACT]
    assert sorted(f.object_id for f in facts) == ["mtr_test_0000", "mtr_test_0001", "mtr_test_0002"]
    assert {f.source for f in facts} == {"backfill"} and {f.account for f in facts} == {"acct_123"}
    fact = next(f for f in facts if f.object_id == "mtr_test_0000")
    assert fact.payload["data"]["object"] == meter("mtr_test_0000")
    assert fact.payload["ledger"]["event"] == full_event(thins[0])
    assert counts(store.engine).fetched == 3
    assert _status(database_url) == {"stored": 3, "fetched": 3, "gone": 0, "pending": 0}


def test_fetch_records_what_is_gone_skips_the_other_mode_and_stops_on_a_refused_key(
    sqlite_url: str,
) -> None:
    store = migrated(sqlite_url)
    gone, live = thin_copy(7), thin_sample()  # live: the real sample (livemode true)
    store.append([Incoming(event_from_dict(t), "webhook", utc_now()) for t in (gone, live)])
    with stand_in() as (fake, base):
        code, output = _fetch(sqlite_url, base, TEST_KEY, "--rate", "50")
        assert code == 0, output
        assert fake.paths() == [f"/v2/core/events/{gone['id']}"]  # 404; the live one not asked
        assert "1 gone at Stripe" in output
        assert _status(sqlite_url) == {"stored": 2, "fetched": 1, "gone": 1, "pending": 1}
        refused = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
        fake.answers["/v2/core/events/evt_234"] = [(401, {}, refused)]
        code, output = _fetch(sqlite_url, base, LIVE_KEY)
        assert code == 1 and "HTTP 401" in output and output.count("\n") <= 3, output
        assert _status(sqlite_url)["pending"] == 1  # still pending: the next run asks again


def test_fetch_without_an_api_key_is_one_line_and_exit_2(sqlite_url: str) -> None:
    migrated(sqlite_url)
    done = run_cli(["thin-events", "fetch", "--once"], cli_env(sqlite_url))
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1 and b"STRIPE_API_KEY" in done.stderr
    done = run_cli(["thin-events", "fetch", "--limit", "0"], cli_env(sqlite_url))
    assert done.returncode == 2 and b"--limit" in done.stderr


# -- the projections: nothing changes because of a thin event ---------------------------------


def test_thin_events_and_their_facts_change_nothing_in_the_projections(postgres_url: str) -> None:
    store = migrated(postgres_url)
    history = generate(seed=16, events=300)
    store.append([Incoming(event_from_dict(e), "import", utc_now()) for e in history.deliveries])
    worker.run(store, until_idle_s=0)
    before = dump(store.engine, 1)
    assert before["journal"], "the history posts something"
    # A thin event about a charge the journal knows, and a fact holding that charge changed:
    # neither is a snapshot event the projections fold.
    charge = next(
        copy.deepcopy(e["data"]["object"])
        for e in history.deliveries
        if e["type"] == "charge.succeeded"
    )
    thin = thin_copy(9)
    related = {"id": charge["id"], "type": "charge", "url": f"/v1/charges/{charge['id']}"}
    thin.update(type="v1.charge.updated", related_object=related)
    thin_event = event_from_dict(thin)
    store.append([Incoming(thin_event, "webhook", utc_now())])
    charge["amount_refunded"] = charge.get("amount", 0)
    [stored_thin] = store.read(store.head_position() - 1, 1)
    fact = thin_object_fact(
        stored_thin, full_event(thin), charge, fetch_error=None, fetched_s=int(time.time())
    )
    store.append([Incoming(fact, "backfill", utc_now())])
    stats = worker.run(store, until_idle_s=0)
    assert set(stats.positions.values()) == {store.head_position()}
    assert all(c.applied == 0 and c.skipped == 2 for c in stats.per_projection.values()), stats
    assert dump(store.engine, 1) == before
    with store.engine.connect() as connection:
        for projection in registry.get():
            assert registry.state(connection, projection.name).position == store.head_position()


def test_fetch_every_is_bounded_per_run_and_sigterm_exits_0(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = migrated(sqlite_url)
    thins = [thin_copy(n) for n in range(3)]
    store.append([Incoming(event_from_dict(t), "webhook", utc_now()) for t in thins])
    with stand_in() as (fake, base):
        for thin in thins:
            fake.answers[f"/v2/core/events/{thin['id']}"] = [(200, {}, full_event(thin))]
            fake.answers[thin["related_object"]["url"]] = [(200, {}, meter("m"))]
        env = cli_env(sqlite_url, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=base)
        log = tmp_path / "fetch.log"
        fetcher = Worker(["thin-events", "fetch", "--every", "1m", "--limit", "2"], env, log)
        try:
            wait_until(lambda: b"2 fact(s) appended" in log.read_bytes(), "the first run")
            fetcher.signal(15)  # while it waits for the next run
            assert fetcher.wait(30) == 0, log.read_text()
        finally:
            fetcher.kill()
    assert len(fake.seen) == 4  # two thin events of three: --limit 2 per run
    assert _status(sqlite_url) == {"stored": 3, "fetched": 2, "gone": 0, "pending": 1}


def test_an_answer_that_cannot_be_stored_is_a_fact_saying_so(sqlite_url: str) -> None:
    store = migrated(sqlite_url)
    thin = thin_copy(3)
    store.append([Incoming(event_from_dict(thin), "webhook", utc_now())])
    stop = threading.Event()
    with stand_in() as (fake, base):
        fake.answers[f"/v2/core/events/{thin['id']}"] = [(200, {}, full_event(thin))]
        fake.answers[thin["related_object"]["url"]] = [(200, {}, {**meter("m"), "note": "a\x00b"})]
        api = StripeApi(TEST_KEY, base=base, wait=stop.wait)
        totals = fetch(store, api, RateLimit(50.0, stop.wait))
    assert (totals.considered, totals.appended, totals.gone, totals.requests) == (1, 1, 1, 2)
    [fact] = [e for e in store.read(0, 10) if e.type == THIN_OBJECT_FACT]
    assert "cannot be stored" in fact.payload["ledger"]["fetch_error"]
    assert fact.payload["data"]["object"] == {"id": "mtr_test_0003", "object": "billing.meter"}
