"""Prometheus metrics of the workers (``consume``, ``project``), read from the database itself
at each scrape: what a Prometheus user needs to see the whole pipeline, not only ingest.

Every metric is ``stripe_ledger_*``. A collector runs its queries when scraped (at most one
scrape at a time; each query is an index lookup or a small table), so the workers' code paths
carry no metrics code. ``serve_metrics`` starts the HTTP endpoint on a daemon thread.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.schema import dead_letters, events, kafka_offsets

NAMESPACE = "stripe_ledger"
METRICS_PORT_MIN = 1
METRICS_PORT_MAX = 65535


class StoreCollector(Collector):
    """The store: head position, events stored, dead letters, and per Kafka partition the next
    offset stored with the events (and the lag to the partition's end, with ``end_offsets``)."""

    def __init__(
        self,
        engine: sa.Engine,
        end_offsets: Callable[[], dict[tuple[str, int], int]] | None = None,
    ) -> None:
        self.engine = engine
        self.end_offsets = end_offsets
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock, self.engine.connect() as connection:
            head = connection.execute(sa.select(sa.func.max(events.c.position))).scalar()
            letters = connection.execute(
                sa.select(sa.func.count()).select_from(dead_letters)
            ).scalar()
            offsets = {
                (row.topic, row.partition): int(row.next_offset)
                for row in connection.execute(sa.select(kafka_offsets))
            }
        yield GaugeMetricFamily(
            f"{NAMESPACE}_store_head_position",
            "Position of the newest stored event.",
            int(head or 0),
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_dead_letters", "Records kept as dead letters (not Stripe events).",
            int(letters or 0),
        )  # fmt: skip
        stored = GaugeMetricFamily(
            f"{NAMESPACE}_consumer_next_offset",
            "Next Kafka offset to read per partition, as stored with the events.",
            labels=["topic", "partition"],
        )
        for (topic, partition), offset in sorted(offsets.items()):
            stored.add_metric([topic, str(partition)], offset)
        yield stored
        if self.end_offsets is not None:
            lag = GaugeMetricFamily(
                f"{NAMESPACE}_consumer_lag_records",
                "Records on the partition not stored yet (end offset - next stored offset).",
                labels=["topic", "partition"],
            )
            for (topic, partition), end in sorted(self.end_offsets().items()):
                lag.add_metric(
                    [topic, str(partition)], max(end - offsets.get((topic, partition), 0), 0)
                )
            yield lag


# A scrape waits at most this for the broker (kafka-python wants more than its 10 s session).
KAFKA_METRICS_REQUEST_TIMEOUT_MS = 15_000


def kafka_end_offsets(bootstrap: str, topic: str) -> Callable[[], dict[tuple[str, int], int]]:
    """A function giving the end offset of each partition of ``topic`` (its own client, no
    group: the consumer's group is untouched). A broker away gives {} (no lag shown)."""
    client: list[Any] = []

    def end_offsets() -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            if not client:
                client.append(
                    KafkaConsumer(
                        bootstrap_servers=bootstrap.split(","),
                        client_id="stripe-ledger-metrics",
                        request_timeout_ms=KAFKA_METRICS_REQUEST_TIMEOUT_MS,
                    )
                )
            if topic not in client[0].topics():  # fetches the cluster's metadata first
                return {}
            partitions = client[0].partitions_for_topic(topic) or set()
            ends = client[0].end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        except KafkaError:
            return {}
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}

    return end_offsets


def oldest_unprojected_age_s(connection: sa.Connection, position: int) -> float:
    """Seconds since the oldest event after ``position`` was received (0 when none is)."""
    received = connection.execute(
        sa.select(events.c.received_at)
        .where(events.c.position > position)
        .order_by(events.c.position)
        .limit(1)
    ).scalar()
    if received is None:
        return 0.0
    if received.tzinfo is None:
        received = received.replace(tzinfo=dt.UTC)
    return max((dt.datetime.now(dt.UTC) - received).total_seconds(), 0.0)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Any:
    """Start ``GET /metrics`` for ``registry`` on ``host:port`` (a daemon thread)."""
    assert METRICS_PORT_MIN <= port <= METRICS_PORT_MAX, port
    return start_http_server(port, addr=host, registry=registry)
