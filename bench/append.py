"""1. append: the consumer, from Kafka into the PostgreSQL store, events/s, at two payload sizes.

The topic is filled first (as ingest writes it: raw body, account key, received_at_ms header),
then ``stripe-ledger consume`` runs as a child process and the store is polled. The rate counts
from the first committed batch to the last one (the group join before it is not append work).
Baseline, same run, same database: ``COPY`` of the same payloads, with the columns precomputed,
into a table of the events table's shape. Two streams: the demo generator's deliveries (about
2.3 KB, duplicates included) and the small-payload stream (``common.small_payloads``, ~880 B).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import (
    EVENT_COPY_COLUMNS,
    STORED_SQL,
    Proc,
    Scale,
    busy_cores,
    copy_row,
    cpu_s,
    ledger_env,
    machine_ticks,
    migrated,
    payloads,
    psycopg_url,
    scratch_database,
    small_payloads,
    stripe_ledger,
)

POLL_S = 0.02
TIMEOUT_S = 1800.0


def fill_topic(bootstrap: str, topic: str, rows: list[bytes]) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from ledger.envelope import parse_event
    from ledger.kafka_wire import kafka_record, send

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    now_ms = int(time.time() * 1000)
    for raw in rows:
        record = kafka_record(raw, parse_event(raw), now_ms)
        send(producer, topic, record)
    producer.flush(120)
    producer.close()


def copy_baseline(url: str, rows: list[bytes]) -> dict[str, Any]:
    """COPY the same payloads (columns computed beforehand) into a table shaped like events."""
    from ledger.envelope import parse_event

    received = dt.datetime.now(dt.UTC)
    prepared = []
    seen: set[str] = set()
    for offset, raw in enumerate(rows):
        event = parse_event(raw)
        if event.event_id in seen:  # the store keeps one row per id: so does the baseline
            continue
        seen.add(event.event_id)
        prepared.append(
            copy_row(event, received, "webhook", raw.decode("utf-8"), ("bench", 0, offset))
        )
    with psycopg.connect(psycopg_url(url)) as connection:
        connection.execute(
            "CREATE TABLE copy_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING INDEXES)"
        )
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY copy_events ({EVENT_COPY_COLUMNS}) FROM STDIN") as copy:
                for row in prepared:
                    copy.write_row(row)
        connection.commit()
        elapsed = time.perf_counter() - started
        count = connection.execute("SELECT count(*) FROM copy_events").fetchone()
    assert count is not None and count[0] == len(prepared)
    return {
        "events": len(prepared),
        "seconds": round(elapsed, 3),
        "events_s": len(prepared) / elapsed,
    }


def consume(url: str, bootstrap: str, rows: list[bytes], expected: int) -> dict[str, Any]:
    topic = f"bench.append.{uuid.uuid4().hex[:8]}"
    fill_topic(bootstrap, topic, rows)
    engine = sa.create_engine(sa.make_url(url), poolclass=sa.NullPool)
    env = ledger_env(
        {
            "LEDGER_DATABASE_URL": url,
            "LEDGER_KAFKA_BOOTSTRAP": bootstrap,
            "LEDGER_KAFKA_TOPIC": topic,
            "LEDGER_KAFKA_GROUP": f"bench-{topic}",
        }
    )
    proc_started = time.perf_counter()
    proc = Proc("append-consume", stripe_ledger("consume"), env)
    first_at = first_count = None
    deadline = time.monotonic() + TIMEOUT_S
    peak: dict[str, float] = {}
    try:
        with engine.connect() as connection:
            while True:
                proc.check()
                count = connection.execute(sa.text(STORED_SQL)).scalar() or 0
                connection.rollback()
                now = time.perf_counter()
                if count and first_at is None:
                    first_at, first_count = now, count
                    first_cpu_s, first_ticks = cpu_s(proc.pid), machine_ticks()
                if count >= expected:
                    done_at = now
                    done_cpu_s, done_ticks = cpu_s(proc.pid), machine_ticks()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"consume stored {count} of {expected} events")
                time.sleep(POLL_S)
        peak = proc.memory()
    finally:
        proc.stop()
        engine.dispose()
    assert first_at is not None and first_count is not None
    measured = expected - first_count
    seconds = max(done_at - first_at, 1e-6)
    window_events = measured  # the CPU figures' window: from the first committed batch
    if measured == 0:  # everything came in one batch (tiny sizes): count from the start
        measured, seconds = expected, max(done_at - proc_started, 1e-6)
    return {
        "events": expected,
        "measured_events": measured,
        "seconds": round(seconds, 3),
        "events_s": measured / seconds,
        "consumer_rss": peak,
        # Where the time goes, over the same window: the consumer's own CPU per event (one
        # interpreter lock), and how many of the machine's cores were busy (the consumer,
        # PostgreSQL, the broker and this poller together).
        "consumer_cpu_us_per_event": (
            round((done_cpu_s - first_cpu_s) * 1e6 / window_events, 1) if window_events else None
        ),
        "busy_cores": busy_cores(first_ticks, done_ticks) if window_events else None,
    }


def _one_stream(services: dict[str, str], rows: list[bytes], label: str) -> dict[str, Any]:
    expected = len({parse_id(row) for row in rows})
    with scratch_database(services["LEDGER_DATABASE_URL"], label) as url:
        migrated(url).dispose()
        consumed = consume(url, services["LEDGER_KAFKA_BOOTSTRAP"], rows, expected)
        baseline = copy_baseline(url, rows)
    return {
        "events_delivered": len(rows),
        "events_distinct": expected,
        "payload_bytes_mean": round(sum(map(len, rows)) / max(len(rows), 1)),
        "consume": consumed,
        "copy": baseline,
        "ratio": consumed["events_s"] / baseline["events_s"],
    }


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    demo_stream = _one_stream(services, payloads(scale.append_events), "append")
    small = _one_stream(services, small_payloads(scale.append_small_events), "append_small")
    # The demo stream's figures stay at the top level (their names since issue 7).
    return {**demo_stream, "small": small}


def parse_id(raw: bytes) -> str:
    import json

    return str(json.loads(raw)["id"])
