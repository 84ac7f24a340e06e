"""The ``mvds`` command line: one module per command, registered here.

Every command module exposes ``register(subparsers)`` which adds its parser
and sets ``func``.  Errors a user can cause raise :class:`CliError`; ``main``
prints them as one line on stderr and exits non-zero, never a traceback.
Usage errors (a missing argument, a bad option value) are one line too:
``mvds send: error: ... (see mvds send --help)``, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, NoReturn, Sequence

from mvds.cli.errors import CliError
from mvds.excgroups import leaves

COMMANDS: dict[str, str] = {
    "init": "init",
    "id": "id",
    "peer": "peer",
    "invite": "pair",
    "accept": "pair",
    "share": "groups",
    "unshare": "groups",
    "join": "groups",
    "leave": "groups",
    "groups": "groups",
    "run": "run",
    "send": "send",
    "tail": "tail",
    "status": "status",
    "doctor": "doctor",
    "demo": "demo",
    "sim": "sim",
    "testbed": "testbed",
    "completion": "completion",
}
"""Command name -> module under mvds.cli that registers it, in help order."""


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's rules: a usage error is ONE line on stderr
    (bad input of any kind gets one clear line), and a parser made
    with ``intermixed=True`` accepts options after an optional positional
    (``mvds send DIR GROUP --ephemeral TEXT``), which plain argparse rejects
    because it fills ``TEXT`` with nothing as soon as it meets an option.

    Sub-parsers are made with the class of their parent, so every command
    gets these rules.
    """

    def __init__(self, *args: Any, intermixed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._intermixing = False
        # The innermost parser that ran sets this last, so main() can blame
        # unrecognized arguments on the command they were given to.
        self.set_defaults(_parser=self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self.intermixed and not self._intermixing:
            # parse_known_intermixed_args calls back into parse_known_args.
            self._intermixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported
    (a command line starts faster than one that imports every command)."""
    parser = Parser(
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
    args, extras = parser.parse_known_args(argv)
    if extras:
        innermost = getattr(args, "_parser", parser)
        innermost.error(f"unrecognized arguments: {' '.join(extras)}")
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
    except BaseExceptionGroup as group:
        # trio wraps a Ctrl-C that lands inside a nursery in a group.
        rest = group.split(KeyboardInterrupt)[1]
        if rest is None:
            return 130
        if os.environ.get("MVDS_DEBUG"):
            raise
        first = leaves(rest)[0]
        print(
            f"mvds: unexpected error: {type(first).__name__}: {first} "
            "(set MVDS_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:
        # `mvds tail | head` closes the pipe: not an error worth a traceback.
        return 0
    except OSError as exc:
        # Permissions, a read-only file system, a full disk: the user's to
        # fix, so one plain line naming the file, not a bug report.
        if os.environ.get("MVDS_DEBUG"):
            raise
        print(f"mvds: {describe_os_error(exc)}", file=sys.stderr)
        return 1
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


def describe_os_error(exc: OSError) -> str:
    """``file: reason`` for an OSError (``reason`` alone without a file)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
