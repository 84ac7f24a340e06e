"""`mvds init DIR [--listen HOST:PORT]`: a new node, its identity and config."""

from __future__ import annotations

import argparse
import sys

from mvds.cli.errors import CliError
from mvds.daemon.setup import SetupError, init_node_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", help="create a node: identity + DIR/mvds.toml; prints the peer id",
        description="Create a node directory with a new X25519 identity (DIR/identity.key, "
        "mode 0600) and a config file (DIR/mvds.toml). Prints the node's peer id.",
    )
    parser.add_argument("dir", metavar="DIR", help="the new node's data directory (new or empty)")
    parser.add_argument(
        "--listen", metavar="HOST:PORT",
        help="UDP address the daemon listens on (default: 127.0.0.1 and a free port)",
    )
    parser.add_argument(
        "--in-existing", action="store_true",
        help="create the node in a directory that already holds other files (a container "
        "volume prepared before the first start); refused by default",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        nodedir, identity = init_node_dir(args.dir, args.listen, in_existing=args.in_existing)
    except SetupError as exc:
        raise CliError(str(exc)) from None
    print(identity.peer_id_hex)
    print(f"created {nodedir.path} (config: {nodedir.config})", file=sys.stderr)
    return 0
