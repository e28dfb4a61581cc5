"""The rebuild's leases: one row per projection being rebuilt (``projection_leases``).

A lease excludes two rebuilds of one projection: both would fill and swap in the same new
generation. It is renewed with every batch the rebuild commits, and expires ``LEASE_MS`` after
the last renewal, so a killed rebuild (which never releases it) blocks the next one only that
long; the next rebuild drops its half-built tables. A rebuild whose lease expired and was taken
over stops at its next renewal (``RebuildBusy``) rather than swap over the other one's work.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable

import sqlalchemy as sa

from ledger.database import WRITE
from projections import registry

LEASE_MS = 60_000

leases = registry.projection_leases  # defined with the other bookkeeping tables


class RebuildBusy(RuntimeError):
    """Another rebuild of the same projection holds the lease."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def lease_holder() -> str:
    """Who holds a lease: this host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def acquire_lease(engine: sa.Engine, name: str, holder: str) -> None:
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        now = _now_ms()
        connection.execute(
            sa.delete(leases).where(leases.c.name == name, leases.c.expires_at_ms < now)
        )
        current = connection.execute(sa.select(leases).where(leases.c.name == name)).first()
        if current is not None and current.holder != holder:
            raise RebuildBusy(
                f"a rebuild of {name!r} is already running ({current.holder}); "
                f"its lease expires within {LEASE_MS // 1000} s of its last progress"
            )
        if current is None:
            connection.execute(
                sa.insert(leases).values(name=name, holder=holder, expires_at_ms=now + LEASE_MS)
            )


def renew_lease(connection: sa.Connection, names: Iterable[str], holder: str) -> None:
    """Extend ``holder``'s leases of ``names`` (one statement: one round trip per batch)."""
    wanted = sorted(set(names))
    renewed = connection.execute(
        sa.update(leases)
        .where(leases.c.name.in_(wanted), leases.c.holder == holder)
        .values(expires_at_ms=_now_ms() + LEASE_MS)
    )
    if renewed.rowcount != len(wanted):
        lost = ", ".join(repr(name) for name in wanted)
        raise RebuildBusy(f"a rebuild lease of {lost} was lost (expired and taken over)")


def release_lease(engine: sa.Engine, name: str, holder: str) -> None:
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        connection.execute(
            sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder)
        )
