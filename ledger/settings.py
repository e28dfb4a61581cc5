"""Configuration, read once from the environment: the one module that reads ``os.environ``.

Where a limit lives (TIGER_STYLE: every limit named ``*_max``/``*_min`` or by its unit, unit last):

- a limit an operator sets through the environment is a ``Settings`` field; its default and its
  bounds are the constants of this module (``LEDGER_HTTP_CONNECTIONS_MAX`` ->
  ``HTTP_CONNECTIONS_MAX``);
- a limit set by a command-line flag (``--batch-messages-max``, ``--events-max`` ...) has its
  default and bound beside the code it bounds, and the flag's help names them;
- a fixed protocol or safety limit (Stripe's page size, SQS's 10 messages per receive, a
  signature header's length, a query's ids) is a module constant beside the code it bounds:
  the reader of that code needs it there, and no operator can change it.

``tests/test_settings_env.py`` checks that nothing else reads the environment. Secrets are read
from the environment or from a file and are never logged: ``Settings.__repr__`` hides them.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///stripe-ledger.db"
DEFAULT_KAFKA_TOPIC = "stripe.events"
DEFAULT_KAFKA_GROUP = "stripe-ledger"
WEBHOOK_SECRET_ARN_ENV = "STRIPE_WEBHOOK_SECRET_ARN"

# A Stripe event payload is a few KiB; 1 MiB is far above any real one. The bound of
# LEDGER_BODY_BYTES_MAX, and of every door's parser (ledger/envelope.py).
EVENT_BODY_BYTES_MAX = 1024 * 1024
BODY_BYTES_MAX_MIN = 1024  # the smallest LEDGER_BODY_BYTES_MAX: a real event is larger
# How old a Stripe-Signature timestamp may be (STRIPE_WEBHOOK_TOLERANCE_S; Stripe's default).
WEBHOOK_TOLERANCE_S = 300
WEBHOOK_TOLERANCE_S_MAX = 24 * 3600
# Fixed limits of ledger/consumer.py, to move beside it (issue 14: its owner moves them).
CONSUMER_POLL_RECORDS_MAX = 1000
CONSUMER_POLL_TIMEOUT_MS = 500
# The HTTP endpoints (ingest, serve): see ingest/http_server.py for what each bounds.
HTTP_CONNECTIONS_MAX = 1024
HTTP_CONNECTIONS_MAX_MAX = 65_536  # the most LEDGER_HTTP_CONNECTIONS_MAX may be set to
HTTP_HEADER_TIMEOUT_S = 10
HTTP_BODY_TIMEOUT_S = 10
HTTP_TIMEOUT_S_MAX = 300  # the longest LEDGER_HTTP_HEADER_TIMEOUT_S / _BODY_TIMEOUT_S
# Body bytes held in memory by all requests together past their first BODY_FREE_BYTES each; a
# real Stripe event (a few KiB) never counts against it, so a flood of slow 1 MiB bodies cannot
# crowd out real deliveries. Worst case: connections x 64 KiB + this.
HTTP_BODIES_BYTES_MAX = 64 * 1024 * 1024
HTTP_BODIES_BYTES_MAX_MAX = 1024 * 1024 * 1024


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which and how to fix it."""


def _secret_values(env_name: str) -> tuple[str, ...]:
    """Comma-separated secrets from ``NAME`` or from the file named by ``NAME_FILE``."""
    raw = os.environ.get(env_name, "")
    file_name = os.environ.get(f"{env_name}_FILE", "")
    if raw and file_name:
        raise SettingsError(f"set {env_name} or {env_name}_FILE, not both")
    if file_name:
        try:
            raw = Path(file_name).read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(
                f"{env_name}_FILE: cannot read {file_name}: {error.strerror}"
            ) from None
    return split_secrets(raw)


def split_secrets(raw: str) -> tuple[str, ...]:
    """Secrets separated by commas or newlines (a file, a Secrets Manager SecretString)."""
    return tuple(part.strip() for part in raw.replace("\n", ",").split(",") if part.strip())


def _int_env(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _list_env(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


def kafka_security() -> dict[str, Any]:
    """kafka-python's security options, the same for every producer and consumer (issue 19):

    LEDGER_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    LEDGER_KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default) or SCRAM-SHA-256
    LEDGER_KAFKA_SASL_USERNAME       the SCRAM user
    LEDGER_KAFKA_SASL_PASSWORD[_FILE] its password (never logged)
    LEDGER_KAFKA_SSL_CAFILE          CA bundle of the brokers' certificates (SSL, SASL_SSL)
    LEDGER_KAFKA_SSL_CERTFILE/_KEYFILE  the client certificate and key: mutual TLS
    """
    protocol = os.environ.get("LEDGER_KAFKA_SECURITY_PROTOCOL", "").upper() or "PLAINTEXT"
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise SettingsError(
            "LEDGER_KAFKA_SECURITY_PROTOCOL must be one of "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, got {protocol!r}"
        )
    options: dict[str, Any] = {"security_protocol": protocol}
    for name, option in (
        ("LEDGER_KAFKA_SSL_CAFILE", "ssl_cafile"),
        ("LEDGER_KAFKA_SSL_CERTFILE", "ssl_certfile"),
        ("LEDGER_KAFKA_SSL_KEYFILE", "ssl_keyfile"),
    ):
        if os.environ.get(name):
            options[option] = os.environ[name]
    if protocol.startswith("SASL_"):
        mechanism = os.environ.get("LEDGER_KAFKA_SASL_MECHANISM", "").upper() or "SCRAM-SHA-512"
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise SettingsError(
                f"LEDGER_KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                f"got {mechanism!r}"
            )
        username = os.environ.get("LEDGER_KAFKA_SASL_USERNAME", "")
        passwords = _secret_values("LEDGER_KAFKA_SASL_PASSWORD")
        if not username or len(passwords) != 1:
            raise SettingsError(
                f"{protocol} needs LEDGER_KAFKA_SASL_USERNAME and one "
                "LEDGER_KAFKA_SASL_PASSWORD (or LEDGER_KAFKA_SASL_PASSWORD_FILE)"
            )
        options.update(
            sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=passwords[0]
        )
    return options


def _trusted_proxies() -> tuple[str, ...]:
    """LEDGER_TRUSTED_PROXIES: addresses or networks whose X-Forwarded-For/-Proto are believed."""
    proxies = _list_env("LEDGER_TRUSTED_PROXIES")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                f"LEDGER_TRUSTED_PROXIES: {proxy!r} is not an IP address or network"
            ) from None
    return proxies


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = ""
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    kafka_group: str = DEFAULT_KAFKA_GROUP
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    webhook_tolerance_s: int = WEBHOOK_TOLERANCE_S
    body_bytes_max: int = EVENT_BODY_BYTES_MAX
    http_connections_max: int = HTTP_CONNECTIONS_MAX
    http_header_timeout_s: int = HTTP_HEADER_TIMEOUT_S
    http_body_timeout_s: int = HTTP_BODY_TIMEOUT_S
    http_bodies_bytes_max: int = HTTP_BODIES_BYTES_MAX
    trusted_proxies: tuple[str, ...] = ()
    # The Stripe partner event sources (aws.partner/stripe.com/ed_...) whose EventBridge events
    # consume-sqs and the Lambda accept; no signature on that path, so nothing else is trusted.
    eventbridge_sources: tuple[str, ...] = ()
    # Another Stripe API than api.stripe.com (stripe-mock, the demo's stand-in): backfill,
    # reconcile, balance-sync and thin-events fetch.
    stripe_api_base: str | None = None
    # The dashboard's token, needed off loopback (reports/dashboard/app.py checks it).
    dashboard_token: str | None = field(default=None, repr=False)
    # The Lambda reads the webhook secret(s) from this Secrets Manager secret (never both).
    webhook_secret_arn: str = ""
    # consume-sqs's region, as boto3 reads it; None: the queue URL's.
    aws_region: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        log_format = os.environ.get("LEDGER_LOG_FORMAT", "auto")
        if log_format not in ("auto", "json", "console"):
            raise SettingsError(
                f"LEDGER_LOG_FORMAT must be auto, json or console, got {log_format!r}"
            )
        return cls(
            database_url=os.environ.get("LEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            kafka_bootstrap=os.environ.get("LEDGER_KAFKA_BOOTSTRAP", ""),
            kafka_topic=os.environ.get("LEDGER_KAFKA_TOPIC") or DEFAULT_KAFKA_TOPIC,
            kafka_group=os.environ.get("LEDGER_KAFKA_GROUP") or DEFAULT_KAFKA_GROUP,
            log_format=log_format,
            log_level=os.environ.get("LEDGER_LOG_LEVEL", "info").lower(),
            webhook_secrets=_secret_values("STRIPE_WEBHOOK_SECRET"),
            webhook_tolerance_s=_int_env(
                "STRIPE_WEBHOOK_TOLERANCE_S",
                WEBHOOK_TOLERANCE_S,
                minimum=1,
                maximum=WEBHOOK_TOLERANCE_S_MAX,
            ),
            # Not above the envelope's own bound: a larger body would pass this check and then
            # be refused as invalid JSON (issue 20).
            body_bytes_max=_int_env(
                "LEDGER_BODY_BYTES_MAX",
                EVENT_BODY_BYTES_MAX,
                minimum=BODY_BYTES_MAX_MIN,
                maximum=EVENT_BODY_BYTES_MAX,
            ),
            http_connections_max=_int_env(
                "LEDGER_HTTP_CONNECTIONS_MAX",
                HTTP_CONNECTIONS_MAX,
                minimum=1,
                maximum=HTTP_CONNECTIONS_MAX_MAX,
            ),
            http_header_timeout_s=_int_env(
                "LEDGER_HTTP_HEADER_TIMEOUT_S",
                HTTP_HEADER_TIMEOUT_S,
                minimum=1,
                maximum=HTTP_TIMEOUT_S_MAX,
            ),
            http_body_timeout_s=_int_env(
                "LEDGER_HTTP_BODY_TIMEOUT_S",
                HTTP_BODY_TIMEOUT_S,
                minimum=1,
                maximum=HTTP_TIMEOUT_S_MAX,
            ),
            http_bodies_bytes_max=_int_env(
                "LEDGER_HTTP_BODIES_BYTES_MAX",
                HTTP_BODIES_BYTES_MAX,
                minimum=EVENT_BODY_BYTES_MAX,
                maximum=HTTP_BODIES_BYTES_MAX_MAX,
            ),
            trusted_proxies=_trusted_proxies(),
            eventbridge_sources=_list_env("LEDGER_EVENTBRIDGE_SOURCES"),
            stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
            dashboard_token=os.environ.get("LEDGER_DASHBOARD_TOKEN") or None,
            webhook_secret_arn=os.environ.get(WEBHOOK_SECRET_ARN_ENV, ""),
            aws_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        )

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise SettingsError(
                "LEDGER_KAFKA_BOOTSTRAP is not set: point it at a Kafka broker (host:port), "
                'e.g. eval "$(scripts/services.sh up)"'
            )
        return self.kafka_bootstrap

    def require_webhook_secrets(self) -> tuple[str, ...]:
        if not self.webhook_secrets:
            raise SettingsError(
                "STRIPE_WEBHOOK_SECRET (or STRIPE_WEBHOOK_SECRET_FILE) is not set: use the "
                "endpoint's signing secret (whsec_...), several comma-separated while rolling"
            )
        for secret in self.webhook_secrets:
            if not secret.startswith("whsec_"):
                raise SettingsError("STRIPE_WEBHOOK_SECRET: every secret must start with whsec_")
        return self.webhook_secrets

    def require_eventbridge_sources(self) -> tuple[str, ...]:
        from ledger.eventbridge import check_partner_sources

        if not self.eventbridge_sources:
            raise SettingsError(
                "LEDGER_EVENTBRIDGE_SOURCES is not set: name the Stripe partner event source(s) "
                "to accept, aws.partner/stripe.com/ed_..., comma-separated (or use --source)"
            )
        try:
            return check_partner_sources(self.eventbridge_sources, "LEDGER_EVENTBRIDGE_SOURCES")
        except ValueError as error:
            raise SettingsError(str(error)) from None
