"""Hostile input against the real ``stripe-ledger ingest`` process and the real broker, and the
records ingest would never produce straight on the topic against the real ``consume``.

Every hostile request is answered 4xx (never 2xx, never 500) and nothing of it reaches the
topic; events that parse as JSON but that the store could not hold (a ``created`` past BIGINT, an
over-long indexed string, NUL, a lone surrogate, NaN) are refused at the door, and if they are
on the topic anyway they become dead letters while the partition keeps flowing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from demo.client import sign
from ledger.database import create_engine, migrate
from tests.support import ingest as web
from tests.support.kafka_util import create_topic, produce
from tests.support.reliability import Db, env_for, run, topic_event_ids

BODY_MAX = 64 * 1024


def _event(event_id: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "type": "charge.succeeded",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": "ch_hostile", "object": "charge", "amount": 100}},
    }
    event.update(fields)
    return event


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# Signed with the right secret, JSON, but not something the store can hold or not an event.
UNSTORABLE: dict[str, bytes] = {
    "created_past_bigint": _json(_event("evt_h_created", created=2**63)),
    "negative_created": _json(_event("evt_h_negative", created=-1)),
    "account_too_long": _json(_event("evt_h_account", account="acct_" + "x" * 300)),
    "api_version_too_long": _json(_event("evt_h_api", api_version="v" * 65)),
    "object_id_too_long": _json(_event("evt_h_obj", data={"object": {"id": "x" * 256}})),
    "nul_in_a_string": _json(_event("evt_h_nul", description="a\u0000b")),
    "nul_in_the_id": _json(_event("evt_h_\u0000")),
    "lone_surrogate": _json(_event("evt_h_surrogate", description="\ud800")),
    "nan_amount": _json(_event("evt_h_nan", data={"object": {"id": "ch", "amount": float("nan")}})),
    "infinity": b'{"id":"evt_h_inf","object":"event","type":"x","created":1,'
    b'"data":{"object":{"amount":Infinity}}}',
    # issue 19: an amount past int64 stopped the projector; 5,000 digits raised ValueError (500)
    "amount_two_to_the_64": _json(_event("evt_h_2_64", data={"object": {"amount": 2**64}})),
    "amount_of_5000_digits": _json(_event("evt_h_5000"))[:-1]
    + b',"data":{"object":{"id":"ch","amount":'
    + b"7" * 5000
    + b"}}}",
    "overflows_to_infinity": _json(_event("evt_h_1e999"))[:-1] + b',"x":1e999}',
}
NOT_EVENTS: dict[str, bytes] = {
    "invalid_utf8": b'{"id":"evt_h_utf8","object":"event","x":"\xff\xfe"}',
    "deeply_nested_valid_json": b"[" * 20_000 + b"]" * 20_000,
    "deeply_nested_in_an_event": _json(_event("evt_h_deep"))[:-1]
    + b',"deep":'
    + b'{"a":' * 5000
    + b"1"
    + b"}" * 5000
    + b"}",
    "json_string": b'"evt_1"',
    "json_number": b"1e400",
    "json_null": b"null",
    "empty_body": b"",
    "array_of_events": _json([_event("evt_h_array")]),
    "event_without_data_object": _json(
        {k: v for k, v in _event("evt_h_nodata").items() if k != "data"}
    ),
    "thin_v2_event": _json({"id": "evt_h_thin", "object": "v2.core.event", "type": "x"}),
    **UNSTORABLE,
}


def _signed(body: bytes, secret: str = web.SECRET, at: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": sign(body, secret, int(time.time()) if at is None else at)}


def _hostile_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    good = _json(_event("evt_h_forged"))
    now = int(time.time())
    header = sign(good, web.SECRET, now)
    v1 = header.split("v1=")[1]
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("no_signature", good, {}),
        ("empty_signature", good, {"Stripe-Signature": ""}),
        ("wrong_secret", good, _signed(good, web.OTHER_SECRET)),
        ("secret_without_prefix", good, _signed(good, web.SECRET.removeprefix("whsec_"))),
        ("truncated_signature", good, {"Stripe-Signature": header[:-1]}),
        ("truncated_header", good, {"Stripe-Signature": header[: len(header) // 2]}),
        ("truncated_body", good[:-7], {"Stripe-Signature": header}),
        ("tampered_body", good.replace(b"100", b"999"), {"Stripe-Signature": header}),
        ("replayed_after_tolerance", good, _signed(good, at=now - 301)),
        ("post_dated_beyond_tolerance", good, _signed(good, at=now + 301)),
        ("v0_only", good, {"Stripe-Signature": f"t={now},v0={v1}"}),
        ("signature_of_another_timestamp", good, {"Stripe-Signature": f"t={now - 1},v1={v1}"}),
        ("uppercase_keys", good, {"Stripe-Signature": f"T={now},V1={v1}"}),
        ("thousands_of_v1", good, {"Stripe-Signature": f"t={now}," + "v1=0," * 1600}),
        ("thousands_of_v1_over_the_cap", good, {"Stripe-Signature": f"t={now}," + "v1=a," * 5000}),
        ("giant_signature_header", good, {"Stripe-Signature": f"t={now},v1=" + "a" * 12_000}),
        ("giant_other_header", good, {**_signed(good, web.OTHER_SECRET), "X-Junk": "j" * 12_000}),
        ("non_ascii_header", good, {"Stripe-Signature": f"t={now},v1=é{v1[1:]}"}),
        ("over_the_body_limit", b"{" + b" " * (BODY_MAX + 10) + b"}", _signed(b"{}")),
    ]
    for name, body in NOT_EVENTS.items():
        cases.append((name, body, _signed(body)))
    return cases


def test_hostile_requests_are_never_2xx_never_500_and_never_reach_the_topic(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, partitions=1)
    env = env_for("sqlite://", kafka_bootstrap, topic, LEDGER_BODY_BYTES_MAX=str(BODY_MAX))
    answers: dict[str, int] = {}
    with web.serve_cli(env, tmp_path / "ingest.log") as port:
        for name, body, headers in _hostile_requests():
            status, _headers, raw = web.request(port, "POST", web.WEBHOOK, body, headers)
            answers[name] = status
            assert 400 <= status < 500, (name, status, raw[:300])
        # The same door still takes a real event, once per delivery.
        real = _json(_event("evt_h_real"))
        for _ in range(2):
            status, _headers, raw = web.request(port, "POST", web.WEBHOOK, real, _signed(real))
            assert status == 200, raw
        assert web.request(port, "GET", "/healthz")[0] == 200
    print("hostile answers:", json.dumps(answers, sort_keys=True))
    assert len(answers) == len(_hostile_requests())
    assert topic_event_ids(kafka_bootstrap, topic) == ["evt_h_real", "evt_h_real"]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_unstorable_records_on_the_topic_become_dead_letters_and_the_partition_flows(
    backend: str, request: pytest.FixtureRequest, kafka_bootstrap: str, topic: str
) -> None:
    """A producer other than ingest (or an older ingest) put them there: the consumer must not
    stop on them (before issue 8's fix each one stopped its partition for good)."""
    url = str(request.getfixturevalue("postgres_url" if backend == "postgres" else "sqlite_url"))
    migrate(create_engine(url))
    create_topic(kafka_bootstrap, topic, partitions=1)
    records: list[tuple[bytes | None, bytes]] = [(b"k", _json(_event("evt_h_before")))]
    records += [(b"k", body) for body in NOT_EVENTS.values()]
    records += [(b"k", _json(_event("evt_h_after")))]
    produce(kafka_bootstrap, topic, records)
    run(
        ["consume", "--topic", topic, "--group", "g-hostile", "--until-idle", "3"],
        env_for(url, kafka_bootstrap, topic),
    )
    db = Db(url)
    try:
        assert sorted(db.event_ids()) == ["evt_h_after", "evt_h_before"]
        assert db.dead_letters() == len(NOT_EVENTS)
        assert db.offsets() == {0: len(records)}
    finally:
        db.close()
