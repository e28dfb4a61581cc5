"""The event envelope: what makes a byte string a Stripe event, and the fields the store indexes.

One parser for every door (webhook, Lambda, Kafka record, import lines and arrays, backfill,
EventBridge and SQS) so that all of them accept and refuse exactly the same inputs. It never raises
anything but ``EnvelopeError``. It is total over what the store and the projections can hold: no
NaN or Infinity (``1e999`` overflows to Infinity), no integer outside int64 (SQLite INTEGER,
PostgreSQL BIGINT; a signed amount of 2^64 used to stop the projector for good), no integer of
thousands of digits (Python refuses to convert more than 4,300 with a ValueError).

Two shapes are Stripe events: the v1 snapshot event (``object: "event"``, ``created`` in unix
seconds, the object itself in ``data.object``) and the v2 thin event (``object: "v2.core.event"``,
``created`` an ISO-8601 string, only a reference in ``related_object``, the Connect account in
``context``). A thin event is stored as what it is, indexed from its reference; the projections
know none of its types, so they skip it, and ``ledger.thin_events`` fetches its snapshot
counterpart when an API key is configured (docs/INGEST.md, "Thin events").
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ledger.settings import EVENT_BODY_BYTES_MAX

EVENT_ID_CHARS_MAX = 255
EVENT_TYPE_CHARS_MAX = 255
JSON_NESTING_DEPTH_MAX = 64  # Stripe objects nest a handful of levels; 64 is generous.
SOURCES = ("webhook", "import", "backfill")
# What the store's columns can hold: a JSON value that fits one parses, but fails the INSERT, and
# a record that cannot be stored would stop its Kafka partition for good (issue 8).
CREATED_MAX = 2**63 - 1  # BIGINT
INT_MIN = -(2**63)  # every JSON integer must fit a signed 64-bit column
INT_MAX = 2**63 - 1
INT_DIGITS_MAX = 19  # len(str(INT_MAX)); longer digit strings are refused before int()
# An integer that might not fit int64 has 19 digits or more: only then are integers checked one
# by one (a Python call per integer), so that real events keep json's fast path. A run of 19
# digits is found by mapping every digit to "0" and searching for 19 zeros: a C translate and a
# substring search. (The regex [0-9]{19} took twice as long as json.loads itself: issue 21.)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * INT_DIGITS_MAX
# Real payloads hold long digit runs in strings (a refund's ARN "reference": 23 digits, in 16% of
# a refund-heavy stream), which sent them to the slow decoder. A run that starts right after a
# quote is inside a string: in valid JSON no number token follows a '"' (after a string comes
# ':', ',', '}', ']' or white space), and invalid JSON is refused by both paths alike. So only a
# run after anything else can be an integer token. (A regex with a look-behind took 16 us on a
# 900-byte event, three times json.loads: the runs translate finds are checked one by one.)
_QUOTE = ord('"')
INDEXED_STR_CHARS_MAX = {
    "account": 255,
    "api_version": 64,
    "object_type": 255,
    "object_id": 255,
    "context": 255,
}
SNAPSHOT_OBJECT = "event"
THIN_OBJECT = "v2.core.event"
ISO_CREATED_CHARS_MAX = 64  # "2024-09-17T06:20:52.246Z" is 24
# \u0000 or a UTF-16 surrogate escape: the only ways valid UTF-8 JSON can hold a NUL character or
# a lone surrogate, which PostgreSQL text and JSONB refuse. Only then is the payload walked.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


class EnvelopeError(ValueError):
    """The input is not a Stripe event. The message is short, safe to show and to log."""


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A validated Stripe event (v1 snapshot or v2 thin) with the fields the store indexes."""

    event_id: str
    type: str
    api_version: str | None
    created: int  # Stripe's timestamp, unix seconds
    livemode: bool
    account: str | None  # Connect account (a thin event's context), None for the platform
    object_type: str | None  # data.object.object (a thin event's related_object.type)
    object_id: str | None  # data.object.id (a thin event's related_object.id)
    payload: dict[str, Any]
    # The bytes the payload was parsed from, when there were any: the PostgreSQL store writes
    # them as they came instead of encoding the payload again. Not part of the event's identity.
    raw: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def thin(self) -> bool:
        """A v2 thin event: a reference to an object, not a snapshot of it."""
        return self.payload.get("object") == THIN_OBJECT


def _depth_ok(raw_text: str) -> bool:
    """Cheap bound on nesting before json.loads recurses (a deep '[[[[...' is a CPU/stack bomb)."""
    depth = 0
    in_string = False
    escaped = False
    for char in raw_text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > JSON_NESTING_DEPTH_MAX:
                return False
        elif char in "]}":
            depth -= 1
    return True


def decode_json(raw: bytes, *, bytes_max: int = EVENT_BODY_BYTES_MAX) -> Any:
    """Bytes -> JSON value, or EnvelopeError. Bounded in size and nesting; numbers finite and
    integers within int64. ``bytes_max``: larger only for a whole import file (an array)."""
    if len(raw) > bytes_max:
        raise EnvelopeError(f"payload is larger than {bytes_max} bytes")
    if raw.count(b"[") + raw.count(b"{") <= JSON_NESTING_DEPTH_MAX and not long_digit_run(raw):
        # The fast path (issue 21): at most 64 brackets (so no deeper nesting) and no run of
        # 19 digits (so every integer fits int64). What orjson accepts, the stdlib decoder
        # accepts with the same value (the last of a duplicate key wins in both); what orjson
        # refuses (invalid UTF-8, a byte-order mark, NaN, Infinity, 1e999, lone surrogates,
        # malformed text) goes the reference way below, which refuses it with the envelope's
        # own message or accepts it for ``parse_event``'s walk to judge, as before.
        # tests/test_envelope_fast_path.py holds the two paths to the same answers.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    text, checked = _bounded_text(raw, bytes_max)
    return _decode_stdlib(text, checked)


def long_digit_run(raw: bytes) -> bool:
    """Whether ``raw`` holds a run of 19 digits or more that may be a JSON integer (one not
    right after a quote): only then can an integer in it be outside int64, which orjson would
    turn into a float without a word (2**64 -> 1.8e19)."""
    zeroed = raw.translate(_DIGITS_AS_ZERO)
    at = zeroed.find(_LONG_DIGIT_RUN)  # the first 19 zeros of a run: where the run starts
    while at != -1:
        if at == 0 or zeroed[at - 1] != _QUOTE:
            return True  # a run of 38 digits or more comes here on its 20th: conservative
        at = zeroed.find(_LONG_DIGIT_RUN, at + INT_DIGITS_MAX)
    return False


def _bounded_text(raw: bytes, bytes_max: int) -> tuple[str, bool]:
    """``raw`` as text within the size and nesting bounds, and whether its integers must be
    checked one by one (it holds a run of 19 digits or more); EnvelopeError otherwise."""
    if len(raw) > bytes_max:
        raise EnvelopeError(f"payload is larger than {bytes_max} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("payload is not valid UTF-8") from None
    # Only scan for depth when brackets are plentiful: a real event has a few hundred at most.
    if text.count("[") + text.count("{") > JSON_NESTING_DEPTH_MAX and not _depth_ok(text):
        raise EnvelopeError(f"JSON nests deeper than {JSON_NESTING_DEPTH_MAX} levels")
    if text.startswith("\ufeff"):  # json.loads refuses a byte-order mark; the decoder does not
        raise EnvelopeError("payload is not valid JSON")
    return text, long_digit_run(raw)


def _decode_stdlib(text: str, checked: bool) -> Any:
    """The reference decoder: the stdlib's, with the envelope's number rules."""
    try:
        return (_DECODER_CHECKED_INTS if checked else _DECODER).decode(text)
    except (json.JSONDecodeError, RecursionError):
        raise EnvelopeError("payload is not valid JSON") from None


def _refuse_constant(name: str) -> Any:
    raise EnvelopeError(f"payload holds {name}, which is not JSON")


def _checked_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > INT_DIGITS_MAX:
        raise EnvelopeError(f"payload holds an integer of {digits} digits, outside int64")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise EnvelopeError(f"payload holds the integer {text}, outside int64")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise EnvelopeError(f"payload holds the number {text[:40]}, too large for a float")
    return value


# Built once: json.loads(text, parse_float=...) builds a decoder per call (a sixth of a 2 KB
# event's decode). The decoders hold no state between calls that could leak from one to the next.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_DECODER_CHECKED_INTS = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_checked_int
)


def _storable_number(item: Any) -> bool:
    if isinstance(item, float):
        return math.isfinite(item)
    return isinstance(item, bool) or INT_MIN <= item <= INT_MAX


def _storable_values(value: Any, *, numbers: bool) -> bool:
    """No NUL character and no lone surrogate in any string or key of ``value``; with
    ``numbers``, also no non-finite float and no integer outside int64 (for values that did not
    come through ``decode_json``, such as the Stripe SDK's or the Lambda runtime's)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if numbers and isinstance(item, int | float) and not _storable_number(item):
            return False
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeError(f"event field {key!r} must be a string or null")
    if len(value) > INDEXED_STR_CHARS_MAX[key]:
        raise EnvelopeError(f"event field {key!r} is longer than {INDEXED_STR_CHARS_MAX[key]}")
    return value


def event_from_dict(payload: Any, raw: bytes | None = None) -> StripeEvent:
    """A decoded JSON value -> StripeEvent, or EnvelopeError naming the first problem.

    ``raw``: the UTF-8 JSON text ``payload`` was decoded (by ``decode_json``) from, if the
    caller has it; without it every value is checked as ``decode_json`` would have."""
    if not isinstance(payload, dict):
        raise EnvelopeError("JSON is not an object")
    kind = payload.get("object")
    if kind not in (SNAPSHOT_OBJECT, THIN_OBJECT):
        raise EnvelopeError(
            "JSON is not a Stripe event "
            "(object must be 'event', or 'v2.core.event' for a thin event)"
        )
    event_id = payload.get("id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= EVENT_ID_CHARS_MAX:
        raise EnvelopeError("event has no valid 'id'")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= EVENT_TYPE_CHARS_MAX:
        raise EnvelopeError("event has no valid 'type'")
    livemode = payload.get("livemode", False)
    if not isinstance(livemode, bool):
        raise EnvelopeError("event field 'livemode' must be true or false")
    if kind == THIN_OBJECT:
        created = _iso_created(payload.get("created"))
        account = _optional_str(payload, "context")
        object_type, object_id = _related_object(payload.get("related_object"))
        api_version = None  # thin payloads are unversioned
    else:
        created = _unix_created(payload.get("created"))
        account = _optional_str(payload, "account")
        object_type, object_id = _data_object(payload.get("data"))
        api_version = _optional_str(payload, "api_version")
    if raw is None and not _storable_values(payload, numbers=True):
        raise EnvelopeError(
            "event holds a NUL character, a lone surrogate, a non-finite number or an integer "
            "outside int64"
        )
    if (
        raw is not None
        and b"\\u" in raw  # most events hold no escape at all: no regex for them
        and _SUSPECT_ESCAPE.search(raw)
        and not _storable_values(payload, numbers=False)
    ):
        raise EnvelopeError("event holds a NUL character or a lone surrogate")
    return StripeEvent(
        event_id=event_id,
        type=event_type,
        api_version=api_version,
        created=created,
        livemode=livemode,
        account=account,
        object_type=object_type,
        object_id=object_id,
        payload=payload,
        raw=raw,
    )


def _data_object(data: Any) -> tuple[str | None, str | None]:
    """A snapshot event's data.object -> its (object, id) when they are strings."""
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise EnvelopeError("event has no 'data.object'")
    object_type = obj.get("object")
    object_id = obj.get("id")
    for key, value in (("object_type", object_type), ("object_id", object_id)):
        if isinstance(value, str) and len(value) > INDEXED_STR_CHARS_MAX[key]:
            raise EnvelopeError(f"data.object's {key[7:]!r} is longer than 255 characters")
    return (
        object_type if isinstance(object_type, str) else None,
        object_id if isinstance(object_id, str) else None,
    )


def _related_object(related: Any) -> tuple[str | None, str | None]:
    """A thin event's related_object (nullable) -> its (type, id)."""
    if related is None:
        return None, None
    if not isinstance(related, dict):
        raise EnvelopeError("thin event field 'related_object' must be an object or null")
    found: list[str | None] = []
    for key, column in (("type", "object_type"), ("id", "object_id")):
        value = related.get(key)
        if value is not None and not isinstance(value, str):
            raise EnvelopeError(f"related_object's {key!r} must be a string")
        if isinstance(value, str) and len(value) > INDEXED_STR_CHARS_MAX[column]:
            raise EnvelopeError(f"related_object's {key!r} is longer than 255 characters")
        found.append(value)
    return found[0], found[1]


def _unix_created(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= CREATED_MAX:
        raise EnvelopeError("event has no valid 'created' (unix seconds)")
    return value


def _iso_created(value: Any) -> int:
    """A thin event's ``created`` ("2024-09-17T06:20:52.246Z") -> unix seconds (floored)."""
    problem = "thin event has no valid 'created' (an ISO-8601 date-time with a time zone)"
    if not isinstance(value, str) or not 0 < len(value) <= ISO_CREATED_CHARS_MAX:
        raise EnvelopeError(problem)
    try:
        when = dt.datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        # Floored: 06:20:52.246 is second 06:20:52, as Stripe's own unix timestamps count.
        seconds = int(when.timestamp() // 1)
    except (ValueError, OverflowError):
        raise EnvelopeError(problem) from None
    if not 0 <= seconds <= CREATED_MAX:
        raise EnvelopeError(problem)
    return seconds


def parse_event(raw: bytes) -> StripeEvent:
    """Raw bytes (a webhook body, a Kafka record value, an import line) -> StripeEvent."""
    return event_from_dict(decode_json(raw), raw)
