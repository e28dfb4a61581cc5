"""The ``stripe-ledger`` command line: wires ingest, ledger and projections together."""
