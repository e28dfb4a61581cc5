"""The one error path of every command: ``stripe-ledger CMD: error: <one line>``, exit 2."""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot run as asked (bad input, missing file, bad flag value); the message
    says what and how to fix it, on one line. ``cli/run.py`` prints it and exits 2.

    ``details``: the message's later lines are printed too (import's list of bad lines)."""

    def __init__(self, message: str, *, details: bool = False) -> None:
        super().__init__(message)
        self.details = details


def one_line(text: str) -> str:
    """The first non-empty line of ``text`` (drivers' messages run over several lines)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
