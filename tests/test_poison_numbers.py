"""Numbers no column can hold, through every door, and a poison event already in the store
(issue 19).

A signed event with an amount of 2^64 used to be answered 200 and then stop the projector for
good (SQLite INTEGER overflow; the store is append-only, the event cannot be taken out); an
integer of 5,000 digits made ``decode_json`` raise ValueError (serve answered 500, the Lambda
raised, consume would crash-loop on that offset); import arrays stored NaN and import lines
stored 1e999 as Infinity. Now the one decoder refuses them at every door with a reason, and the
projector records an event it cannot fold, skips it and goes on; ``verify`` reports it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.lambda_handler import LambdaIngest
from ledger.backfill import BackfillError, normalize
from ledger.database import create_engine, migrate
from ledger.envelope import EnvelopeError, StripeEvent, decode_json
from ledger.eventbridge import parse_eventbridge, unwrap
from ledger.settings import Settings
from ledger.store import EventStore, Incoming, open_event_store
from tests.support import ingest as web
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import cli_env, run_cli
from tests.support.reliability import Worker, env_for, start_http_worker

TWO_64 = "18446744073709551616"
FIVE_THOUSAND_DIGITS = "7" * 5000


def _event_text(event_id: str, amount: str) -> bytes:
    """An event whose charge amount is ``amount`` written as is (json.dumps cannot write 1e999)."""
    created = int(time.time())
    return (
        f'{{"id":"{event_id}","object":"event","type":"charge.succeeded","created":{created},'
        '"livemode":false,"api_version":"2026-07-29.dahlia","data":{"object":{"id":"ch_poison",'
        f'"object":"charge","amount":{amount},"amount_captured":{amount},"currency":"usd",'
        '"captured":true,"paid":true,"status":"succeeded"}}}'
    ).encode()


POISON = {
    "two_to_the_64": TWO_64,
    "below_int64": "-9223372036854775809",
    "five_thousand_digits": FIVE_THOUSAND_DIGITS,
    "overflows_to_infinity": "1e999",
    "nan": "NaN",
    "infinity": "-Infinity",
}


@pytest.mark.parametrize("text", list(POISON.values()), ids=list(POISON))
def test_the_decoder_refuses_with_a_reason(text: str) -> None:
    with pytest.raises(EnvelopeError) as raised:
        decode_json(b'{"amount": %s}' % text.encode())
    assert (
        "int64" in str(raised.value) or "float" in str(raised.value) or "JSON" in str(raised.value)
    )
    assert len(str(raised.value)) < 120


def test_the_decoder_takes_the_int64_bounds_and_ordinary_floats() -> None:
    raw = b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 0.5, "d": 1e300}'
    assert decode_json(raw) == {"a": 2**63 - 1, "b": -(2**63), "c": 0.5, "d": 1e300}


@pytest.fixture
def serve(tmp_path: Path) -> Any:
    env = env_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    worker, port = start_http_worker("serve", env, tmp_path / "serve.log", ["--no-project"])
    yield worker, port
    worker.kill()


def test_serve_answers_400_never_500_and_stores_nothing(serve: tuple[Worker, int]) -> None:
    worker, port = serve
    for name, text in POISON.items():
        body = _event_text(f"evt_poison_{name}", text)
        headers = {"Stripe-Signature": web.stripe_signature(body)}
        status, _headers, raw = web.request(port, "POST", web.WEBHOOK, body, headers)
        assert status == 400, (name, status, raw)
        assert json.loads(raw)["error"] == "invalid_json", raw
    body = web.event_body()
    assert (
        web.request(
            port, "POST", web.WEBHOOK, body, {"Stripe-Signature": web.stripe_signature(body)}
        )[0]
        == 200
    )
    assert worker.alive()


def test_the_lambda_answers_400() -> None:
    state = LambdaIngest(Settings(kafka_bootstrap="127.0.0.1:9", webhook_secrets=(web.SECRET,)))
    for name, text in POISON.items():
        body = _event_text(f"evt_poison_{name}", text)
        result = state.handle(
            {
                "httpMethod": "POST",
                "headers": {"Stripe-Signature": web.stripe_signature(body)},
                "body": body.decode(),
                "isBase64Encoded": False,
            }
        )
        assert result["statusCode"] == 400, (name, result)
        assert json.loads(result["body"])["error"] == "invalid_json"


def test_import_names_the_line_and_refuses_arrays(sqlite_url: str, tmp_path: Path) -> None:
    migrate(create_engine(sqlite_url))
    lines = [encode(charge_event(1)), _event_text("evt_inf", "1e999"), encode(charge_event(2))]
    lines.append(_event_text("evt_big", FIVE_THOUSAND_DIGITS))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = run_cli(["import", str(path)], cli_env(sqlite_url))
    assert done.returncode == 2, done.stderr
    assert b"line 2: payload holds the number 1e999, too large for a float" in done.stderr
    assert b"line 4: payload holds an integer of 5000 digits, outside int64" in done.stderr
    for text in ("NaN", "1e999", TWO_64):
        array = tmp_path / "events.json"
        array.write_bytes(b"[" + encode(charge_event(3)) + b"," + _event_text("e", text) + b"]")
        done = run_cli(["import", str(array)], cli_env(sqlite_url))
        assert done.returncode == 2, (text, done.stdout, done.stderr)
        assert b"Traceback" not in done.stderr
    store = open_event_store(create_engine(sqlite_url))
    assert store.count() == 0


def test_backfill_refuses_what_the_stripe_sdk_decoded() -> None:
    for amount in (2**64, float("inf"), float("nan")):
        raw = json.loads(_event_text("evt_backfill", "1"))
        raw["data"]["object"]["amount"] = amount
        with pytest.raises(BackfillError, match="int64"):
            normalize(raw, None)


def _poison_in_the_store(url: str) -> EventStore:
    """An event stored before the decoder was total: built by hand, past the envelope."""
    engine = create_engine(url)
    migrate(engine)
    store = open_event_store(engine)
    now = dt.datetime.now(dt.UTC)
    good_before = charge_event(1)
    poison = json.loads(_event_text("evt_poison_stored", "1"))
    poison["data"]["object"]["amount"] = 2**64
    poison["data"]["object"]["amount_captured"] = 2**64
    good_after = charge_event(2)
    incoming = []
    for payload in (good_before, poison, good_after):
        event = StripeEvent(
            event_id=payload["id"],
            type=payload["type"],
            api_version=payload.get("api_version"),
            created=payload["created"],
            livemode=False,
            account=None,
            object_type="charge",
            object_id=payload["data"]["object"]["id"],
            payload=payload,
        )
        incoming.append(Incoming(event=event, source="import", received_at=now))
    assert store.append(incoming).appended == 3
    return store


def test_a_poison_event_in_the_store_is_recorded_and_the_projector_goes_on(
    database_url: str,
) -> None:
    store = _poison_in_the_store(database_url)
    env = cli_env(database_url)
    project = run_cli(["project", "--until-idle", "1"], env)
    assert project.returncode == 0, project.stderr.decode()[-3000:]
    lines = [
        json.loads(line)
        for line in project.stdout.splitlines() + project.stderr.splitlines()
        if line.startswith(b"{")
    ]
    assert any(line.get("event") == "event_not_projected" for line in lines), lines[-5:]
    head = store.read(0, 10)[-1].position
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, position FROM projection_state").all()
    positions = {name: position for name, position in rows}
    assert set(positions.values()) == {head}, positions  # every projection reached the head
    verify = run_cli(["verify"], env)
    assert verify.returncode != 0
    assert b"evt_poison_stored" in verify.stdout + verify.stderr
    assert b"could not fold" in verify.stdout + verify.stderr
    again = run_cli(["project", "--until-idle", "1"], env)  # a restart does not die on it either
    assert again.returncode == 0


def test_the_eventbridge_and_sqs_doors_refuse_them() -> None:
    """consume-sqs decodes the message body (``parse_eventbridge``); the Lambda gets the
    EventBridge event already decoded by its runtime (``unwrap`` checks the values)."""
    source = "aws.partner/stripe.com/ed_test"
    for name, text in POISON.items():
        detail = _event_text(f"evt_eb_{name}", text)
        raw = b'{"version":"0","detail-type":"x","source":"%s","detail":%s}' % (
            source.encode(),
            detail,
        )
        with pytest.raises(EnvelopeError):
            parse_eventbridge(raw, (source,))
    decoded = json.loads(_event_text("evt_eb_decoded", "1"))
    decoded["data"]["object"]["amount"] = 2**64
    with pytest.raises(EnvelopeError, match="int64"):
        unwrap({"detail-type": "x", "source": source, "detail": decoded}, (source,))
