"""The dashboard over plain HTTP: a real `stripe-ledger dashboard` process on a read-only
SQLite file and as the PostgreSQL reporting role; read-only, token off loopback, hostile query
strings refused with 400 and no SQL in sight."""

from __future__ import annotations

import base64
import signal
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn

from reports.dashboard import db
from reports.dashboard.app import create_app
from reports.dashboard.db import open_engine
from tests.support import ingest as web
from tests.support.dashboard import build_store, dashboard, execute, file_digest
from tests.support.kafka_util import cli_env, run_cli
from tests.support.reliability import Worker, free_port, wait_until

PAGES = ("/", "/payouts", "/journal", "/invoices", "/disputes", "/pipeline")
TOKEN = "t0ken-" + "x" * 20
LEAKS = (b"select", b"sqlite", b"syntax", b"traceback", b"psycopg", b"report_", b"error:")


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard") / "demo.db"
    build_store(f"sqlite:///{path}")
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # r--r--r--
    return path


@pytest.fixture(scope="module")
def served(demo_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("dashboard-log") / "dashboard.log"
    with dashboard(f"sqlite:///{demo_file}", log) as (_process, port):
        yield port


def test_every_page_answers_from_a_read_only_file_and_leaves_it_untouched(
    demo_file: Path, served: int
) -> None:
    before = file_digest(demo_file)
    for path in PAGES:
        status, headers, body = web.request(served, "GET", path)
        assert status == 200, (path, body[:300])
        assert headers["content-type"].startswith("text/html")
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none'
        assert b"<script" not in body  # and nothing loaded from elsewhere (the SVG namespace
        assert b"http://" not in body.replace(b'"http://www.w3.org/2000/svg"', b"")  # is a name)
        assert b"<table" in body
    assert web.request(served, "HEAD", "/payouts")[0] == 200
    assert file_digest(demo_file) == before
    assert not Path(f"{demo_file}-wal").exists() or Path(f"{demo_file}-wal").stat().st_size == 0
    engine = open_engine(f"sqlite:///{demo_file}")
    with pytest.raises(sa.exc.OperationalError, match="readonly|read-only"):
        with engine.connect() as connection:
            connection.exec_driver_sql("DELETE FROM projection_state")
    engine.dispose()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_no_route_writes(served: int, method: str) -> None:
    for path in (*PAGES, "/static/style.css", "/nope", "/journal/1"):
        status, headers, _ = web.request(served, method, path, b"x=1")
        assert status == 405, (method, path)
        assert headers["allow"] == "GET, HEAD"


HOSTILE = [
    "account=%27%20OR%201%3D1--",
    "account=acct_1%3BDROP%20TABLE%20events",
    "currency=usd%27--",
    "currency=usdd",
    "mode=both",
    "page=0",
    "page=-1",
    "page=99999",
    "page=1e3",
    "since=2026-02-30",
    "since=2026-11-05&until=2026-11-01",
    "since=1900-01-01",
    "until=tomorrow",
    "nope=1",
    "account=platform&account=acct_1",
    "account=%ff%fe",
    "account=%00",
    "kind=charge",  # a Journal filter on another page
    "x" * 3000,
    "&".join(f"a{i}=1" for i in range(40)),
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_query_strings_get_400_and_no_sql(served: int, query: str) -> None:
    status, _headers, body = web.request(served, "GET", f"/?{query}")
    assert status == 400, (query, body)
    assert body.startswith(b"bad query: ") and body.count(b"\n") == 1
    assert not any(leak in body.lower().removeprefix(b"bad query: ") for leak in LEAKS[:5])


def test_page_specific_filters_are_checked_too(served: int) -> None:
    assert web.request(served, "GET", "/journal?kind=charge&ledger_account=revenue")[0] == 200
    assert web.request(served, "GET", "/journal?kind=Charge'--")[0] == 400
    assert web.request(served, "GET", "/invoices?invoice=in_1%27%20OR%201=1")[0] == 400
    assert web.request(served, "GET", "/invoices?invoice=in_unknown")[0] == 200
    assert web.request(served, "GET", "/nope")[0] == 404


def test_off_loopback_every_page_needs_the_token(demo_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{demo_file}"
    refused = run_cli(["dashboard", "--host", "0.0.0.0", "--port", "0"], cli_env(url))
    assert refused.returncode == 2
    assert b"needs LEDGER_DASHBOARD_TOKEN" in refused.stderr
    short = run_cli(["dashboard", "--port", "0"], cli_env(url, LEDGER_DASHBOARD_TOKEN="short"))
    assert short.returncode == 2 and b"at least 16 characters" in short.stderr
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    wrong = base64.b64encode(b"anyone:" + TOKEN.encode()[:-1] + b"y").decode()
    with dashboard(url, tmp_path / "d.log", host="0.0.0.0", LEDGER_DASHBOARD_TOKEN=TOKEN) as (
        _process, port,
    ):  # fmt: skip
        for path in (*PAGES, "/static/style.css", "/?x=1"):
            status, headers, body = web.request(port, "GET", path)
            assert status == 401, path
            assert headers["www-authenticate"].startswith("Basic")
            assert TOKEN.encode() not in body
        for header in (f"Bearer {TOKEN[:-1]}", f"Basic {wrong}", "Basic !!!", TOKEN, "Bearer"):
            assert web.request(port, "GET", "/", headers={"Authorization": header})[0] == 401
        for header in (f"Bearer {TOKEN}", f"Basic {basic}"):
            assert web.request(port, "GET", "/", headers={"Authorization": header})[0] == 200
        assert web.request(port, "GET", "/healthz")[0] == 200
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert web.request(port, "POST", "/", headers=authorized)[0] == 405
    assert TOKEN not in (tmp_path / "d.log").read_text()


def test_a_store_without_report_views_gets_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    execute(f"sqlite:///{path}", "CREATE TABLE t (x INTEGER)")
    with dashboard(f"sqlite:///{path}", tmp_path / "d.log") as (_process, port):
        status, _headers, body = web.request(port, "GET", "/")
    assert status == 503 and body.count(b"\n") == 1 and b"stripe-ledger migrate" in body
    assert not any(leak in body.lower() for leak in LEAKS[:3])
    missing = run_cli(["dashboard", "--port", "0"], cli_env(f"sqlite:///{tmp_path / 'no.db'}"))
    assert missing.returncode == 2 and b"no SQLite database" in missing.stderr


@pytest.mark.postgres
def test_the_reporting_role_can_run_the_dashboard(postgres_url: str, tmp_path: Path) -> None:
    build_store(postgres_url)
    analyst = f"analyst_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE ROLE {analyst} LOGIN PASSWORD 'pw' IN ROLE ledger_reporting"
        )
    url = sa.make_url(postgres_url).set(username=analyst, password="pw")
    try:
        with dashboard(url.render_as_string(hide_password=False), tmp_path / "d.log") as (
            _process, port,
        ):  # fmt: skip
            for path in PAGES:
                status, _headers, body = web.request(port, "GET", path)
                assert status == 200, (path, body[:300])
            assert b"USD" in web.request(port, "GET", "/")[2]
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP ROLE {analyst}")
        admin.dispose()


def test_demo_dashboard_serves_the_demo_store_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    argv = ["demo", "--events", "60", "--dashboard", "--dashboard-port", str(port)]
    demo = Worker(argv, cli_env(f"sqlite:///{tmp_path / 'unused.db'}"), tmp_path / "demo.log")
    try:
        assert web.wait_ready(port, alive=demo.alive), (tmp_path / "demo.log").read_text()[-2000:]
        status, _headers, body = web.request(port, "GET", "/")
        assert status == 200 and b"ledger balance" in body
        log = (tmp_path / "demo.log").read_text()
        assert f"dashboard: http://127.0.0.1:{port}/" in log and "dashboard   # then open" in log
        demo.signal(signal.SIGINT)
        wait_until(lambda: not demo.alive(), "demo --dashboard to stop", timeout_s=30)
        assert demo.wait(5) in (0, 130)
    finally:
        demo.kill()


def test_what_producers_sent_is_escaped_and_raw_bytes_never_shown(tmp_path: Path) -> None:
    """A dead letter's reason can quote what a producer sent: it is text on the page, never
    markup, and the raw bytes are not shown at all."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    build_store(url, events=60)
    execute(
        url,
        "INSERT INTO dead_letters (topic, partition, \"offset\", raw, error, received_at) "
        "VALUES ('stripe.events', 0, 7, x'3c736563726574', "
        "'not JSON: <script>alert(1)</script>', '2026-12-01 00:00:00')",
        "INSERT INTO kafka_offsets (topic, partition, next_offset, updated_at) VALUES "
        "('stripe.events', 1, 4242, '2026-12-01 00:00:00'), "
        "('stripe.events', 0, 1717, '2026-12-01 00:00:00')",
        "INSERT INTO projection_failures (name, generation, position, event_id, error, "
        "failed_at_ms) VALUES ('journal', 1, 5, 'evt_poison', 'OverflowError: too big', 0)",
    )
    with dashboard(url, tmp_path / "d.log") as (_process, port):
        status, _headers, body = web.request(port, "GET", "/pipeline")
    assert status == 200
    assert b"<script>" not in body and b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert b"<secret" not in body and b"&lt;secret" not in body
    assert b'id="dead-letter-count">1<' in body
    assert b'id="not-projected-count">1<' in body and b"evt_poison" in body
    offsets = body[body.index(b'id="offsets"'):]
    assert offsets.index(b">1717<") < offsets.index(b">4242<")  # partition 0 first
    assert b"2026-12-01 00:00:00 UTC" in offsets


@pytest.mark.postgres
def test_a_page_over_the_statement_timeout_says_so_in_one_line(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report view slower than the timeout (one made slow on purpose) gets 503 and a line
    saying what to do, not a SQL error; the other pages keep answering."""
    build_store(postgres_url, events=60)
    execute(
        postgres_url,
        "CREATE OR REPLACE VIEW report_store_position AS SELECT position, event_id, created, "
        "received_at FROM events, (SELECT pg_sleep(3)) AS slow "
        "WHERE position = (SELECT MAX(position) FROM events)",
    )
    monkeypatch.setattr(db, "STATEMENT_TIMEOUT_MS", 300)
    port = free_port()
    engine = db.open_engine(postgres_url)
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert web.wait_ready(port, alive=thread.is_alive)
        status, _headers, body = web.request(port, "GET", "/pipeline")
        assert status == 503, body
        assert body == (b"this page took longer than 0.3 s: narrow the filters "
                        b"(account, currency, dates)\n")
        assert web.request(port, "GET", "/disputes")[0] == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


def test_each_payout_links_to_its_entry_in_the_books(tmp_path: Path) -> None:
    """Issue 18's link: a payout's row opens its exported entry (Beancount, default mapping),
    the same text `stripe-ledger export` writes for that payout."""
    import re

    from demo.balance import sync_in_process
    from demo.history import generate
    from ledger.database import create_engine
    from ledger.database import migrate as migrate_store
    from ledger.envelope import event_from_dict
    from ledger.store import Incoming, open_event_store, utc_now
    from projections import worker
    from reports import export
    from reports.read_side import prepare_read_side

    url = f"sqlite:///{tmp_path / 'books.db'}"
    engine = create_engine(url)
    migrate_store(engine)
    prepare_read_side(engine)
    store = open_event_store(engine)
    history = generate(seed=7, events=400)
    store.append([Incoming(event_from_dict(e), "import", utc_now()) for e in history.deliveries])
    sync_in_process(history, store)
    worker.run(store, until_idle_s=0)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    with dashboard(url, tmp_path / "d.log") as (_process, port):
        status, _headers, body = web.request(port, "GET", "/payouts")
        assert status == 200
        link = rb'href="(/books/payout/(po_\w+)\?account=platform&amp;mode=test)"'
        links = re.findall(link, body)
        assert links, body[:500]
        href, payout_id = links[0]
        status, _headers, entry = web.request(port, "GET", href.decode().replace("&amp;", "&"))
        assert status == 200, entry
        beancount = export.export(engine, "beancount", "payout")[""]
        assert f"Stripe payout {payout_id.decode()}".encode() in entry
        assert entry.decode().strip().splitlines()[0] in beancount  # the same entry
        assert web.request(port, "GET", "/books/payout/x;DROP")[0] in (400, 404)
        assert web.request(port, "GET", "/books/payout/po_nope?mode=test")[0] == 404
    engine.dispose()
