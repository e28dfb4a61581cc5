"""The one place that knows the backends: a ``store`` of each, on a scratch database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.database import create_engine, migrate
from ledger.store import EventStore, open_event_store

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """An event store on an empty, migrated database of each backend (dropped afterwards)."""
    url = str(request.getfixturevalue(f"{request.param}_url"))
    engine = create_engine(url)
    migrate(engine)
    yield open_event_store(engine)
    engine.dispose()
