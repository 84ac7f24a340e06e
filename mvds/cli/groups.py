"""`mvds share|unshare DIR GROUP PEER` and `mvds join DIR GROUP`."""

from __future__ import annotations

import argparse

from mvds.cli.common import add_dir_argument, call, connect, daemon_running, group_arg, load, node_dir
from mvds.cli.errors import CliError
from mvds.daemon.config import save_config
from mvds.ids import parse_group


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
    group_id = group_arg(args.group)
    nodedir = node_dir(args.dir)
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            call(client, "share" if args.add else "unshare", group=args.group, peer=args.peer)
        return 0
    config = load(nodedir)
    peer = config.peer_named(args.peer)
    if peer is None:
        raise CliError(f"no peer named {args.peer!r} (add it with: mvds peer add)")
    if args.add:
        if all(parse_group(g) != group_id for g in peer.groups):
            peer.groups.append(args.group)
    else:
        if all(parse_group(g) != group_id for g in peer.groups):
            raise CliError(f"group {args.group!r} is not shared with {args.peer!r}")
        peer.groups = [g for g in peer.groups if parse_group(g) != group_id]
    save_config(nodedir.config, config)
    return 0


def run_join(args: argparse.Namespace) -> int:
    group_arg(args.group)
    nodedir = node_dir(args.dir)
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            call(client, "join", group=args.group)
        return 0
    config = load(nodedir)
    if args.group not in config.groups:
        config.groups.append(args.group)
        save_config(nodedir.config, config)
    return 0
