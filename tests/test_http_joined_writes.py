"""ingest.http_server.JoinedWrites: the writes of one loop step leave as one, in order, none lost.

A recording transport stands in for the socket (the HTTP tests run the real server over real
sockets: tests/test_http_bounds.py, tests/test_ingest_http.py); here what is checked is what
reaches the transport and when.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.http_server import JoinedWrites


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


def _run(steps: Any) -> Recording:
    async def main() -> Recording:
        recording = Recording()
        joined = JoinedWrites(recording, asyncio.get_running_loop())  # type: ignore[arg-type]
        await steps(joined, recording)
        return recording

    return asyncio.run(main())


def test_a_head_and_body_written_in_one_step_leave_as_one_write_at_the_next_turn() -> None:
    async def steps(joined: JoinedWrites, recording: Recording) -> None:
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(b"")
        joined.write(b'{"ok":true}')
        assert recording.writes == []  # held until the step ends
        await asyncio.sleep(0)
        assert recording.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']

    _run(steps)


def test_flush_sends_at_once_and_the_scheduled_turn_then_sends_nothing_twice() -> None:
    async def steps(joined: JoinedWrites, recording: Recording) -> None:
        joined.write(b"a")
        joined.write(b"b")
        joined.flush()
        assert recording.writes == [b"ab"]
        await asyncio.sleep(0)
        joined.write(b"c")  # a later step: its own write
        await asyncio.sleep(0)
        assert recording.writes == [b"ab", b"c"]

    _run(steps)


def test_close_sends_what_is_pending_first_and_nothing_is_written_after_it() -> None:
    async def steps(joined: JoinedWrites, recording: Recording) -> None:
        joined.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        joined.close()
        assert recording.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
        assert recording.closed and joined.is_closing()
        joined.write(b"late")  # dropped: the socket is closing
        await asyncio.sleep(0)
        assert recording.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]

    _run(steps)


def test_other_transport_calls_reach_the_transport() -> None:
    async def steps(joined: JoinedWrites, recording: Recording) -> None:
        assert joined.get_extra_info("peername") == ("127.0.0.1", 1234)

    _run(steps)
