"""The ``mvds`` command line: one module per command, registered here.

Every command module exposes ``register(subparsers)`` which adds its parser
and sets ``func``.  Errors a user can cause raise :class:`CliError`; ``main``
prints them as one line on stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from mvds.cli.errors import CliError

COMMAND_MODULES: list[str] = ["sim"]
"""Modules under mvds.cli that provide commands, in help order."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvds",
        description="Minimum Viable Data Synchronization: peer daemon, tools and simulator.",
    )
    from mvds import __version__

    parser.add_argument("--version", action="version", version=f"mvds {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"mvds.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
