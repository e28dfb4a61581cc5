"""The demo's balance-sync: its history's balance transactions, served by the stand-in Stripe
API on loopback, fetched by the real ``stripe-ledger balance-sync`` (a child process with a
throw-away ``sk_test_`` key in its environment, never on its command line)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from demo.history import DemoHistory
from demo.standin import Standin, from_demo

if TYPE_CHECKING:  # the store is imported where the sync runs, not at import time
    from ledger.store import EventStore

SYNC_S_MAX = 600.0  # the whole sync of a demo history, bounded


def run_balance_sync(history: DemoHistory, database_url: str) -> tuple[int, str]:
    """(exit status, what balance-sync printed) for ``history`` synced into ``database_url``:
    every account, from the history's first second to its last (it is dated ahead of now)."""
    if not history.events:
        return 0, "balance-sync: the history is empty"
    since_s = history.events[0]["created"]
    until_s = history.events[-1]["created"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    with Standin(from_demo(history)) as base:
        env.update(
            LEDGER_DATABASE_URL=database_url,
            STRIPE_API_BASE=base,
            STRIPE_API_KEY="sk_test_demo" + secrets.token_hex(12),
        )
        env.setdefault("LEDGER_LOG_FORMAT", "json")
        command = [sys.executable, "-m", "cli.main", "balance-sync", "--all-accounts"]
        command += ["--since", str(since_s)]
        if until_s > time.time():  # a history dated ahead (tests): Stripe's "now" is its end
            command += ["--until", str(until_s)]
        try:
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=SYNC_S_MAX
            )
        except subprocess.TimeoutExpired:
            return 1, f"balance-sync did not finish within {SYNC_S_MAX:.0f} s"
    lines = [line for line in result.stderr.splitlines() if "progress" not in line]
    return result.returncode, "\n".join([result.stdout.strip(), *lines[-5:]]).strip()


def sync_in_process(history: DemoHistory, store: EventStore) -> None:
    """The same sync, in this process (tests, docs): ``history``'s balance transactions served by
    the stand-in and fetched by ``ledger.balance_sync`` into ``store``, with the history's end
    as Stripe's "now" (so the balance at the end is stored)."""
    from ledger.balance_sync import balance_sync
    from ledger.stripe_api import StripeApi

    if not history.events:
        return
    end_s = history.events[-1]["created"]
    with Standin(from_demo(history)) as base:
        api = StripeApi("sk_test_demo" + "0" * 24, base=base, wait=lambda _seconds: False)
        balance_sync(
            api,
            store,
            accounts=[None, *(a for a in history.balance_transactions if a)],
            since_s=history.events[0]["created"],
            clock=lambda: end_s,
        )
