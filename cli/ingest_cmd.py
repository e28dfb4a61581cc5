"""``stripe-ledger ingest``: serve the Stripe webhook endpoint and put each event on Kafka."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ledger import logs
from ledger.settings import Settings, SettingsError

DESCRIPTION = """\
Serve POST /webhooks/stripe: verify each Stripe webhook's signature on the raw body, check it is
a Stripe (snapshot) event, and answer 200 only once the Kafka broker acknowledged the raw body
(acks=all, idempotent producer). 400 for bad signatures or bodies, 413 for bodies over the
limit, 503 when the broker cannot take the write within 5 s (Stripe retries).
Also serves GET /healthz, GET /readyz and GET /metrics (Prometheus)."""

EPILOG = """\
environment:
  STRIPE_WEBHOOK_SECRET        the endpoint's signing secret (whsec_...); several, comma-separated,
                               while rolling secrets (any of them may sign)      [required]
  STRIPE_WEBHOOK_SECRET_FILE   or: a file holding the secret(s), one per line or comma-separated
  LEDGER_KAFKA_BOOTSTRAP       Kafka bootstrap servers, host:port[,host:port]    [required]
  LEDGER_KAFKA_TOPIC           topic to write to                      [stripe.events]
  LEDGER_KAFKA_SECURITY_PROTOCOL  PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL  [PLAINTEXT]
  LEDGER_KAFKA_SASL_USERNAME / LEDGER_KAFKA_SASL_PASSWORD[_FILE]  SCRAM credentials (SASL_*)
  STRIPE_WEBHOOK_TOLERANCE_S   signature timestamp tolerance, past and future, in s  [300]
  LEDGER_BODY_BYTES_MAX        largest accepted body in bytes, 1024..1048576  [1048576]
  LEDGER_HTTP_CONNECTIONS_MAX  open connections; past it 503 and close         [1024]
  LEDGER_HTTP_HEADER_TIMEOUT_S the request head must arrive within, else 408  [10]
  LEDGER_HTTP_BODY_TIMEOUT_S   the body must arrive within, else 408          [10]
  LEDGER_HTTP_BODIES_BYTES_MAX memory for bodies in flight (past 64 KiB each)  [67108864]
  LEDGER_TRUSTED_PROXIES       proxies whose X-Forwarded-For is believed      [none]
  LEDGER_LOG_FORMAT            auto | json | console                  [auto]
  LEDGER_LOG_LEVEL             debug | info | warning | error         [info]

See docs/INGEST.md for the responses, the Kafka record format and the metrics."""


def port_number(text: str) -> int:
    """--port of ingest and serve: 1..65535 (0 would listen on a port nobody is told about)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "ingest",
        help="serve the Stripe webhook endpoint and put verified events on Kafka",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=8000,
        help="TCP port to listen on (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The handler (cli/main.py has read the settings and configured logging): uvicorn."""
    try:
        settings.require_webhook_secrets()
        settings.require_kafka()
        from ingest.app import create_app
        from ingest.http_server import make_server
        from ingest.sink import KafkaSink

        sink = KafkaSink(settings)
    except SettingsError as error:
        print(f"stripe-ledger ingest: error: {error}", file=sys.stderr)
        return 2

    server = make_server(
        create_app(settings, sink),
        settings,
        args.host,
        args.port,
        logs.get_logger("ingest"),
        "ingest_listening",
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # handler installed before it; a no-op one makes a graceful stop exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
    return 0 if server.serve_until_stopped() else 1
