"""Backfill and reconcile from Stripe's API side: close the gaps webhooks leave.

``backfill`` walks ``GET /v1/events`` (newest first, pages of 100) over a window and hands every
event, page by page, to a sink: the event store's idempotent append (source ``backfill``) or, in
the CLI, the Kafka topic. ``reconcile`` lists the same window and reports which event ids the
store lacks. (Its comparison of ``GET /v1/balance_transactions`` fees with the journal's is the
projections' side: projections/fee_report.py.)

Resumability (see docs/BACKFILL.md): a small JSON state file records, per scope (API base, key
mode, account, type filter, sink), the ``created`` intervals whose events are all stored. After
each stored page the interval [oldest created on the page + 1, top of the walk] is added, written
atomically. A new run only walks the gaps of its window, so an interrupted run resumes at the last
stored page, and a periodic run (``--every``) only reads what is new. Appends are idempotent, so
any overlap (a page re-read, the state file lost) costs API calls, never duplicates.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ledger.envelope import EnvelopeError, StripeEvent, event_from_dict
from ledger.logs import get_logger
from ledger.schema import events as events_table
from ledger.store import EventStore, Incoming
from ledger.stripe_api import StripeApi, StripeApiError
from ledger.timespec import TimeSpecError, parse_duration_s, parse_since

EVENTS_RETENTION_S = 30 * 24 * 3600  # Stripe lists events of the last 30 days only
LIST_LAG_S = 60  # an event may be listed a little after its `created`: never mark the last 60s
SERVER_TYPES_MAX = 20  # Stripe's `types[]` takes at most 20 exact names
STATE_VERSION = 1
DEFAULT_STATE_FILE = ".stripe-ledger-backfill.json"
IDS_PER_QUERY_MAX = 500

log = get_logger("ledger.backfill")


class BackfillError(Exception):
    """Bad input or an event Stripe sent that is not a valid event; the message is safe."""


# -- the window and the type filter -----------------------------------------------------------

def parse_types(text: str | None) -> tuple[str, ...]:
    """--types charge.*,invoice.paid -> ('charge.*', 'invoice.paid'); empty means all."""
    if not text:
        return ()
    patterns = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    for pattern in patterns:
        if not re.fullmatch(r"[a-z0-9_.*]+", pattern):
            raise BackfillError(f"--types: not an event type or pattern: {pattern!r}")
    return patterns


def type_matches(event_type: str, patterns: Sequence[str]) -> bool:
    """Stripe's wildcard: '*' matches any characters, dots included ('charge.*' matches
    'charge.dispute.created')."""
    return not patterns or any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def server_filter(patterns: Sequence[str]) -> dict[str, Any]:
    """What Stripe can filter for us. `type` takes ONE name or wildcard group ('charge.*');
    `types[]` takes up to 20 exact names and no wildcards. Anything else (several patterns with
    a wildcard) is listed unfiltered and filtered here; we always filter here as well."""
    if not patterns:
        return {}
    if len(patterns) == 1:
        return {"type": patterns[0]}
    if len(patterns) <= SERVER_TYPES_MAX and not any("*" in p for p in patterns):
        return {"types": list(patterns)}
    return {}


def clamp_since(since: int, now_s: int) -> tuple[int, str | None]:
    """Stripe keeps events 30 days: an older --since lists nothing more; say so and clamp."""
    oldest = now_s - EVENTS_RETENTION_S
    if since < oldest:
        return oldest, (
            "the Events API keeps 30 days of events: --since is moved to "
            f"{dt.datetime.fromtimestamp(oldest, dt.UTC).isoformat()}; older events cannot be "
            "backfilled from Stripe (balance transactions can: reconcile --balance-transactions)"
        )
    return since, None


def normalize(raw: dict[str, Any], account: str | None) -> StripeEvent:
    """A listed event -> StripeEvent. Events listed for a connected account (Stripe-Account) get
    that ``account`` when Stripe left it empty, as a Connect webhook would carry it."""
    if account and raw.get("account") is None:
        raw = {**raw, "account": account}
    try:
        return event_from_dict(raw)
    except EnvelopeError as error:
        raise BackfillError(f"Stripe listed an invalid event {raw.get('id')!r}: {error}") from None


# -- sinks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What a sink did with one page. ``appended``/``known`` are None when it cannot tell
    (Kafka: the consumer decides)."""

    sent: int
    appended: int | None
    known: int | None


Sink = Callable[[Sequence[StripeEvent]], PageOutcome]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def store_sink(store: EventStore, clock: Callable[[], dt.datetime] = utc_now) -> Sink:
    def sink(page: Sequence[StripeEvent]) -> PageOutcome:
        if not page:
            return PageOutcome(0, 0, 0)
        now = clock()
        result = store.append([Incoming(event, "backfill", now) for event in page])
        return PageOutcome(len(page), result.appended, result.duplicates)

    return sink


# -- the state file ---------------------------------------------------------------------------

Interval = tuple[int, int]  # [lo, hi], inclusive, unix seconds


def merge_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] <= i[1]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def gaps(lo: int, hi: int, covered: Sequence[Interval]) -> list[Interval]:
    """The parts of [lo, hi] outside ``covered``, newest first (the order Stripe lists)."""
    out: list[Interval] = []
    cursor = lo
    for c_lo, c_hi in merge_intervals(covered):
        if c_hi < cursor:
            continue
        if c_lo > hi:
            break
        if c_lo > cursor:
            out.append((cursor, c_lo - 1))
        cursor = max(cursor, c_hi + 1)
    if cursor <= hi:
        out.append((cursor, hi))
    return list(reversed(out))


class BackfillState:
    """{"version": 1, "scopes": {scope_key: [[lo, hi], ...]}} in one JSON file, replaced
    atomically (write a temporary file, fsync, rename) after every stored page."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.scopes: dict[str, list[Interval]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") != STATE_VERSION:
                    raise ValueError("unknown version")
                self.scopes = {
                    str(key): merge_intervals([(int(a), int(b)) for a, b in value])
                    for key, value in data["scopes"].items()
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                raise BackfillError(
                    f"state file {path} is unreadable ({error}); delete it or pass --restart"
                ) from None

    def covered(self, key: str) -> list[Interval]:
        return list(self.scopes.get(key, []))

    def forget(self, key: str) -> None:
        self.scopes.pop(key, None)
        self.save()

    def add(self, key: str, lo: int, hi: int) -> None:
        if lo > hi:
            return
        self.scopes[key] = merge_intervals([*self.scopes.get(key, []), (lo, hi)])
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        body = json.dumps(
            {
                "version": STATE_VERSION,
                "scopes": {key: [list(i) for i in value] for key, value in self.scopes.items()},
            },
            indent=1,
            sort_keys=True,
        )
        directory = self.path.parent if str(self.path.parent) else Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".backfill-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def scope_key(api: StripeApi, account: str | None, patterns: Sequence[str], sink_id: str) -> str:
    """Coverage is only valid for the same Stripe account/mode, filter and destination."""
    mode = "live" if api.livemode else "test"
    return f"{api.base} {mode} {account or 'platform'} {','.join(patterns) or '*'} {sink_id}"


# -- backfill ---------------------------------------------------------------------------------


@dataclass
class BackfillTotals:
    scopes: int = 0
    pages: int = 0
    listed: int = 0  # events Stripe listed
    matched: int = 0  # of them, matching --types (sent to the sink)
    appended: int | None = 0
    known: int | None = 0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    def add(self, outcome: PageOutcome) -> None:
        self.matched += outcome.sent
        self.appended = (
            None
            if self.appended is None or outcome.appended is None
            else self.appended + outcome.appended
        )
        self.known = (
            None if self.known is None or outcome.known is None else self.known + outcome.known
        )


def backfill(
    api: StripeApi,
    sink: Sink,
    state: BackfillState,
    *,
    since: int,
    now: dt.datetime,
    accounts: Sequence[str | None],
    patterns: Sequence[str] = (),
    sink_id: str = "store",
    should_stop: Callable[[], bool] = lambda: False,
    on_page: Callable[[BackfillTotals], None] = lambda totals: None,
) -> BackfillTotals:
    """Walk the gaps of [since, now] for every account (None = the platform) into ``sink``.

    Between pages ``should_stop()`` is checked: a stop leaves the state at the last stored page.
    """
    now_s = int(now.timestamp())
    since, warning = clamp_since(since, now_s)
    totals = BackfillTotals()
    if warning:
        totals.warnings.append(warning)
        log.warning("backfill_warning", warning=warning)
    top = now_s - LIST_LAG_S  # the newest second we may mark as complete
    for account in accounts:
        if should_stop():
            totals.interrupted = True
            break
        totals.scopes += 1
        key = scope_key(api, account, patterns, sink_id)
        for lo, hi in gaps(since, now_s, state.covered(key)):
            mark_hi = min(hi, top)
            params = {"created": {"gte": lo, "lte": hi}, **server_filter(patterns)}
            for page in api.pages("/v1/events", params, account):
                listed = [normalize(raw, account) for raw in page]
                wanted = [event for event in listed if type_matches(event.type, patterns)]
                totals.add(sink(wanted))
                totals.pages += 1
                totals.listed += len(listed)
                if listed:
                    # Everything newer than the oldest second of this page is stored (its own
                    # second may continue on the next page).
                    state.add(key, max(lo, min(e.created for e in listed) + 1), mark_hi)
                on_page(totals)
                if should_stop():
                    totals.interrupted = True
                    return totals
            state.add(key, lo, mark_hi)
    return totals


# -- reconcile --------------------------------------------------------------------------------


def known_ids(engine: sa.Engine, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as connection:
        for start in range(0, len(ids), IDS_PER_QUERY_MAX):
            chunk = list(ids[start : start + IDS_PER_QUERY_MAX])
            statement = sa.select(events_table.c.event_id).where(events_table.c.event_id.in_(chunk))
            found.update(connection.execute(statement).scalars())
    return found


@dataclass
class ReconcileReport:
    since: int
    until: int
    listed: int = 0
    stored: int = 0
    missing: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    backfilled: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def missing_count(self) -> int:
        return sum(len(ids) for ids in self.missing.values())


def reconcile_events(
    api: StripeApi,
    engine: sa.Engine,
    *,
    since: int,
    now: dt.datetime,
    accounts: Sequence[str | None],
    patterns: Sequence[str] = (),
    sink: Sink | None = None,
    on_page: Callable[[int], None] = lambda listed: None,
) -> ReconcileReport:
    """List [since, now] from Stripe; every listed id the store lacks is reported by type (and,
    with a ``sink``, appended)."""
    now_s = int(now.timestamp())
    since, warning = clamp_since(since, now_s)
    report = ReconcileReport(since=since, until=now_s)
    if warning:
        report.warnings.append(warning)
    params = {"created": {"gte": since, "lte": now_s}, **server_filter(patterns)}
    reported: set[str] = set()
    for account in accounts:
        for page in api.pages("/v1/events", params, account):
            wanted = [
                event
                for event in (normalize(raw, account) for raw in page)
                if type_matches(event.type, patterns)
            ]
            present = known_ids(engine, [event.event_id for event in wanted])
            absent = [event for event in wanted if event.event_id not in present]
            # The same event can be listed twice (platform and account scope): report it once.
            absent = [event for event in absent if event.event_id not in reported]
            reported.update(event.event_id for event in absent)
            report.listed += len(wanted)
            report.stored += len(wanted) - len(absent)
            for event in absent:
                report.missing[event.type].append(event.event_id)
            if sink is not None and absent:
                outcome = sink(absent)
                report.backfilled += outcome.appended or 0
            on_page(report.listed)
    return report


def iter_accounts(api: StripeApi, account: str | None, all_accounts: bool) -> Iterator[str | None]:
    """The scopes of a run: the platform, one connected account, or the platform and each
    connected account (GET /v1/accounts)."""
    if account:
        yield account
        return
    yield None
    if all_accounts:
        yield from api.connected_accounts()


__all__ = [
    "BackfillError",
    "BackfillState",
    "BackfillTotals",
    "PageOutcome",
    "ReconcileReport",
    "Sink",
    "StripeApiError",
    "TimeSpecError",
    "backfill",
    "iter_accounts",
    "parse_duration_s",
    "parse_since",
    "parse_types",
    "reconcile_events",
    "store_sink",
]
