"""Running one parsed subcommand: settings, logging, the handler, and every error's one line.

Below every command module and ``cli/main.py`` (which only builds the parser): a command module
that runs on its own (``python -m cli.backfill_cmds ...``, see ``standalone``) uses this without
importing ``cli.main``, so no two modules of cli/ import each other (tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from cli.errors import CommandError, one_line


def run_handler(args: argparse.Namespace) -> int:
    """Settings from the environment, logging, the subcommand; configuration errors -> exit 2.

    The one place that does this: handlers take ``(args, settings)`` and do neither again."""
    # Imported here, not at start-up: SQLAlchemy alone is a third of `--help`'s old 1.7 s.
    import sqlalchemy as sa

    from ledger.database import DatabaseError, first_line
    from ledger.logs import configure
    from ledger.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        configure(settings.log_format, settings.log_level)
        return int(args.handler(args, settings))
    except CommandError as error:
        return fail(args.command, str(error), details=error.details)
    except (SettingsError, DatabaseError) as error:
        return fail(args.command, str(error))
    except sa.exc.OperationalError as error:  # the database went away, or never answered
        return fail(args.command, f"cannot reach the database: {first_line(error)}")
    except sa.exc.DBAPIError as error:  # e.g. a role without the privilege, a read-only file
        return fail(args.command, f"the database refused: {first_line(error)}")
    except KeyboardInterrupt:
        print(f"stripe-ledger {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stripe-ledger report ... | head`: the reader left; say nothing
        quiet_stdout()
        return 128 + signal.SIGPIPE


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (a test's capture): nothing left to flush
    finally:
        os.close(devnull)


def fail(command: str, message: str, details: bool = False) -> int:
    """Every command's error line (stderr) and exit status: configuration and input errors.

    ``details``: the lines after the first are printed too (import's list of bad lines)."""
    print(f"stripe-ledger {command}: error: {one_line(message)}", file=sys.stderr)
    if details:
        for line in message.strip().splitlines()[1:]:
            print(line, file=sys.stderr)
    return 2


def standalone(
    register_commands: Callable[[argparse._SubParsersAction], None],  # type: ignore[type-arg]
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` with only ``register_commands``' subcommands and run the one chosen (a
    command module's ``main``: these commands without cli/main.py, with the same settings,
    logging and error handling)."""
    parser = argparse.ArgumentParser(prog="stripe-ledger")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    register_commands(subparsers)
    return run_handler(parser.parse_args(argv))
