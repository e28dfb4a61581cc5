"""The envelope decoder's fast path (orjson) gives the stdlib decoder's answers, exactly.

``ledger.envelope.decode_json`` decodes with orjson when no integer can be outside int64 and
falls back to the stdlib decoder (the reference, with the envelope's number rules) when orjson
refuses. Every door relies on one set of answers, so the two paths must agree on every input:
the same value with the same types (1 vs 1.0 vs True, -0.0, key order, the last duplicate key),
or the same ``EnvelopeError`` message. Inputs: the real payloads of tests/fixtures/stripe, edge
cases of JSON's grammar and numbers, generated JSON and byte mutations of real payloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import envelope
from ledger.envelope import EnvelopeError, decode_json

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
BYTES_MAX = envelope.EVENT_BODY_BYTES_MAX
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _answer(decode: Any, raw: bytes) -> tuple[str, str]:
    """("ok", a repr that tells every type apart) or ("error", the message)."""
    try:
        return "ok", repr(decode(raw))
    except EnvelopeError as error:
        return "error", str(error)


def _reference(raw: bytes) -> Any:
    text, checked = envelope._bounded_text(raw, BYTES_MAX)  # noqa: SLF001 - the reference path
    return envelope._decode_stdlib(text, checked)  # noqa: SLF001


def _same(raw: bytes) -> tuple[str, str]:
    fast = _answer(decode_json, raw)
    assert fast == _answer(_reference, raw), raw[:200]
    return fast


def _real_payloads() -> list[bytes]:
    found = []
    for path in sorted(FIXTURES.rglob("*.json")):
        value = json.loads(path.read_text(encoding="utf-8"))
        found.append(json.dumps(value).encode())  # re-indented copies: compact them
        found.append(path.read_bytes())
    return found


REAL = _real_payloads()

EDGES = [
    b"1e999", b"-1e999", b"1E400", b"NaN", b"-Infinity", b"Infinity", b"[NaN]",
    b'{"a":1,"a":2}', b'{"a":{"b":1},"a":[2]}', b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"',
    b'"\\u0000"', b'"a\x01b"', b'"a\x7fb"', b' {"a":1} \n', b"\x0c1", b"1.5e308", b"-0", b"-0.0",
    b"0.1", b"1e-400", b"5e-324", b"2.2250738585072014e-308", b"1.7976931348623157e308",
    b"123456789012345678", b"-123456789012345678", b"9" * 19, b"-" + b"9" * 19, b"1" + b"0" * 18,
    b"18446744073709551615", b"0.30000000000000004", b"[1,]", b'{"a":1,}', b"01", b"1.", b".5",
    b"+1", b"1e", b"1e+", b'"\\x"', b'"\\u12"', b"\xef\xbb\xbf{}", b"", b" ", b"[]", b"{}",
    b"null", b"true", b"false", b"tru", b"[1] [2]", b'{"a" 1}', b"{1:2}", b"'a'", b'"\t"',
    b'"\\/"', b'"\xc3\xa9"', b'"\\u00e9"', b"[" * 64 + b"]" * 64, b"[" * 65 + b"]" * 65,
    b'{"amount": 1.0, "n": 1, "b": true}', b"1" * 5000, b"[1e5, 1E5, 1e+5, 1.0e5]",
    # Long digit runs in strings (a refund's ARN) beside ones that are integers: only the
    # latter may take the slow path, and both paths must agree on all of them.
    b'{"reference": "55520205006274815709179"}', b'["12345678901234567890123"]',
    b'{"a": "12345678901234567890123", "b": 12345678901234567890123}',
    b'{"a": "x 12345678901234567890123"}', b'["\\"12345678901234567890123"]',
    b'["12345678901234567890123",99999999999999999999]', b'"a"12345678901234567890123',
    b'["a",-12345678901234567890123]', b"[0.12345678901234567890123]", b"[1e12345678901234567890]",
    b'{"a":"1"12345678901234567890123}', b'["1234567890123456789","x"]',
]


@pytest.mark.parametrize("raw", REAL, ids=range(len(REAL)))
def test_real_payloads_decode_the_same(raw: bytes) -> None:
    kind, _value = _same(raw)
    assert kind == "ok"


@pytest.mark.parametrize("raw", EDGES, ids=range(len(EDGES)))
def test_edge_cases_decode_the_same(raw: bytes) -> None:
    _same(raw)


def test_the_fast_path_is_the_one_taken_for_real_events() -> None:
    """Not a speed check: a real event must not need the fallback (else the path is dead)."""
    import orjson

    for raw in REAL:
        assert repr(orjson.loads(raw)) == repr(decode_json(raw))


def test_a_long_digit_run_in_a_string_keeps_the_fast_path() -> None:
    """A refund's ARN (``reference``, 23 digits) is a string: it must not cost the slow decoder;
    the same digits as a number must."""
    arn = b'{"object": "refund", "reference": "55520205006274815709179", "amount": 100}'
    assert not envelope.long_digit_run(arn)
    as_number = arn.replace(b'"55520205006274815709179"', b"5552020500627481570")
    assert envelope.long_digit_run(as_number)
    assert envelope.long_digit_run(b'{"a": "x", "b": -55520205006274815709179}')
    assert envelope.long_digit_run(b'{"a": "ref 55520205006274815709179"}')  # conservative


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.from_regex(r"\A[0-9 -]{0,2}[0-9]{19,24}\Z")  # an ARN-like string: a long digit run
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@FUZZ
@given(_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_generated_json_decodes_the_same(value: Any, ascii_only: bool, indent: int | None) -> None:
    _same(json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode())


_significant = st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"-", b"0", b"9", b"e", b".", b" ",
     b"\\u0000", b"\\ud800", b"NaN", b"1e999", b"9" * 19, b"\x00", b"\xff", b"\xc3"]
)


@FUZZ
@given(
    st.sampled_from(REAL[:40]),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), _significant), max_size=4),
)
def test_mutated_real_payloads_decode_the_same(
    raw: bytes, edits: list[tuple[float, int, bytes]]
) -> None:
    for where, cut, insert in edits:
        at = int(where * len(raw))
        raw = raw[:at] + insert + raw[at + cut :]
    _same(raw)


@pytest.mark.parametrize(
    "text",
    [
        '{"amount":18446744073709551616}',  # stored before the decoder was total: stays an int
        '{"amount":-9223372036854775809,"n":1.0}',
        '{"reference":"55520205006274815709179","amount":18446744073709551616}',
        '{"s":"\\ud800"}',  # a lone surrogate escape: orjson refuses, json.loads takes it
        '{"s":"caf\u00e9","n":[1,2.5,true,null]}',
    ],
)
def test_the_store_decodes_a_stored_payload_as_json_loads_does(text: str) -> None:
    from ledger.store import _loads

    assert repr(_loads(text)) == repr(json.loads(text))
    assert repr(_loads(text.encode("utf-8", "surrogatepass"))) == repr(json.loads(text))
