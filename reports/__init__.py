"""Reports: stable SQL views over the projections (``report_*``), and their rendering.

The views are SQL files in ``reports/sql/``, one per report, created on PostgreSQL and SQLite
alike. They read the projections' ``proj_*`` views, which always point at the live generation.
"""
