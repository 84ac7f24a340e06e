"""`mvds share|unshare DIR GROUP PEER`, `mvds join|leave DIR GROUP` and
`mvds groups DIR [--json]`."""

from __future__ import annotations

import argparse

from mvds.cli.common import (
    add_dir_argument, call, change_config, connect, daemon_running, group_arg, load, node_dir,
    print_json,
)
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

    leave = subparsers.add_parser(
        "leave", help="leave a group: unshare it from every peer and drop it from the config "
        "(its stored messages stay readable)"
    )
    add_dir_argument(leave)
    leave.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    leave.set_defaults(func=run_leave)

    groups = subparsers.add_parser("groups", help="list the node's groups, their ids and peers")
    add_dir_argument(groups)
    groups.add_argument("--json", action="store_true", help="machine-readable output")
    groups.set_defaults(func=run_groups)


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


def run_leave(args: argparse.Namespace) -> int:
    group_arg(args.group)
    change_config(node_dir(args.dir), {"op": "leave", "group": args.group}, admin.leave, args.group)
    return 0


def run_groups(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            groups = call(client, "groups")["groups"]
    else:
        groups = admin.group_list(load(nodedir))
    if args.json:
        print_json({"groups": groups})
        return 0
    if not groups:
        print("no groups (join one with: mvds join DIR GROUP, or share one with a peer)")
        return 0
    width = max(len(g["group"]) for g in groups)
    for g in groups:
        peers = ", ".join(g["peers"]) or "(no peers)"
        print(f"{g['group']:<{width}}  {g['group_id']}  {peers}")
    return 0
