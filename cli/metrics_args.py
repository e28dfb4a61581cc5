"""``--metrics-port`` / ``--metrics-host`` of the workers, checked at start (#20)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from cli.errors import CommandError
from ledger.logs import get_logger
from ledger.metrics import METRICS_PORT_MAX, METRICS_PORT_MIN, serve_metrics

log = get_logger("cli.metrics")


def add_metrics_arguments(parser: Any) -> None:
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT", default=None,
        help="serve Prometheus metrics (stripe_ledger_*) on GET /metrics at this port",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST",
        help="address of the metrics endpoint (127.0.0.1; 0.0.0.0 in a container)",
    )  # fmt: skip


def start_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """The endpoint, or a one-line error (a port out of range, taken, or not ours to bind)."""
    if not METRICS_PORT_MIN <= port <= METRICS_PORT_MAX:
        raise CommandError(
            f"--metrics-port must be between {METRICS_PORT_MIN} and {METRICS_PORT_MAX}, got {port}"
        )
    try:
        serve_metrics(registry, host, port)
    except OSError as error:
        raise CommandError(
            f"--metrics-port {port}: cannot listen on {host}: {error.strerror}"
        ) from None
    log.info("metrics_listening", host=host, port=port)
