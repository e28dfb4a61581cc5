"""Every command the README shows is checked here, so the README cannot rot.

- Every ``stripe-ledger ...`` line in a README code block parses with the real CLI parser.
- The commands that need no service are run, in the README's order, on a fresh SQLite store;
  the ones that need Kafka (``consume``, ``ingest``) or a second database (``copy-store``) run in
  tests/test_consumer_kafka.py, tests/test_pipeline_kafka.py and tests/test_import.py.
- ``make`` targets and ``scripts/services.sh`` sub-commands the README names exist.
(``stripe listen`` / ``stripe trigger`` are the Stripe CLI's, not ours: not run here.)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from cli.main import build_parser
from tests.conftest import ROOT
from tests.support.factory import charge_event, encode
from tests.support.kafka_util import cli_env, run_cli

README = (ROOT / "README.md").read_text()
CODE = re.findall(r"```\n(.*?)```", README, re.DOTALL)


def _lines(prefix: str) -> list[str]:
    out = []
    for block in CODE:
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            command = re.sub(r"^(export \S+\s*|[A-Z_]+=\S+ )+", "", command)
            if command.startswith(prefix):
                out.append(command)
    return out


def test_every_stripe_ledger_line_parses() -> None:
    commands = _lines("stripe-ledger ")
    assert len(commands) >= 12
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert callable(args.handler), command


def test_make_targets_and_service_commands_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\S+)", README, re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    script = (ROOT / "scripts" / "services.sh").read_text()
    for sub in {line.split()[1] for line in _lines("scripts/services.sh ")}:
        assert re.search(rf"^\s*{sub}\)", script, re.MULTILINE), sub


def test_the_readme_commands_run_in_order(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'stripe-ledger.db'}")
    (tmp_path / "events.jsonl").write_bytes(
        b"\n".join(encode(charge_event(n)) for n in range(25)) + b"\n"
    )
    # These need services (see the docstring); backfill/reconcile/balance-sync need the Stripe
    # API: they run against stripe-mock and the stand-in in tests/test_backfill.py and
    # tests/test_balance_sync.py. consume-sqs needs an SQS queue: it runs against ElasticMQ in
    # tests/test_sqs_consumer.py. `dashboard` serves until stopped: tests/test_dashboard_http.py
    # runs it.
    skipped = {
        "consume",
        "consume-sqs",
        "ingest",
        "serve",
        "copy-store",
        "backfill",
        "reconcile",
        "balance-sync",
        "dashboard",
    }
    # `serve` (the README's first command) migrates at start-up; here `migrate` stands in for it.
    assert run_cli(["migrate"], env).returncode == 0
    ran = []
    for command in _lines("stripe-ledger "):
        argv = shlex.split(command)[1:]
        if argv[0] in skipped or argv[:2] == ["thin-events", "fetch"]:  # fetch: test_thin_events
            continue
        if argv[0] == "import":
            argv[1] = str(tmp_path / argv[1])
        done = run_cli(argv, env, timeout_s=300)
        assert done.returncode == 0, f"{command}\n{done.stderr.decode()[-2000:]}"
        ran.append((argv[0], done.stdout.decode()))
    names = [name for name, _ in ran]
    assert {"migrate", "import", "project", "report", "verify", "event-types"} <= set(names)
    outputs = dict(ran)
    assert "imported 25 events: 25 new, 0 already known" in outputs["import"]
    assert "[ok] journal entries balance" in outputs["verify"]
    assert "charge.dispute.funds_withdrawn" in outputs["event-types"]
    assert "thin events: 0 stored, 0 fetched" in outputs["thin-events"]


def test_the_demo_shows_the_three_reports(tmp_path: Path) -> None:
    done = run_cli(["demo"], cli_env(f"sqlite:///{tmp_path / 'unused.db'}"), timeout_s=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    for name in ("balances", "invoices", "disputes"):
        assert f"== report {name} ==" in out
    posted = re.search(r"posted (\d+) deliveries .*: (\d+) accepted, 0 failed", out)
    assert posted and posted[1] == posted[2], out  # every delivery, duplicates included
    assert " JPY" in out and "acct_" in out and "lost" in out and "void" in out
    # The balance transactions come from balance-sync against the stand-in, for both accounts.
    synced = re.search(r"balance-sync: (\d+) balance transactions .* \(2 complete\)", out)
    assert synced and int(synced[1]) > 0, out
    assert "== report balance_summary ==" in out
    assert "== report payout_reconciliation (one reconciled payout) ==" in out
    # With them the journal agrees with Stripe to the cent: every drift is 0.
    balances = out.split("== report balances ==")[1].split("rows)")[0].splitlines()[3:-1]
    drifts = [line.split()[-2:] for line in balances]
    assert len(drifts) >= 4 and all(amount in ("0", "0.00") for amount, _ in drifts), balances


def test_report_json_is_for_machines(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'l.db'}")
    (tmp_path / "e.jsonl").write_bytes(encode(charge_event(1, amount=1234)))
    for argv in (
        ["migrate"],
        ["import", str(tmp_path / "e.jsonl")],
        ["project", "--until-idle", "0"],
    ):
        assert run_cli(argv, env).returncode == 0
    rows = json.loads(run_cli(["report", "balances", "--format", "json"], env).stdout)
    assert rows == [
        {
            "account": None, "livemode": False, "currency": "usd", "captured": 1234,
            "refunded": 0, "dispute_withdrawn": 0, "dispute_reinstated": 0, "dispute_fees": 0,
            "fees": 0, "payouts": 0, "ledger_balance": 1234, "stripe_available": None,
            "stripe_pending": None, "drift": None,
        }
    ]  # fmt: skip
