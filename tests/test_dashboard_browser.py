"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium (through
/usr/bin/chromedriver: nothing is downloaded) against a real `stripe-ledger dashboard` on a
projected demo store. Each page loads with no console error, shows the report views' figures,
and changes with its filters; a full-page screenshot of each is a test artifact
(build/test-artifacts/dashboard/, or LEDGER_TEST_ARTIFACTS) and, with
LEDGER_UPDATE_SCREENSHOTS=1, docs/dashboard/NAME.png."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.money import format_amount
from tests.support.dashboard import build_store, dashboard, rows

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("LEDGER_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
DOCS_SHOTS = ROOT / "docs" / "dashboard"
SHOT_HEIGHT_PX_MAX = 4000
PAGE_LOAD_S_MAX = 30
TABLE_JS = ("return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent.trim()));")  # fmt: skip


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'demo.db'}"
    build_store(url, open_disputes=2)
    return url


@pytest.fixture(scope="module")
def base(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("browser-log") / "dashboard.log"
    with dashboard(store_url, log) as (_process, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is missing: run `bash scripts/test-tools.sh` (make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_S_MAX)
    try:
        yield driver
    finally:
        driver.quit()


def load(browser: Any, url: str, title: str) -> None:
    """Open ``url``; its title must be ``title`` and the console must have no error."""
    browser.get_log("browser")  # forget what earlier pages said
    browser.get(url)
    assert browser.title == f"{title} · stripe-ledger", (url, browser.page_source[:300])
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], (url, errors)


def click_and_wait(browser: Any, element: Any, url_part: str) -> None:
    """Click a link or button and wait (bounded) until the browser is on the new page."""
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(browser, PAGE_LOAD_S_MAX).until(lambda d: url_part in d.current_url)
    WebDriverWait(browser, PAGE_LOAD_S_MAX).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def table(browser: Any, selector: str) -> list[list[str]]:
    return list(browser.execute_script(TABLE_JS, selector))


def screenshot(browser: Any, name: str) -> None:
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(1280, min(max(height, 600), SHOT_HEIGHT_PX_MAX))
    try:
        target = ARTIFACTS / "dashboard" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(target))
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("LEDGER_UPDATE_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_SHOTS / f"{name}.png")
    finally:
        browser.set_window_size(1280, 1000)


def scope(row: dict[str, Any]) -> str:
    return f"{row['account'] or 'platform'} · {'live' if row['livemode'] else 'test'}"


def money(row: dict[str, Any], column: str) -> str:
    return format_amount(int(row[column]), row["currency"])


def test_overview_shows_the_balances_and_the_daily_balance(
    browser: Any, base: str, store_url: str
) -> None:
    load(browser, f"{base}/", "Overview")
    expected = rows(store_url, "SELECT * FROM report_balances "
                    "ORDER BY livemode, COALESCE(account, ''), currency")  # fmt: skip
    got = table(browser, "#balances")
    assert [(r[0], r[1], r[2], r[5]) for r in got] == [
        (scope(e), e["currency"].upper(), money(e, "ledger_balance"),
         "no snapshot" if e["drift"] is None else money(e, "drift"))
        for e in expected
    ]  # fmt: skip
    for currency in {e["currency"] for e in expected}:
        chart = browser.execute_script(
            "const t = document.querySelector("
            " `table.chart-table[data-currency='${arguments[0]}']`);"
            "return [Array.from(t.tHead.rows[0].cells).slice(1).map(c => c.textContent),"
            " Array.from(t.tBodies[0].rows).pop().cells.length,"
            " Array.from(Array.from(t.tBodies[0].rows).pop().cells).slice(1)"
            "  .map(c => c.textContent)];",
            currency,
        )
        names, _cells, last = chart
        at_end = dict(zip(names, last, strict=True))
        assert at_end == {scope(e): money(e, "ledger_balance")
                          for e in expected if e["currency"] == currency}  # fmt: skip
        assert browser.find_element("css selector", f"#chart-{currency} svg polyline")
    events = table(browser, "#events")
    newest = rows(store_url, "SELECT position, type FROM report_events ORDER BY position DESC "
                  "LIMIT 20")  # fmt: skip
    assert [(r[0], r[2]) for r in events] == [(str(e["position"]), e["type"]) for e in newest]
    screenshot(browser, "overview")


def test_overview_filters_change_the_figures(browser: Any, base: str, store_url: str) -> None:
    load(browser, f"{base}/?currency=jpy", "Overview")
    assert {r[1] for r in table(browser, "#balances")} == {"JPY"}
    assert len(browser.find_elements("css selector", "figure.chart")) == 1
    load(browser, f"{base}/?mode=live", "Overview")
    assert table(browser, "#balances") == [["no balances for these filters"]]
    load(browser, f"{base}/?since=2026-11-10&until=2026-11-20", "Overview")
    period = rows(store_url, "SELECT reporting_category, COUNT(*) AS n FROM "
                  "report_balance_itemized WHERE created_utc >= 1794268800 AND created_utc < "
                  "1795132800 GROUP BY reporting_category")  # fmt: skip
    counts = Counter[str]()
    for r in table(browser, "#activity"):
        counts[r[2]] += int(r[3])
    assert counts == {p["reporting_category"]: p["n"] for p in period}
    everything = rows(store_url, "SELECT COUNT(*) AS n FROM report_balance_itemized")[0]["n"]
    assert 0 < sum(counts.values()) < everything
    # The chart of a period starts from the balance before it and ends on the day before until.
    at_until = rows(store_url, "SELECT account, livemode, currency, SUM(amount) AS amount FROM "
                    "report_journal WHERE ledger_account IN ('stripe_pending', "
                    "'stripe_available') AND posted_at < 1795132800 "
                    "GROUP BY account, livemode, currency")  # fmt: skip
    for chart in browser.find_elements("css selector", "table.chart-table"):
        currency = chart.get_attribute("data-currency")
        days = table(browser, f"table.chart-table[data-currency='{currency}']")
        assert days[0][0] == "2026-11-10" and days[-1][0] == "2026-11-19"
        names = browser.execute_script(
            "return Array.from(arguments[0].tHead.rows[0].cells).slice(1)"
            ".map(c => c.textContent)", chart)  # fmt: skip
        assert dict(zip(names, days[-1][1:], strict=True)) == {
            scope(r): money(r, "amount") for r in at_until if r["currency"] == currency
        }
    # The form, without any script: pick a currency, apply, the URL carries the filter.
    browser.get(f"{base}/")
    browser.find_element("name", "currency").send_keys("usd")
    click_and_wait(browser, browser.find_element("css selector", "form.filters button"),
                   "currency=usd")  # fmt: skip
    assert {r[1] for r in table(browser, "#balances")} == {"USD"}


def test_payouts_reconcile_or_say_not_synced(browser: Any, base: str, store_url: str) -> None:
    load(browser, f"{base}/payouts", "Payouts")
    expected = rows(store_url, "SELECT * FROM report_payout_reconciliation "
                    "ORDER BY arrival_date DESC, payout_id LIMIT 50")  # fmt: skip
    got = table(browser, "#payouts")
    assert expected and [(r[0], r[3], r[4]) for r in got] == [
        (e["payout_id"], e["status"], money(e, "amount")) for e in expected
    ]
    for row, e in zip(got, expected, strict=True):
        if e["bt_count"] == 0:
            assert row[8] == ("not synced" if e["automatic"] else
                              "manual payout: no transactions")  # fmt: skip
        else:
            assert row[8] == ("yes" if e["reconciled"] else row[8]) and row[8]
    screenshot(browser, "payouts")
    currency = expected[0]["currency"]
    load(browser, f"{base}/payouts?currency={currency}&mode=test", "Payouts")
    filtered = table(browser, "#payouts")
    assert [r[0] for r in filtered] == [e["payout_id"] for e in expected
                                        if e["currency"] == currency]  # fmt: skip
    connected = next(e["account"] for e in expected if e["account"])
    for account, shown in (("platform", "platform · test"), (connected, f"{connected} · test")):
        load(browser, f"{base}/payouts?account={account}", "Payouts")
        got = table(browser, "#payouts")
        assert {r[1] for r in got} == {shown}
        assert len(got) == len([e for e in expected if scope(e) == shown])


def test_journal_postings_and_a_trial_balance_that_balances(
    browser: Any, base: str, store_url: str
) -> None:
    load(browser, f"{base}/journal", "Journal")
    totals = rows(store_url, "SELECT account, livemode, currency, SUM(debits) AS debits, "
                  "SUM(credits) AS credits FROM report_trial_balance "
                  "GROUP BY account, livemode, currency")  # fmt: skip
    got = {(r[0], r[1]): (r[2], r[3], r[4]) for r in table(browser, "#trial-totals")}
    assert got == {(scope(t), t["currency"].upper()): (money(t, "debits"), money(t, "credits"),
                                                       "yes") for t in totals}  # fmt: skip
    first_page = table(browser, "#postings")
    assert len(first_page) == 50
    screenshot(browser, "journal")
    click_and_wait(browser, browser.find_element("css selector", "#postings-pager a[rel=next]"),
                   "page=2")  # fmt: skip
    assert table(browser, "#postings") != first_page
    load(browser, f"{base}/journal?kind=refund&ledger_account=refunds", "Journal")
    refunds = table(browser, "#postings")
    assert refunds and {(r[2], r[3]) for r in refunds} == {("refund", "refunds")}
    load(browser, f"{base}/journal?until=2026-11-08", "Journal")
    assert {(r[0], r[1]): tuple(r[2:]) for r in table(browser, "#trial-totals")} != got


def test_invoices_funnel_aging_and_one_history(browser: Any, base: str, store_url: str) -> None:
    load(browser, f"{base}/invoices", "Invoices")
    funnel = rows(store_url, "SELECT currency, status, COUNT(*) AS n FROM report_invoices "
                  "GROUP BY currency, status")  # fmt: skip
    got = {(r[0], r[1]): int(r[2]) for r in table(browser, "#funnel")}
    assert got == {((f["currency"] or "").upper(), f["status"]): f["n"] for f in funnel}
    aging = rows(store_url, "SELECT COUNT(*) AS n FROM report_invoice_aging")[0]["n"]
    assert len([r for r in table(browser, "#aging") if len(r) == 5]) == aging
    link = browser.find_element("css selector", "#invoices tbody a")
    invoice_id = link.text
    click_and_wait(browser, link, f"invoice={invoice_id}")
    history = rows(store_url, "SELECT status FROM report_invoice_history WHERE invoice_id = "
                   f"'{invoice_id}' ORDER BY reached_at, status")  # fmt: skip
    assert [r[0] for r in table(browser, "#history")] == [h["status"] for h in history]
    assert len(history) >= 2
    screenshot(browser, "invoices")
    load(browser, f"{base}/invoices?currency=jpy", "Invoices")
    assert {r[0] for r in table(browser, "#funnel")} <= {"JPY"}


def test_disputes_by_deadline_with_won_and_lost(browser: Any, base: str, store_url: str) -> None:
    load(browser, f"{base}/disputes", "Disputes")
    open_rows = rows(store_url, "SELECT dispute_id, hours_left FROM report_open_disputes "
                     "ORDER BY evidence_due_by, dispute_id")  # fmt: skip
    got = table(browser, "#open-disputes")
    assert len(open_rows) == 2 and [r[0] for r in got] == [o["dispute_id"] for o in open_rows]
    assert all(r[6].endswith("left") or r[6].startswith("overdue by") for r in got)
    totals = rows(store_url, "SELECT currency, status, COUNT(*) AS n, SUM(dispute_fees) AS fees "
                  "FROM report_disputes GROUP BY currency, status")  # fmt: skip
    assert {(r[0], r[1]): (int(r[2]), r[6]) for r in table(browser, "#dispute-totals")} == {
        (t["currency"].upper(), t["status"]): (t["n"], money(t, "fees")) for t in totals
    }
    statuses = {t["status"] for t in totals}
    assert "under_review" in statuses and statuses & {"won", "lost"}
    screenshot(browser, "disputes")
    load(browser, f"{base}/disputes?mode=live", "Disputes")
    assert table(browser, "#open-disputes") == [["no open disputes"]]


def test_pipeline_shows_the_head_and_checkpoints(browser: Any, base: str, store_url: str) -> None:
    load(browser, f"{base}/pipeline", "Pipeline")
    head = rows(store_url, "SELECT MAX(position) AS p FROM report_events")[0]["p"]
    assert table(browser, "#store")[0][0] == str(head)
    checkpoints = table(browser, "#checkpoints")
    assert [(r[0], r[2], r[3]) for r in checkpoints] == [
        (name, str(head), "0") for name in ("disputes", "invoices", "journal")
    ]
    assert browser.find_element("id", "dead-letter-count").text == "0"
    screenshot(browser, "pipeline")


def test_the_console_check_sees_errors(browser: Any, base: str) -> None:
    """The check the other tests rely on: a page that fails to load is a console error. Last
    in this file, so that its error cannot reach another page's check."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    browser.get(f"{base}/nope")
    WebDriverWait(browser, PAGE_LOAD_S_MAX).until(
        lambda d: any(entry["level"] == "SEVERE" for entry in d.get_log("browser"))
    )
