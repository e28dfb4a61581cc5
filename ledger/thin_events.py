"""Thin (v2) events: what the store holds of them, and the worker that fetches their objects.

A thin event (``object: "v2.core.event"``) is a reference, not a snapshot: its type, its
``related_object`` {id, type, url} and its ``context`` (the Connect account). Every door stores it
as what it is (``ledger.envelope`` parses it into the same events table); the projections know
none of its types and skip it. With an API key configured, ``fetch`` reads, per stored thin
event, ``GET /v2/core/events/{id}`` (the full event, with its ``data``) and then the related
object at its ``url``, both with the event's context as ``Stripe-Context``, and appends what it
read as a fact of type ``ledger.thin_event_object`` (``object: "event"``, source ``backfill``,
like balance-sync's facts): ``data.object`` is the related object as Stripe returned it,
``ledger`` holds the thin event's id and type, the full v2 event and the fetch error if any.

The fact's id is ``thinobj_<thin id>_<sha256 of what was fetched, 16 hex>``: fetching identical
content again stores nothing, a changed object is a new fact beside the old one. A thin event is
pending while no fact names it; an answer that says the event or object is gone (400/404/410) is
stored as a fact with ``fetch_error`` so it is not asked for again; anything else (401/403, a
failure after the retries) stops the run, and the next run asks again.

Bounded: at most ``events_max`` thin events per run, at most ``requests_per_s`` requests a
second (besides the retries' own waits: ``StripeApi`` honours Retry-After on a 429).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ledger.envelope import THIN_OBJECT, EnvelopeError, StripeEvent, event_from_dict
from ledger.logs import get_logger
from ledger.schema import events
from ledger.settings import EVENT_BODY_BYTES_MAX
from ledger.store import EventStore, Incoming, StoredEvent, stored_event, utc_now
from ledger.stripe_api import StripeApi, StripeApiError

THIN_OBJECT_FACT = "ledger.thin_event_object"
FACT_ID_PREFIX = "thinobj_"
HASH_HEX_CHARS = 16
EVENTS_PER_RUN_DEFAULT = 100
EVENTS_PER_RUN_MAX = 10_000
REQUESTS_PER_S_DEFAULT = 10.0  # Stripe allows 25 read requests/s in test mode, 100 in live
REQUESTS_PER_S_MAX = 100.0
GONE_STATUSES = (400, 404, 410)  # the event or object is not there (any more): say so, move on
RELATED_URL_CHARS_MAX = 512
# A related object's url is a path on the API host, /v1/... or /v2/...: nothing else is fetched
# (a url in a payload must not send the API key anywhere else).
_RELATED_URL = re.compile(r"/v[12]/[A-Za-z0-9_./-]+")
_EVENT_ID = re.compile(r"[A-Za-z0-9_]+")

log = get_logger("ledger.thin_events")


@dataclass(frozen=True, slots=True)
class ThinCounts:
    """What the store holds of thin events (``thin-events status``)."""

    stored: int  # thin events in the store
    fetched: int  # of those, the ones with a ledger.thin_event_object fact
    gone: int  # of those, the ones whose fact records a fetch error (gone at Stripe)
    pending: int  # stored - fetched


@dataclass(slots=True)
class FetchTotals:
    """One run of the fetch worker."""

    considered: int = 0  # pending thin events taken this run
    appended: int = 0  # facts stored
    known: int = 0  # facts already stored (identical content)
    gone: int = 0  # facts recording that the event or object is gone
    requests: int = 0  # HTTP requests, retries included

    def summary(self) -> str:
        return (
            f"thin-events fetch: {self.considered} thin event(s), {self.appended} fact(s) "
            f"appended, {self.known} already stored, {self.gone} gone at Stripe, "
            f"{self.requests} request(s)"
        )


# -- the fact ---------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_HEX_CHARS]


def _reference(thin: StoredEvent) -> dict[str, Any]:
    """The related object as the thin event names it: what data.object holds when the object
    itself could not be read."""
    reference: dict[str, Any] = {}
    if thin.object_id is not None:
        reference["id"] = thin.object_id
    if thin.object_type is not None:
        reference["object"] = thin.object_type
    return reference


def thin_object_fact(
    thin: StoredEvent,
    full_event: dict[str, Any] | None,
    obj: dict[str, Any] | None,
    *,
    fetch_error: str | None,
    fetched_s: int,
) -> StripeEvent:
    """What was fetched for ``thin`` -> its ``ledger.thin_event_object`` fact (parsed by the one
    envelope parser). The id hashes the content, not the time: a refetch of the same is a no-op."""
    assert thin.payload.get("object") == THIN_OBJECT, thin.event_id
    ledger = {
        "thin_event_id": thin.event_id,
        "thin_event_type": thin.type,
        "event": full_event,
        "fetch_error": fetch_error,
    }
    fact_id = f"{FACT_ID_PREFIX}{thin.event_id}_{_digest({'ledger': ledger, 'object': obj})}"
    payload = {
        "id": fact_id,
        "object": "event",
        "type": THIN_OBJECT_FACT,
        "api_version": None,
        "created": fetched_s,
        "livemode": thin.livemode,
        "account": thin.account,
        "data": {"object": obj if obj is not None else _reference(thin)},
        "ledger": ledger,
    }
    return event_from_dict(payload)


# -- reading the store ------------------------------------------------------------------------


def _is_thin() -> sa.ColumnElement[bool]:
    return events.c.payload["object"].as_string() == THIN_OBJECT


def _facts_naming(thin_id: sa.ColumnElement[Any]) -> sa.Exists:
    fact = events.alias("fact")
    return (
        sa.select(fact.c.position)
        .where(fact.c.type == THIN_OBJECT_FACT)
        .where(fact.c.payload[("ledger", "thin_event_id")].as_string() == thin_id)
        .exists()
    )


def pending(engine: sa.Engine, *, livemode: bool, events_max: int) -> list[StoredEvent]:
    """Thin events of this mode with no fact yet, oldest position first, at most ``events_max``."""
    assert 0 < events_max <= EVENTS_PER_RUN_MAX, events_max
    statement = (
        sa.select(events)
        .where(_is_thin())
        .where(events.c.livemode == livemode)
        .where(~_facts_naming(events.c.event_id))
        .order_by(events.c.position)
        .limit(events_max)
    )
    with engine.connect() as connection:
        return [stored_event(row) for row in connection.execute(statement)]


def counts(engine: sa.Engine) -> ThinCounts:
    """How many thin events are stored, fetched, gone and pending (both modes)."""
    fact = events.alias("fact")
    thin_id = fact.c.payload[("ledger", "thin_event_id")].as_string()
    error = fact.c.payload[("ledger", "fetch_error")].as_string()
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(sa.func.count()).select_from(events).where(_is_thin())
        ).scalar_one()
        fetched = connection.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(_is_thin())
            .where(_facts_naming(events.c.event_id))
        ).scalar_one()
        gone = connection.execute(
            sa.select(sa.func.count(sa.distinct(thin_id)))
            .where(fact.c.type == THIN_OBJECT_FACT)
            .where(error.is_not(None))
        ).scalar_one()
    assert 0 <= fetched <= stored, (fetched, stored)
    return ThinCounts(stored=stored, fetched=fetched, gone=gone, pending=stored - fetched)


# -- fetching ---------------------------------------------------------------------------------


class RateLimit:
    """At most ``requests_per_s`` calls of ``acquire`` a second, spaced evenly."""

    def __init__(
        self,
        requests_per_s: float,
        wait: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert 0 < requests_per_s <= REQUESTS_PER_S_MAX, requests_per_s
        self.interval_s = 1.0 / requests_per_s
        self._wait = wait
        self._clock = clock
        self._next_s = clock()

    def acquire(self) -> bool:
        """Wait for the next slot; True when the run was asked to stop meanwhile."""
        delay_s = self._next_s - self._clock()
        if delay_s > 0 and self._wait(delay_s):
            return True
        self._next_s = max(self._next_s, self._clock()) + self.interval_s
        return False


class _Gone(Exception):
    """Stripe says the event or the object is not there; the message says which."""


class _Stopped(Exception):
    """The run was asked to stop while waiting for a request slot."""


def _get(api: StripeApi, limit: RateLimit, path: str, context: str | None) -> dict[str, Any]:
    if limit.acquire():
        raise _Stopped()
    try:
        return api.get(path, {}, None, context=context)
    except StripeApiError as error:
        if error.status in GONE_STATUSES:
            raise _Gone(str(error)) from None
        raise


def _fetch_one(api: StripeApi, limit: RateLimit, thin: StoredEvent) -> StripeEvent:
    """What Stripe answered for ``thin`` as a fact; when the answer itself cannot be stored (too
    large, a NUL character), a fact saying so instead, so the run goes on."""
    fetched_s = int(utc_now().timestamp())
    try:
        fact = _fetched_fact(api, limit, thin, fetched_s)
        if len(json.dumps(fact.payload, ensure_ascii=False).encode()) <= EVENT_BODY_BYTES_MAX:
            return fact
        error = f"Stripe's answer is larger than {EVENT_BODY_BYTES_MAX} bytes"
    except EnvelopeError as refused:
        error = f"Stripe's answer cannot be stored: {refused}"
    return thin_object_fact(thin, None, None, fetch_error=error, fetched_s=fetched_s)


def _fetched_fact(
    api: StripeApi, limit: RateLimit, thin: StoredEvent, fetched_s: int
) -> StripeEvent:
    """GET the full v2 event, then its related object -> the fact to store."""
    if not _EVENT_ID.fullmatch(thin.event_id):
        error = "the event id cannot be fetched (not letters, digits and _)"
        return thin_object_fact(thin, None, None, fetch_error=error, fetched_s=fetched_s)
    try:
        full = _get(api, limit, f"/v2/core/events/{thin.event_id}", thin.account)
    except _Gone as gone:
        return thin_object_fact(thin, None, None, fetch_error=str(gone), fetched_s=fetched_s)
    related = full.get("related_object", thin.payload.get("related_object"))
    url = related.get("url") if isinstance(related, dict) else None
    if url is None:  # an event about no object: the full event is all there is
        return thin_object_fact(thin, full, None, fetch_error=None, fetched_s=fetched_s)
    if not isinstance(url, str) or len(url) > RELATED_URL_CHARS_MAX or ".." in url:
        url = ""
    if not _RELATED_URL.fullmatch(url):
        error = "related_object.url is not a /v1/ or /v2/ path of the API"
        return thin_object_fact(thin, full, None, fetch_error=error, fetched_s=fetched_s)
    try:
        obj = _get(api, limit, url, thin.account)
    except _Gone as gone:
        return thin_object_fact(thin, full, None, fetch_error=str(gone), fetched_s=fetched_s)
    return thin_object_fact(thin, full, obj, fetch_error=None, fetched_s=fetched_s)


def fetch(
    store: EventStore,
    api: StripeApi,
    limit: RateLimit,
    *,
    events_max: int = EVENTS_PER_RUN_DEFAULT,
    should_stop: Callable[[], bool] = lambda: False,
) -> FetchTotals:
    """One run: fetch up to ``events_max`` pending thin events of the key's mode, appending each
    fact as soon as it is read (a killed run loses at most the fetch in flight).

    StripeApiError (a failure that is not "gone") and Interrupted propagate: what was appended
    stays, the rest is pending for the next run."""
    assert 0 < events_max <= EVENTS_PER_RUN_MAX, events_max
    totals = FetchTotals()
    requests_before = api.requests
    try:
        for thin in pending(store.engine, livemode=api.livemode, events_max=events_max):
            if should_stop():
                break
            try:
                fact = _fetch_one(api, limit, thin)
            except _Stopped:
                break
            result = store.append([Incoming(fact, "backfill", utc_now())])
            totals.considered += 1
            totals.appended += result.appended
            totals.known += result.duplicates
            totals.gone += fact.payload["ledger"]["fetch_error"] is not None
    finally:
        totals.requests = api.requests - requests_before
        log.info(
            "thin_events_fetched",
            considered=totals.considered,
            appended=totals.appended,
            known=totals.known,
            gone=totals.gone,
            requests=totals.requests,
        )
    return totals
