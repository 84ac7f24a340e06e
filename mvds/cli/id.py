"""`mvds id DIR`: print the node's peer id (its X25519 public key, hex)."""

from __future__ import annotations

import argparse

from mvds.cli.common import add_dir_argument, node_dir
from mvds.cli.errors import CliError
from mvds.secure import Identity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("id", help="print the node's peer id (hex public key)")
    add_dir_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    try:
        identity = Identity.load(nodedir.key)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {nodedir.key}: {exc}") from None
    print(identity.peer_id_hex)
    return 0
