"""Projections: deterministic folds of the event store (journal/balances, invoices, disputes).

Public API: ``projections.registry.PROJECTIONS`` (name -> Projection with ``tables``,
``create_tables``, ``apply``), ``projections.worker.run`` and ``projections.upcast.upcast``.
"""
