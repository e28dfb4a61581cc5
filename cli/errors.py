"""The one error path of every command: ``stripe-ledger CMD: error: <one line>``, exit 2."""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot run as asked (bad input, missing file, bad flag value); the message
    says what and how to fix it, on one line. ``cli/main.py`` prints it and exits 2."""


def one_line(text: str) -> str:
    """The first non-empty line of ``text`` (drivers' messages run over several lines)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
