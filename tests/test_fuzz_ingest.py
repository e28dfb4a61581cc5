"""Hypothesis fuzzing of the front door: nothing escapes but the documented error types.

- ``ingest.signature.parse_header`` / ``verify``: any text, any bytes -> a result or
  ``SignatureError``; a result only when a v1 really is the HMAC of the payload.
- ``ledger.envelope.parse_event``: any bytes, any JSON -> a ``StripeEvent`` or ``EnvelopeError``.
- The ASGI app in process (the callable itself, generated headers and bodies, an in-memory
  object implementing the app's ``Sink`` protocol): never 500, never 2xx for an unsigned or
  forged request, and the sink sees exactly the requests answered 200.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.client import sign
from ingest.app import WEBHOOK_PATH, create_app
from ingest.signature import (
    SIGNATURE_HEADER_CHARS_MAX,
    ParsedSignature,
    SignatureError,
    compute_signature,
    parse_header,
    verify,
)
from ledger.envelope import EnvelopeError, StripeEvent, parse_event
from ledger.settings import Settings

SECRET = "whsec_" + "fuzz0secret0for0the0ingest0app00"
NOW_S = 1_800_000_000
TOLERANCE_S = 300
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)

hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
header_items = st.one_of(
    st.builds(lambda v: f"t={v}", st.one_of(st.integers(-(10**14), 10**14), st.text(max_size=14))),
    st.builds(lambda v: f"v1={v}", st.one_of(hex64, st.text(max_size=70))),
    st.builds(lambda v: f"v0={v}", hex64),
    st.text(max_size=30),
)
structured_headers = st.lists(header_items, max_size=40).map(",".join)
any_headers = st.one_of(st.none(), st.text(max_size=300), structured_headers)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=40), st.integers(), st.none()),
        "object": st.sampled_from(["event", "v2.core.event", "charge", ""]) | json_values,
        "type": st.one_of(st.text(max_size=40), st.integers()),
        "created": st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=10), st.floats()),
        "livemode": st.one_of(st.booleans(), st.integers(), st.none(), st.text(max_size=5)),
        "account": st.one_of(st.none(), st.text(max_size=10), st.integers()),
        "api_version": st.one_of(st.none(), st.text(max_size=20), st.integers()),
        "data": st.one_of(
            json_values,
            st.fixed_dictionaries({"object": json_values}),
            st.fixed_dictionaries(
                {"object": st.dictionaries(st.sampled_from(["id", "object"]), json_values)}
            ),
        ),
    },
)
json_bodies = st.one_of(json_values, event_like).map(
    lambda value: json.dumps(value, allow_nan=True).encode("utf-8")
)
nested = st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)
bodies = st.one_of(st.binary(max_size=2000), json_bodies, nested, st.text().map(str.encode))


# -- the signature ----------------------------------------------------------------------------


@FUZZ
@given(header=any_headers)
def test_parse_header_raises_only_signature_error(header: str | None) -> None:
    try:
        parsed = parse_header(header)
    except SignatureError as error:
        assert error.code in {"missing_signature", "malformed_signature", "no_v1_signature"}
        return
    assert isinstance(parsed, ParsedSignature)
    assert header is not None and len(header) <= SIGNATURE_HEADER_CHARS_MAX
    assert all(len(v) == 64 for v in parsed.v1)


@FUZZ
@given(
    payload=st.binary(max_size=500),
    header=any_headers,
    secrets=st.lists(st.text(max_size=40), max_size=3),
    now_s=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    tolerance_s=st.integers(0, 10**6),
)
def test_verify_raises_only_signature_error_and_accepts_only_a_real_mac(
    payload: bytes, header: str | None, secrets: list[str], now_s: float, tolerance_s: int
) -> None:
    try:
        timestamp = verify(payload, header, secrets, tolerance_s=tolerance_s, now_s=now_s)
    except SignatureError:
        return
    parsed = parse_header(header)
    expected = {compute_signature(timestamp, payload, secret) for secret in secrets}
    assert expected & set(parsed.v1), "accepted without a matching v1"
    assert abs(timestamp - now_s) <= tolerance_s


@FUZZ
@given(
    payload=st.binary(max_size=300),
    skew_s=st.integers(-2000, 2000),
    tamper=st.sampled_from(["none", "body", "secret", "hex"]),
    extra=st.lists(header_items, max_size=5),
)
def test_a_signed_payload_verifies_only_untampered_and_within_tolerance(
    payload: bytes, skew_s: int, tamper: str, extra: list[str]
) -> None:
    signed_at = NOW_S + skew_s
    good = sign(payload, SECRET, signed_at)
    header = {
        "none": good,
        "body": good,
        "secret": sign(payload, SECRET + "x", signed_at),
        "hex": good[:-1] + ("0" if good[-1] != "0" else "1"),
    }[tamper]
    # Junk entries after the first t=, never before (the first t counts).
    header = ",".join([header, *(item for item in extra if not item.startswith("t="))])
    body = payload + b"!" if tamper == "body" else payload
    try:
        verify(body, header, [SECRET], tolerance_s=TOLERANCE_S, now_s=NOW_S)
        accepted = True
    except SignatureError:
        accepted = False
    assert accepted == (tamper == "none" and abs(skew_s) <= TOLERANCE_S)


# -- the envelope -----------------------------------------------------------------------------


@FUZZ
@given(raw=bodies)
def test_parse_event_raises_only_envelope_error(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except EnvelopeError:
        return
    assert isinstance(event, StripeEvent)
    assert event.payload["object"] == "event" and isinstance(event.event_id, str)
    assert isinstance(event.created, int) and isinstance(event.livemode, bool)


# -- the ASGI app, in process -----------------------------------------------------------------


class MemorySink:
    """The app's own Sink protocol, in memory (not a Kafka mock: no broker behaviour here)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool:
        return True

    async def put(self, raw: bytes, event: StripeEvent, received_at_ms: int) -> None:
        self.events.append(event.event_id)


BODY_MAX = 4096
APP_SETTINGS = Settings(
    kafka_bootstrap="",
    webhook_secrets=(SECRET,),
    body_bytes_max=BODY_MAX,
    webhook_tolerance_s=TOLERANCE_S,
)


async def _call(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], method: str, path: str
) -> tuple[int, bytes, MemorySink]:
    sink = MemorySink()
    app = create_app(APP_SETTINGS, sink, clock=lambda: float(NOW_S))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 8000),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(starts[0]["status"]), body, sink


header_names = st.sampled_from(
    [b"stripe-signature", b"content-length", b"content-type", b"transfer-encoding", b"x-junk"]
)
header_values = st.one_of(
    st.binary(max_size=200), structured_headers.map(lambda s: s.encode("latin-1", "replace"))
)


@FUZZ
@given(
    body=bodies,
    signing=st.sampled_from(["valid", "forged", "stale", "none"]),
    extra_headers=st.lists(st.tuples(header_names, header_values), max_size=4),
    extra_first=st.booleans(),
    split=st.integers(1, 5),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
)
def test_the_asgi_app_never_answers_500_and_2xx_only_for_signed_events(
    body: bytes,
    signing: str,
    extra_headers: list[tuple[bytes, bytes]],
    extra_first: bool,
    split: int,
    method: str,
) -> None:
    headers: list[tuple[bytes, bytes]] = []
    if signing != "none":
        secret = SECRET if signing != "forged" else SECRET + "0"
        at = NOW_S if signing != "stale" else NOW_S - TOLERANCE_S - 1
        headers.append((b"stripe-signature", sign(body, secret, at).encode()))
    # Junk first means it wins (the app takes the first of each header): then no 2xx either
    # unless the junk happened to be a valid signature, which generated bytes never are.
    headers = [*extra_headers, *headers] if extra_first else [*headers, *extra_headers]
    size = max(1, len(body) // split)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    status, answer, sink = asyncio.run(_call(headers, chunks, method, WEBHOOK_PATH))
    assert status != 500 and 200 <= status < 600, (status, answer)
    if 200 <= status < 300:
        assert method == "POST" and signing == "valid"
        assert parse_event(body).event_id == sink.events[0]
        assert len(sink.events) == 1
        assert len(body) <= BODY_MAX
    else:
        assert sink.events == []
        assert status in {400, 404, 405, 413}, status
        if method == "POST":
            assert json.loads(answer)["error"]
    # A valid signed event, first header, within the limit, is always accepted.
    if (
        method == "POST"
        and signing == "valid"
        and not extra_first
        and len(body) <= BODY_MAX
        and not any(name == b"content-length" for name, _ in extra_headers)
    ):
        try:
            parse_event(body)
        except EnvelopeError:
            return
        assert status == 200, (status, answer)


def test_the_fuzzed_app_accepts_a_real_event() -> None:
    """The property above is not vacuous: a real signed event goes through the same harness."""
    body = json.dumps(
        {
            "id": "evt_fuzz_ok",
            "object": "event",
            "type": "charge.succeeded",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": {"id": "ch_1", "object": "charge"}},
        }
    ).encode()
    headers = [(b"stripe-signature", sign(body, SECRET, NOW_S).encode())]
    status, _answer, sink = asyncio.run(_call(headers, [body], "POST", WEBHOOK_PATH))
    assert status == 200 and sink.events == ["evt_fuzz_ok"]
