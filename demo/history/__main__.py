"""``python -m demo.history``: write a deterministic demo Stripe event history as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from demo.history.builder import encode, generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.history",
        description="Write a deterministic demo Stripe event history as JSON lines.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=400, help="about this many distinct events")
    parser.add_argument("--out", help="JSON lines file (default: stdout); '-' for stdout")
    parser.add_argument(
        "--distinct", action="store_true", help="the distinct events by created, not deliveries"
    )
    args = parser.parse_args(argv)
    history = generate(args.seed, args.events)
    rows = history.events if args.distinct else history.deliveries
    if args.out and args.out != "-":
        with open(args.out, "wb") as handle:
            for event in rows:
                handle.write(encode(event) + b"\n")
    else:
        out = sys.stdout.buffer
        for event in rows:
            out.write(encode(event) + b"\n")
    print(json.dumps(history.summary(), ensure_ascii=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
