"""The stand-in Stripe API answers like Stripe: list envelope, newest first, filters, paging,
expansion, scopes by key mode and Stripe-Account, errors in Stripe's shape."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from demo.history import generate
from demo.standin import Standin, StandinData, from_demo

KEY = "sk_test_standin"


def get(base: str, path: str, key: str = KEY, account: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    if account:
        request.add_header("Stripe-Account", account)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def data() -> StandinData:
    out = StandinData(objects={"ch_1": {"id": "ch_1", "object": "charge"}})
    out.scope().balance_transactions = [
        {"id": f"txn_{n}", "object": "balance_transaction", "created": 100 + n, "source": "ch_1"}
        for n in range(5)
    ]
    out.scope().payouts = {"po_1": ["txn_1", "txn_3"]}
    out.scope(None, True).balance = {"object": "balance", "available": [], "pending": []}
    return out


def test_lists_filter_page_and_expand() -> None:
    with Standin(data()) as base:
        status, page = get(base, "/v1/balance_transactions?limit=2&created[gte]=101")
        assert status == 200 and page["object"] == "list" and page["has_more"] is True
        assert [t["id"] for t in page["data"]] == ["txn_4", "txn_3"]  # newest first
        _, rest = get(
            base, "/v1/balance_transactions?limit=2&created[gte]=101&starting_after=txn_3"
        )
        assert [t["id"] for t in rest["data"]] == ["txn_2", "txn_1"] and rest["has_more"] is False
        _, members = get(base, "/v1/balance_transactions?payout=po_1&expand[]=data.source")
        assert [t["id"] for t in members["data"]] == ["txn_3", "txn_1"]
        assert members["data"][0]["source"] == {"id": "ch_1", "object": "charge"}
        _, exact = get(base, "/v1/balance_transactions?created=102&created[lt]=200")
        assert [t["id"] for t in exact["data"]] == ["txn_2"]


def test_scopes_and_errors_look_like_stripes() -> None:
    standin = Standin(data())
    with standin as base:
        _, live = get(base, "/v1/balance", key="sk_live_x")
        assert live["livemode"] is True
        _, other = get(base, "/v1/balance_transactions", account="acct_1")
        assert other["data"] == []  # a connected account sees only its own
        assert get(base, "/v1/balance", key="pk_test_x")[0] == 401
        assert get(base, "/v1/balance_transactions?limit=101")[0] == 400
        assert get(base, "/v1/balance_transactions?payout=po_nope")[0] == 404
        assert get(base, "/v1/accounts", account="acct_1")[0] == 400
        status, body = get(base, "/v1/charges")
        assert status == 404 and body["error"]["type"] == "invalid_request_error"
        standin.rate_limit(1, retry_after_s=2)
        assert get(base, "/v1/balance")[0] == 429
        assert get(base, "/v1/balance")[0] == 200


def test_from_demo_serves_the_historys_accounts_and_transactions() -> None:
    history = generate(seed=7, events=400)
    served = from_demo(history)
    [account] = [a["id"] for a in served.accounts]
    with Standin(served) as base:
        _, accounts = get(base, "/v1/accounts")
        assert [a["id"] for a in accounts["data"]] == [account]
        _, page = get(base, "/v1/balance_transactions?limit=100", account=account)
        assert {t["id"] for t in page["data"]} == {
            t["id"] for t in history.balance_transactions[account]
        }
        _, balance = get(base, "/v1/balance", account=account)
        assert balance["available"] == history.balances[account]["available"]


def test_a_client_that_hangs_up_mid_request_is_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The demo interrupted by Ctrl-C resets balance-sync's connection while the stand-in reads
    # the request line: socketserver's default prints that as a traceback on the demo's stderr.
    with Standin(data()) as base:
        port = int(base.rsplit(":", 1)[1])
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET /v1/balance HTTP/1.1\r\n")  # half a request, then a reset
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        time.sleep(0.3)  # the handler threads read, meet the reset and finish
        assert get(base, "/v1/balance")[0] == 200  # the server still answers
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
