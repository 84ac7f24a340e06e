"""`mvds share|unshare DIR GROUP PEER` and `mvds join DIR GROUP`."""

from __future__ import annotations

import argparse

from mvds.cli.common import add_dir_argument, change_config, group_arg, node_dir
from mvds.daemon import admin


def register(subparsers: argparse._SubParsersAction) -> None:
    share = subparsers.add_parser("share", help="share a group with a configured peer")
    add_dir_argument(share)
    share.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    share.add_argument("peer", metavar="PEER", help="the peer's name (see: mvds peer list DIR)")
    share.set_defaults(func=run_share, add=True)

    unshare = subparsers.add_parser("unshare", help="stop sharing a group with a peer")
    add_dir_argument(unshare)
    unshare.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    unshare.add_argument("peer", metavar="PEER", help="the peer's name (see: mvds peer list DIR)")
    unshare.set_defaults(func=run_share, add=False)

    join = subparsers.add_parser(
        "join", help="make the node a member of a group without sharing it yet"
    )
    add_dir_argument(join)
    join.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    join.set_defaults(func=run_join)


def run_share(args: argparse.Namespace) -> int:
    group_arg(args.group)
    change_config(
        node_dir(args.dir), {"op": "share" if args.add else "unshare", "group": args.group,
                             "peer": args.peer},
        admin.share if args.add else admin.unshare, args.group, args.peer,
    )
    return 0


def run_join(args: argparse.Namespace) -> int:
    group_arg(args.group)
    change_config(node_dir(args.dir), {"op": "join", "group": args.group}, admin.join, args.group)
    return 0
