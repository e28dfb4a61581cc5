"""The read-only dashboard: server-rendered pages over the ``report_*`` views only.

``app.create_app(engine, token)`` is the ASGI app; ``db.open_engine(url)`` opens the database
read-only; ``filters`` parses (and refuses) query strings; ``queries`` reads the views, every
list paged and every read bounded; ``charts`` draws SVG on the server, so no page needs
JavaScript. ``cli/dashboard_cmd.py`` only wires it to ``stripe-ledger dashboard``.
"""
