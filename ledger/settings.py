"""Configuration, read once from the environment.

Every limit lives here with its unit last in its name, so that a reader sees all of them in one
place (TIGER_STYLE). Secrets are read from the environment or from a file and are never logged:
``Settings.__repr__`` hides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///stripe-ledger.db"
DEFAULT_KAFKA_TOPIC = "stripe.events"
DEFAULT_KAFKA_GROUP = "stripe-ledger"

# Hard limits. A Stripe event payload is a few KiB; 1 MiB is far above any real one.
EVENT_BODY_BYTES_MAX = 1024 * 1024
APPEND_BATCH_EVENTS_MAX = 2000
CONSUMER_POLL_RECORDS_MAX = 1000
CONSUMER_POLL_TIMEOUT_MS = 500
RETRY_BACKOFF_MS_MIN = 200
RETRY_BACKOFF_MS_MAX = 30_000


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


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = ""
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    kafka_group: str = DEFAULT_KAFKA_GROUP
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    webhook_tolerance_s: int = 300
    body_bytes_max: int = EVENT_BODY_BYTES_MAX
    # The Stripe partner event sources (aws.partner/stripe.com/ed_...) whose EventBridge events
    # consume-sqs and the Lambda accept; no signature on that path, so nothing else is trusted.
    eventbridge_sources: tuple[str, ...] = ()

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
                "STRIPE_WEBHOOK_TOLERANCE_S", 300, minimum=1, maximum=24 * 3600
            ),
            body_bytes_max=_int_env(
                "LEDGER_BODY_BYTES_MAX",
                EVENT_BODY_BYTES_MAX,
                minimum=1024,
                maximum=16 * 1024 * 1024,
            ),
            eventbridge_sources=_list_env("LEDGER_EVENTBRIDGE_SOURCES"),
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
