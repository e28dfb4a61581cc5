"""The Kafka wire format: what producers write is what the consumer reads, and no module but
ledger/kafka_wire.py spells a header name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ledger import kafka_wire
from ledger.envelope import parse_event

ROOT = Path(__file__).resolve().parent.parent
EVENT = (
    b'{"id":"evt_1","object":"event","type":"charge.succeeded","created":1,"livemode":false,'
    b'"data":{"object":{"id":"ch_1","object":"charge"}},"account":"acct_9"}'
)


def test_a_record_round_trips_its_receive_time_and_key() -> None:
    event = parse_event(EVENT)
    record = kafka_wire.kafka_record(EVENT, event, 1_700_000_000_123)
    assert record.key == b"acct_9" and record.value == EVENT
    assert dict(record.headers)[kafka_wire.EVENT_ID_HEADER] == b"evt_1"
    when = kafka_wire.received_at(record.headers, broker_timestamp_ms=5)
    assert when == dt.datetime.fromtimestamp(1_700_000_000.123, dt.UTC)
    # No (or a bad) header: the broker's timestamp.
    assert kafka_wire.received_at([], 2_000) == dt.datetime.fromtimestamp(2, dt.UTC)
    bad = [(kafka_wire.RECEIVED_AT_MS_HEADER, b"soon")]
    assert kafka_wire.received_at(bad, 2_000) == dt.datetime.fromtimestamp(2, dt.UTC)


def test_a_platform_event_is_keyed_platform() -> None:
    raw = EVENT.replace(b',"account":"acct_9"', b"")
    record = kafka_wire.payload_record(parse_event(raw), 0)
    assert record.key == kafka_wire.PLATFORM_KEY.encode()
    assert parse_event(record.value).event_id == "evt_1"


def test_no_other_module_spells_a_header_name() -> None:
    literals = [f'"{kafka_wire.RECEIVED_AT_MS_HEADER}"', f"'{kafka_wire.RECEIVED_AT_MS_HEADER}'"]
    found = [
        str(path.relative_to(ROOT))
        for package in ("ingest", "ledger", "cli", "projections", "reports", "bench")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "kafka_wire.py"
        and any(literal in path.read_text(encoding="utf-8") for literal in literals)
    ]
    assert found == []
