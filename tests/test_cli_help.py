"""Every option and argument of every `mvds` command says what it does in
its --help (a user should not need the docs to read `mvds run --help`)."""

from __future__ import annotations

import argparse

from mvds.cli import build_parser


def walk(parser: argparse.ArgumentParser, prog: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prog} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prog, action


def test_every_option_has_help_text():
    missing = [
        f"{prog} {'/'.join(action.option_strings) or action.dest}"
        for prog, action in walk(build_parser(), "mvds")
        if action.help is not argparse.SUPPRESS and not (action.help or "").strip()
    ]
    assert missing == []
