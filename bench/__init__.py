"""Benchmarks of stripe-ledger (issue 7): ``make bench`` runs ``python -m bench.run``."""
