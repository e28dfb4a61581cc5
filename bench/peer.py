"""The end-to-end baseline: @supabase/stripe-sync-engine, installed from npm by this module.

The package is a library (``StripeSync.processWebhook(payload, signature)``: verify, then upsert
the event's object into its ``stripe.*`` tables). A minimal Node HTTP server, written into the
cache directory at run time (no code of the package is copied), answers each POST after
``processWebhook`` resolved, like its own fastify server does.

It never calls the Stripe API: it gets a fake ``sk_test_`` key, ``autoExpandLists`` and
``backfillRelatedEntities`` off and no ``revalidateObjectsViaStripeApi`` (the only paths that
fetch), and its Stripe client is wrapped so that any property but ``webhooks`` throws and is
counted (``api_calls`` in the result must be 0). Event types its ``processEvent`` does not handle
(it throws "Unhandled webhook event": ``balance.available`` and ``payout.*`` in the demo history)
are left out of its run; the list is read from the installed package. Its migrations are run
from a copy in which ``ALTER FUNCTION ... OWNER TO postgres`` (a Supabase role) reads
``OWNER TO current_user``: the benchmark's database user is not a member of ``postgres``.

Each concurrency level runs on a fresh database (the package's migrations hard-code the
``stripe`` schema) with a pool of that many connections; the best events/s is the baseline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.common import (
    CACHE_DIR,
    SECRET,
    Proc,
    Scale,
    free_port,
    payloads,
    percentile,
    scratch_database,
    wait_http,
)

PACKAGE = "@supabase/stripe-sync-engine"
VERSION = os.environ.get("BENCH_PEER_VERSION", "0.48.5")
PEER_DIR = CACHE_DIR / "peer"

SERVER_JS = r"""
// CommonJS: the package's ESM build resolves its migrations with __dirname, undefined there.
const http = require('node:http');
const { StripeSync } = require('@supabase/stripe-sync-engine');
const { migrate } = require('pg-node-migrations');
const { Client } = require('pg');

async function main() {
const [port, databaseUrl, poolMax, migrations] = process.argv.slice(2);
// The package's own migrations, run the way its runMigrations() runs them, from the copy that
// bench/peer.py adapted (ALTER ... OWNER TO postgres -> current_user: Supabase has that role).
const db = new Client({ connectionString: databaseUrl });
await db.connect();
await db.query('CREATE SCHEMA IF NOT EXISTS stripe;');
await migrate({ client: db }, migrations, { schemaName: 'stripe', tableName: 'migrations' });
await db.end();
const sync = new StripeSync({
  poolConfig: { connectionString: databaseUrl, max: Number(poolMax) },
  stripeSecretKey: 'sk_test_bench_not_a_real_key_never_used',
  stripeWebhookSecret: process.env.STRIPE_WEBHOOK_SECRET,
  stripeApiVersion: '2020-08-27',
  autoExpandLists: false,
  backfillRelatedEntities: false,
});
const stats = { processed: 0, errors: 0, api_calls: 0, last_error: null };
const client = sync.stripe;
sync.stripe = new Proxy(client, {
  get(target, prop) {
    if (prop === 'webhooks') return target.webhooks;
    stats.api_calls += 1;
    throw new Error(`Stripe API access refused in the benchmark: ${String(prop)}`);
  },
});
function reply(res, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}
http.createServer((req, res) => {
  if (req.method === 'GET') {
    return reply(res, 200, req.url === '/stats' ? stats : { status: 'ready' });
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', async () => {
    try {
      await sync.processWebhook(Buffer.concat(chunks), req.headers['stripe-signature']);
      stats.processed += 1;
      reply(res, 200, { received: true });
    } catch (error) {
      stats.errors += 1;
      stats.last_error = String(error && error.message);
      reply(res, 400, { error: stats.last_error });
    }
  });
}).listen(Number(port), '127.0.0.1');
}
main().catch((error) => { console.error(error); process.exit(1); });
"""


class PeerUnavailable(RuntimeError):
    """Node, npm or the package cannot be had here: the reason, for the results."""


def install() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        raise PeerUnavailable("node and npm are not installed")
    package_dir = PEER_DIR / "node_modules" / PACKAGE
    manifest = package_dir / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != VERSION:
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        (PEER_DIR / "package.json").write_text('{"name":"bench-peer","private":true}\n')
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"{PACKAGE}@{VERSION}", "stripe"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise PeerUnavailable(f"npm install {PACKAGE}@{VERSION} failed: {done.stderr[-500:]}")
    (PEER_DIR / "server.cjs").write_text(SERVER_JS)
    adapted = PEER_DIR / "migrations-adapted"
    shutil.rmtree(adapted, ignore_errors=True)
    adapted.mkdir()
    for source in sorted((package_dir / "dist" / "migrations").glob("*.sql")):
        text = re.sub(r"(?i)owner to postgres", "owner to current_user", source.read_text())
        (adapted / source.name).write_text(text)
    return package_dir


def handled_types(package_dir: Path) -> set[str]:
    """The event types ``processEvent`` handles, read from the installed package."""
    source = (package_dir / "dist" / "index.js").read_text()
    start = source.index("async processEvent(")
    body = source[start : source.index("\n  getSyncTimestamp(", start)]
    return set(re.findall(r'case "([a-z_.]+)":', body))


def _stats(port: int) -> dict[str, Any]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/stats")
    return dict(json.loads(connection.getresponse().read()))


def run_once(admin_url: str, rows: list[bytes], concurrency: int) -> dict[str, Any]:
    with scratch_database(admin_url, f"peer{concurrency}") as url:
        port = free_port()
        env = dict(os.environ, STRIPE_WEBHOOK_SECRET=SECRET)
        node_url = url.replace("postgresql+psycopg://", "postgresql://")
        proc = Proc(
            f"peer-c{concurrency}",
            [
                "node",
                str(PEER_DIR / "server.cjs"),
                str(port),
                node_url,
                str(concurrency),
                str(PEER_DIR / "migrations-adapted"),
            ],
            env,
        )
        try:
            wait_http(port, "/", timeout_s=120, proc=proc)
            proc.check()
            result = load.post(port, rows, secret=SECRET, concurrency=concurrency)
            stats = _stats(port)
            memory = proc.memory()
        finally:
            proc.stop()
    return {
        "concurrency": concurrency,
        "events": len(rows),
        "seconds": round(result.elapsed_s, 3),
        "events_s": result.ok / result.elapsed_s,
        "ok": result.ok,
        "statuses": result.statuses,
        "p50_ms": round(percentile(result.latencies_s, 0.5) * 1000, 2),
        "p99_ms": round(percentile(result.latencies_s, 0.99) * 1000, 2),
        "server": stats,
        "rss": memory,
    }


def run(scale: Scale, services: dict[str, str]) -> dict[str, Any]:
    package_dir = install()
    types = handled_types(package_dir)
    every = payloads(scale.peer_events, seed=7)
    rows = [row for row in every if json.loads(row)["type"] in types]
    left_out = sorted({json.loads(row)["type"] for row in every} - types)
    runs = []
    for concurrency in scale.peer_concurrencies:
        runs.append(run_once(services["LEDGER_DATABASE_URL"], rows, concurrency))
        time.sleep(1)
    best = max(runs, key=lambda run: run["events_s"])
    if any(run["server"]["api_calls"] for run in runs):
        raise PeerUnavailable("the peer tried to call the Stripe API")
    return {
        "package": f"{PACKAGE}@{VERSION}",
        "events_offered": len(every),
        "events_run": len(rows),
        "types_left_out": left_out,
        "runs": runs,
        "best_concurrency": best["concurrency"],
        "best_events_s": best["events_s"],
    }
