"""`mvds completion bash|zsh`: a shell completion script for `mvds`.

Generated from the same argument parser the commands use (by shtab), so it
can never fall out of step with the commands and options; nothing is
written by hand.  Install for one user with, e.g.::

    mvds completion bash > ~/.local/share/bash-completion/completions/mvds
    mvds completion zsh > "${fpath[1]}/_mvds"
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL, generated from mvds's own argument "
        "parser. bash: mvds completion bash > ~/.local/share/bash-completion/completions/mvds; "
        "zsh: mvds completion zsh > \"${fpath[1]}/_mvds\".",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from mvds.cli import build_parser

    # Every command's parser (build_parser(None) imports them all).
    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
