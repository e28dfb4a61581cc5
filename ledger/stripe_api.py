"""A small reader of Stripe's list endpoints: raw JSON pages, bounded retries, one client.

Only backfill/reconcile, balance-sync and thin-events fetch talk to the Stripe API; ingest and
the workers never do, so the API key (``STRIPE_API_KEY`` or ``STRIPE_API_KEY_FILE``) is read
here and nowhere else, and is never logged or printed (error texts go through ``redact_text``).

Retries are ours, not the library's (``max_network_retries=0``): 429, 5xx and connection errors
are retried up to ``API_ATTEMPTS_MAX`` attempts in all, waiting what ``Retry-After`` asks (capped
at ``RETRY_AFTER_S_MAX``) or else a capped, jittered exponential backoff.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import stripe

from ledger.logs import get_logger, redact_text
from ledger.retry import backoff_ms
from ledger.settings import SettingsError, _secret_values

API_ATTEMPTS_MAX = 8  # attempts per request (1 + 7 retries) before the run fails
RETRY_AFTER_S_MAX = 60.0  # a longer Retry-After is waited for this long, then retried
PAGE_OBJECTS_MAX = 100  # Stripe's largest page
REQUEST_TIMEOUT_S = 80  # the stripe library's own default, stated
REASON_CHARS_MAX = 300  # of Stripe's error message, in ours

log = get_logger("ledger.stripe_api")

# wait(seconds) -> True when the run was asked to stop during the wait.
Wait = Callable[[float], bool]


class StripeApiError(Exception):
    """A Stripe request failed for good; the message is safe to show (no key).

    ``status``: the HTTP status of the last answer, None when there was none (no connection)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(Exception):
    """The run was asked to stop (SIGTERM) while waiting to retry."""


def api_key_from_env() -> str:
    keys = _secret_values("STRIPE_API_KEY")
    if not keys:
        raise SettingsError(
            "STRIPE_API_KEY (or STRIPE_API_KEY_FILE) is not set: a secret (sk_...) or restricted "
            "(rk_...) key with read access to Events, Balance transactions and Accounts"
        )
    if len(keys) > 1:
        raise SettingsError("STRIPE_API_KEY: give exactly one key")
    key = keys[0]
    if not key.startswith(("sk_", "rk_")):
        raise SettingsError("STRIPE_API_KEY must be a secret (sk_...) or restricted (rk_...) key")
    return key


def key_mode(api_key: str) -> str:
    """'live' or 'test' from the key's non-secret prefix (sk_live_..., rk_test_...)."""
    return "live" if api_key.startswith(("sk_live_", "rk_live_")) else "test"


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    try:
        items = headers.items()
    except AttributeError:
        return None
    for key, value in items:
        if str(key).lower() == name.lower():
            return str(value)
    return None


def retry_after_s(headers: Any, now: dt.datetime | None = None) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or HTTP-date), None if absent/bad."""
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def _retryable(error: stripe.StripeError) -> bool:
    if isinstance(error, (stripe.RateLimitError, stripe.APIConnectionError)):
        return True
    status = error.http_status
    return isinstance(error, stripe.APIError) and (status is None or status >= 500)


class StripeApi:
    """GET requests against Stripe (or STRIPE_API_BASE, e.g. stripe-mock) as raw JSON dicts."""

    def __init__(
        self,
        api_key: str,
        *,
        base: str | None = None,
        wait: Wait,
        attempts_max: int = API_ATTEMPTS_MAX,
    ) -> None:
        assert attempts_max >= 1
        options: dict[str, Any] = {}
        if base:
            options["base_addresses"] = {"api": base.rstrip("/")}
        self._client = stripe.StripeClient(api_key, max_network_retries=0, **options)
        self.livemode = key_mode(api_key) == "live"
        self.base = (base or "https://api.stripe.com").rstrip("/")
        self._wait = wait
        self._attempts_max = attempts_max
        self.requests = 0  # every HTTP request made, retries included
        self.api_version: str | None = None  # Stripe-Version of the last answer, if it had one

    def get(
        self,
        path: str,
        params: Mapping[str, Any],
        account: str | None,
        *,
        context: str | None = None,
    ) -> dict[str, Any]:
        """One GET with retries; the decoded JSON object, or StripeApiError/Interrupted.

        ``account``: the Stripe-Account header (v1); ``context``: the Stripe-Context header,
        which /v2 endpoints and a thin event's related object take instead."""
        assert not (account and context), "Stripe-Account or Stripe-Context, not both"
        request = dict(params)
        if account:
            request["stripe_account"] = account
        if context:
            request["stripe_context"] = context
        who = account or context
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                response = self._client.raw_request("get", path, **request)
            except stripe.StripeError as error:
                status = error.http_status
                reason = redact_text(str(error.user_message or error) or type(error).__name__)
                # One line: the library's texts hold newlines.
                reason = " ".join(reason.split())[:REASON_CHARS_MAX]
                if not _retryable(error) or attempt >= self._attempts_max:
                    raise StripeApiError(
                        f"GET {path}{' for ' + who if who else ''} failed"
                        f"{' after ' + str(attempt) + ' attempts' if attempt > 1 else ''}: "
                        f"{'HTTP ' + str(status) + ': ' if status else ''}{reason}",
                        status,
                    ) from None
                asked = retry_after_s(error.headers)
                delay_s = (
                    min(asked, RETRY_AFTER_S_MAX)
                    if asked is not None
                    else backoff_ms(attempt) / 1000
                )
                log.warning(
                    "stripe_request_retry",
                    path=path,
                    account=who,
                    status=status,
                    attempt=attempt,
                    retry_after_s=asked,
                    retry_in_s=round(delay_s, 3),
                )
                if self._wait(delay_s):
                    raise Interrupted() from None
                continue
            self.api_version = _header(response.headers, "Stripe-Version") or self.api_version
            data = response.data
            if not isinstance(data, dict):
                raise StripeApiError(f"GET {path}: the response is not a JSON object")
            return data

    def pages(
        self, path: str, params: Mapping[str, Any], account: str | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list endpoint, following ``starting_after`` until has_more is false."""
        starting_after: str | None = None
        while True:
            request: dict[str, Any] = {**params, "limit": PAGE_OBJECTS_MAX}
            if starting_after:
                request["starting_after"] = starting_after
            page = self.get(path, request, account)
            data = page.get("data")
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise StripeApiError(f"GET {path}: the response has no list 'data'")
            yield data
            if not page.get("has_more") or not data:
                return
            last_id = data[-1].get("id")
            if not isinstance(last_id, str) or last_id == starting_after:
                raise StripeApiError(f"GET {path}: cannot page on (no new 'id' to start after)")
            starting_after = last_id

    def connected_accounts(self) -> list[str]:
        """Ids of the platform's connected accounts (GET /v1/accounts), in Stripe's order."""
        ids: list[str] = []
        for page in self.pages("/v1/accounts", {}, None):
            ids.extend(str(item["id"]) for item in page if isinstance(item.get("id"), str))
        return ids
