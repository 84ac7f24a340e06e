"""The ``mvds`` command line: one module per command, registered here.

Every command module exposes ``register(subparsers)`` which adds its parser
and sets ``func``.  Errors a user can cause raise :class:`CliError`; ``main``
prints them as one line on stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from mvds.cli.errors import CliError

COMMANDS: dict[str, str] = {
    "init": "init",
    "id": "id",
    "peer": "peer",
    "share": "groups",
    "unshare": "groups",
    "join": "groups",
    "run": "run",
    "send": "send",
    "tail": "tail",
    "status": "status",
    "demo": "demo",
    "sim": "sim",
}
"""Command name -> module under mvds.cli that registers it, in help order."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported
    (a command line starts faster than one that imports every command)."""
    parser = argparse.ArgumentParser(
        prog="mvds",
        description="Minimum Viable Data Synchronization: peer daemon, tools and simulator.",
    )
    from mvds import __version__

    parser.add_argument("--version", action="version", version=f"mvds {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMANDS:
        modules = [COMMANDS[command]]
    else:
        modules = list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        module = importlib.import_module(f"mvds.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"mvds: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mvds tail | head` closes the pipe: not an error worth a traceback.
        return 0
    except Exception as exc:  # a store failure, a bug, or an error we did not foresee
        from mvds.store.errors import StoreError  # here: most commands never touch the store

        if isinstance(exc, StoreError):  # its message is the one line (file and cause)
            print(f"mvds: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("MVDS_DEBUG"):
            raise
        print(
            f"mvds: unexpected error: {type(exc).__name__}: {exc} "
            "(set MVDS_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
