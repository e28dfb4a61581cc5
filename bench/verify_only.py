"""The baseline server of the serve benchmark: read the body, verify the Stripe signature, 200.

Nothing else (no JSON parsing, no sink): the same signature check as ingest
(``ingest.signature.verify``) under uvicorn with the options ``stripe-ledger serve`` uses.

    python -m bench.verify_only PORT
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.common import ROOT, SECRET, Proc, free_port, wait_http
from ingest.app import UVICORN_OPTIONS
from ingest.signature import SignatureError, verify

SECRETS = (SECRET,)
TOLERANCE_S = 300


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    header = None
    for name, value in scope["headers"]:
        if name == b"stripe-signature":
            header = value.decode("latin-1")
    status, body = 200, b'{"status":"ok"}'
    if scope["method"] == "POST":
        try:
            verify(b"".join(chunks), header, SECRETS, tolerance_s=TOLERANCE_S, now_s=time.time())
        except SignatureError:
            status, body = 400, b'{"error":"signature"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def running() -> Iterator[int]:
    """This handler under uvicorn in a child process (``python -m bench.verify_only PORT``);
    yields its port."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = Proc("verify-only", [sys.executable, "-m", "bench.verify_only", str(port)], env)
    try:
        wait_http(port, "/", proc=proc)
        yield port
    finally:
        proc.stop()


def main() -> None:
    import uvicorn

    port = int(sys.argv[1])
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
