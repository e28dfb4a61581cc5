"""Run-time pieces of the demo: the stand-in Stripe API (demo/standin.py)."""
