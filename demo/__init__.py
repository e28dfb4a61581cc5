"""The demo: its Stripe history (demo/history/), the client that signs and POSTs it
(demo/client.py), the stand-in Stripe API (demo/standin.py) and its balance-sync
(demo/balance.py), below the command that runs them (cli/demo_cmd.py). The history, the client
and the stand-in use the standard library only: bench and tests import them freely."""
