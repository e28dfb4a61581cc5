"""The event-store contract: tests written against ``ledger.store.EventStore`` only, run once per
backend (as eventsourcing's recorder tests are). A new backend passes when its ``store`` fixture
is added to ``conftest.py`` here, and nothing else changes."""
