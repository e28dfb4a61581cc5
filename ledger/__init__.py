"""The core of stripe-ledger: the event envelope, the append-only event store and the consumer.

This package imports neither ``ingest`` nor ``projections``: both depend on it, never the reverse.
"""
