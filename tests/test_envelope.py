"""The one envelope parser every door uses: what is and is not a Stripe event."""

from __future__ import annotations

import json

import pytest

from ledger.envelope import EnvelopeError, parse_event
from ledger.settings import EVENT_BODY_BYTES_MAX
from tests.conftest import STRIPE_FIXTURES
from tests.support.factory import charge_event, encode


def test_fields_come_from_the_payload() -> None:
    event = parse_event(encode(charge_event(7, account="acct_1", livemode=True)))
    assert event.event_id == "evt_test00000007"
    assert event.type == "charge.succeeded"
    assert event.api_version == "2026-07-29.dahlia"
    assert event.created == 1_760_000_007
    assert event.livemode is True
    assert event.account == "acct_1"
    assert (event.object_type, event.object_id) == ("charge", "ch_test00000007")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not utf-8", "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"object": "charge", "id": "ch_1"}', "object must be 'event'"),
        (b'{"object": "v2.core.event", "id": "evt_1"}', "'type'"),
        (b'{"object": "v2.core.event", "id": "evt_1", "type": "v1.x", "created": 1}', "ISO-8601"),
        (b'{"object": "event", "type": "x", "created": 1, "data": {"object": {}}}', "'id'"),
        (b'{"object": "event", "id": "evt_1", "created": 1, "data": {"object": {}}}', "'type'"),
        (b'{"object": "event", "id": "evt_1", "type": "x", "data": {"object": {}}}', "created"),
        (b'{"object": "event", "id": "evt_1", "type": "x", "created": "2024"}', "created"),
        (b'{"object": "event", "id": "evt_1", "type": "x", "created": 1}', "data.object"),
        (
            b'{"object":"event","id":"e","type":"x","created":1,"livemode":"yes",'
            b'"data":{"object":{}}}',
            "livemode",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nests deeper"),
        (b" " * (EVENT_BODY_BYTES_MAX + 1), "larger than"),
    ],
)
def test_refuses_what_is_not_an_event(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        parse_event(raw)


def test_every_real_sample_with_an_envelope_parses() -> None:
    paths = sorted((STRIPE_FIXTURES / "samples").glob("*.json"))
    assert len(paths) >= 40
    refused = {}
    for path in paths:
        try:
            parse_event(path.read_bytes())
        except EnvelopeError as error:
            refused[path.name] = str(error)
    # The only one that is not an event, as samples/SOURCES.md says (39 is a v2 thin event: it
    # is stored as what it is, see tests/test_thin_events.py).
    assert sorted(refused) == ["38_charge.refunded__pay-rails.json"]


def test_strings_that_look_like_brackets_do_not_count_as_nesting() -> None:
    event = charge_event(1)
    event["data"]["object"]["metadata"] = {"note": "[" * 500 + "{" * 500}
    assert parse_event(json.dumps(event).encode()).event_id == "evt_test00000001"
