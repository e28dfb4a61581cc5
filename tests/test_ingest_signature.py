"""The Stripe-Signature parser and verifier, against the stripe library's own scheme."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.core import Rejection, verify_and_parse
from ingest.signature import (
    SIGNATURE_HEADER_CHARS_MAX,
    SIGNATURE_V1_ENTRIES_MAX,
    SignatureError,
    compute_signature,
    parse_header,
    verify,
)
from tests.support.ingest import OTHER_SECRET, SECRET, event_body, stripe_signature, v1_of

NOW = 1_790_000_000
TOL = 300


def check(body: bytes, header: str | None, secrets: tuple[str, ...] = (SECRET,)) -> int:
    return verify(body, header, secrets, tolerance_s=TOL, now_s=NOW)


def code_of(body: bytes, header: str | None, secrets: tuple[str, ...] = (SECRET,)) -> str:
    with pytest.raises(SignatureError) as caught:
        check(body, header, secrets)
    return caught.value.code


def test_stripe_library_header_is_accepted_and_matches_our_mac() -> None:
    body = event_body()
    header = stripe_signature(body, timestamp=NOW)
    assert check(body, header) == NOW
    assert compute_signature(NOW, body, SECRET) == v1_of(body, SECRET, NOW)
    # And the library accepts what we accept.
    assert stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=None)


def test_bytes_payload_with_non_ascii_text() -> None:
    body = event_body(description="café ☕ 日本")
    assert check(body, stripe_signature(body, timestamp=NOW)) == NOW


def test_bad_extra_v1_beside_a_good_one_is_accepted() -> None:
    body = event_body()
    good = v1_of(body, SECRET, NOW)
    assert check(body, f"t={NOW},v1={'0' * 64},v1={good}") == NOW
    assert check(body, f"t={NOW},v1={good},v1=nothex") == NOW


def test_only_v0_is_refused() -> None:
    body = event_body()
    assert code_of(body, f"t={NOW},v0={v1_of(body, SECRET, NOW)}") == "no_v1_signature"


def test_v0_beside_a_good_v1_is_ignored() -> None:
    body = event_body()
    assert check(body, f"t={NOW},v1={v1_of(body, SECRET, NOW)},v0={'f' * 64}") == NOW


def test_wrong_secret_and_tampered_body_are_refused() -> None:
    body = event_body()
    assert code_of(body, stripe_signature(body, "whsec_wrong", NOW)) == "signature_mismatch"
    header = stripe_signature(body, timestamp=NOW)
    assert code_of(body + b" ", header) == "signature_mismatch"
    # The timestamp is signed too: changing it breaks the signature.
    assert code_of(body, header.replace(f"t={NOW}", f"t={NOW + 1}")) == "signature_mismatch"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("garbage", "malformed_signature"),
        ("v1=" + "a" * 64, "malformed_signature"),
        ("t=,v1=" + "a" * 64, "malformed_signature"),
        ("t=12ab,v1=" + "a" * 64, "malformed_signature"),
        ("t=-5,v1=" + "a" * 64, "malformed_signature"),
        ("t=１２３,v1=" + "a" * 64, "malformed_signature"),  # non-ASCII digits
        ("t=1" + "0" * 20 + ",v1=" + "a" * 64, "malformed_signature"),
        (f"t={NOW}", "no_v1_signature"),
        (f"t={NOW},v2=" + "a" * 64, "no_v1_signature"),
        (f"t={NOW},v1=", "signature_mismatch"),
        (f"t={NOW},v1=é" + "a" * 63, "signature_mismatch"),
    ],
)
def test_malformed_headers(header: str | None, code: str) -> None:
    assert code_of(event_body(), header) == code


def test_timestamp_tolerance_past_and_future() -> None:
    body = event_body()
    assert check(body, stripe_signature(body, timestamp=NOW - TOL)) == NOW - TOL
    assert check(body, stripe_signature(body, timestamp=NOW + TOL)) == NOW + TOL
    old = stripe_signature(body, timestamp=NOW - TOL - 1)
    future = stripe_signature(body, timestamp=NOW + TOL + 1)
    with pytest.raises(SignatureError, match="in the past") as past_error:
        check(body, old)
    with pytest.raises(SignatureError, match="in the future") as future_error:
        check(body, future)
    assert past_error.value.code == future_error.value.code == "timestamp_outside_tolerance"


def test_forged_and_expired_reports_the_mismatch_first() -> None:
    body = event_body()
    assert code_of(body, stripe_signature(body, "whsec_x", NOW - 10_000)) == "signature_mismatch"


def test_secret_rolling_either_secret_signs() -> None:
    body = event_body()
    both = (SECRET, OTHER_SECRET)
    assert check(body, stripe_signature(body, SECRET, NOW), both) == NOW
    assert check(body, stripe_signature(body, OTHER_SECRET, NOW), both) == NOW
    # Stripe signs with both secrets during a roll: one header, two v1 entries.
    header = f"t={NOW},v1={v1_of(body, OTHER_SECRET, NOW)},v1={v1_of(body, SECRET, NOW)}"
    assert check(body, header, (SECRET,)) == NOW
    assert code_of(body, stripe_signature(body, OTHER_SECRET, NOW), (SECRET,)) == (
        "signature_mismatch"
    )


def test_thousands_of_v1_entries_are_bounded() -> None:
    body = event_body()
    good = v1_of(body, SECRET, NOW)
    # 5000 entries: far over the 8 KiB header cap -> refused before any HMAC.
    flood = f"t={NOW}," + ",".join(["v1=" + "0" * 64] * 5000) + f",v1={good}"
    assert len(flood) > SIGNATURE_HEADER_CHARS_MAX
    assert code_of(body, flood) == "malformed_signature"
    # Under the cap, only the first SIGNATURE_V1_ENTRIES_MAX v1 entries are compared.
    short = ["v1=" + "0" * 8] * (SIGNATURE_V1_ENTRIES_MAX * 10)
    late = f"t={NOW}," + ",".join(short) + f",v1={good}"
    assert len(late) <= SIGNATURE_HEADER_CHARS_MAX
    assert code_of(body, late) == "signature_mismatch"
    assert len(parse_header(late).v1) == 0
    early = f"t={NOW},v1={good}," + ",".join(short)
    assert check(body, early) == NOW
    assert len(parse_header(early).v1) == 1


def test_giant_header_is_refused() -> None:
    body = event_body()
    giant = stripe_signature(body, timestamp=NOW) + "," + "x" * (1024 * 1024)
    assert code_of(body, giant) == "malformed_signature"
    # Exactly at the cap it is still parsed.
    header = stripe_signature(body, timestamp=NOW)
    padded = header + "," + "x" * (SIGNATURE_HEADER_CHARS_MAX - len(header) - 1)
    assert len(padded) == SIGNATURE_HEADER_CHARS_MAX
    assert check(body, padded) == NOW


def test_first_timestamp_counts_like_the_library() -> None:
    body = event_body()
    header = f"t={NOW},t={NOW + 5},v1={v1_of(body, SECRET, NOW)}"
    assert check(body, header) == NOW
    assert stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=None)


def test_no_secrets_configured_accepts_nothing() -> None:
    body = event_body()
    assert code_of(body, stripe_signature(body, timestamp=NOW), ()) == "signature_mismatch"


_header_items = st.one_of(
    st.just("t=1790000000"),
    st.builds(lambda h: f"v1={h}", st.text("0123456789abcdef", min_size=0, max_size=70)),
    st.builds(lambda h: f"v0={h}", st.text("0123456789abcdef", max_size=64)),
    # Junk items: no "t"/"v" keys and no whitespace, where the library's reading differs (it
    # fails on a bare "t" item and does not strip spaces; we skip and strip).
    st.text("abcxyz=019_", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=200).map(lambda b: b.decode("latin-1").encode("utf-8")),
    items=st.lists(_header_items, max_size=8),
    sign_with=st.sampled_from([SECRET, OTHER_SECRET, None]),
)
def test_same_verdict_as_the_stripe_library(
    body: bytes, items: list[str], sign_with: str | None
) -> None:
    """For well-formed Stripe-style headers our verdict equals stripe.verify_header's."""
    if sign_with is not None:
        items = [*items, f"v1={v1_of(body, sign_with, NOW)}"]
    header = ",".join(items)
    try:
        stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=None)
        library_ok = True
    except stripe.SignatureVerificationError:
        library_ok = False
    try:
        verify(body, header, (SECRET,), tolerance_s=10**9, now_s=time.time())
        ours_ok = True
    except SignatureError:
        ours_ok = False
    # Header items are all "k=v" with ASCII keys; the library and we read them alike, except
    # that we refuse non-digit timestamps the library's int() would take (" 1", "+1", "1_0").
    t_items = [i.partition("=")[2] for i in items if i.partition("=")[0] == "t"]
    if t_items and not t_items[0].isdigit():
        assert not ours_ok
    else:
        assert ours_ok == library_ok


def test_core_orders_signature_before_json() -> None:
    forged = b"{not json"
    with pytest.raises(Rejection) as caught:
        verify_and_parse(
            forged, stripe_signature(b"{}", timestamp=NOW), (SECRET,), tolerance_s=TOL, now_s=NOW
        )
    assert (caught.value.status, caught.value.code) == (400, "signature_mismatch")
    with pytest.raises(Rejection) as caught:
        verify_and_parse(
            forged, stripe_signature(forged, timestamp=NOW), (SECRET,), tolerance_s=TOL, now_s=NOW
        )
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")
