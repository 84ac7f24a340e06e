"""`mvds peer add|remove|list DIR ...`: trust peers and choose what to share.

With the daemon running the change goes through its control API and takes
effect at once; otherwise DIR/mvds.toml is edited and the next `mvds run`
picks it up.
"""

from __future__ import annotations

import argparse
import dataclasses

from mvds.cli.common import (
    add_dir_argument,
    call,
    connect,
    daemon_running,
    group_arg,
    load,
    node_dir,
    print_json,
)
from mvds.cli.errors import CliError
from mvds.daemon.config import ConfigError, PeerConfig, parse_address, save_config
from mvds.ids import parse_peer_id
from mvds.secure import Identity


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("peer", help="add, remove or list trusted peers")
    commands = parser.add_subparsers(dest="peer_command", metavar="ACTION", required=True)

    add = commands.add_parser(
        "add", help="trust a peer and share groups with it",
        description="Trust a peer (by its peer id) at HOST:PORT and share the given groups "
        "with it. Adding a name again replaces that peer's entry.",
    )
    add_dir_argument(add)
    add.add_argument("name", metavar="NAME", help="a local name for the peer")
    add.add_argument("peer_id", metavar="PEER_ID", help="the peer's id (64 hex characters, from `mvds id`)")
    add.add_argument("address", metavar="HOST:PORT", help="where the peer listens (UDP)")
    add.add_argument("--group", "-g", action="append", default=[], metavar="G",
                     help="share group G with this peer (repeatable; a name or 64 hex characters)")
    add.add_argument("--plaintext", action="store_true",
                     help="interop testing only: talk to this peer WITHOUT encryption")
    add.set_defaults(func=run_add)

    remove = commands.add_parser("remove", help="stop trusting a peer")
    add_dir_argument(remove)
    remove.add_argument("name", metavar="NAME", help="the peer's local name (see: mvds peer list DIR)")
    remove.set_defaults(func=run_remove)

    listing = commands.add_parser("list", help="list the configured peers")
    add_dir_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per peer")
    listing.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    for group in args.group:
        group_arg(group)
    nodedir = node_dir(args.dir)
    try:
        peer_id = parse_peer_id(args.peer_id)
        parse_address(args.address)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if peer_id == Identity.load(nodedir.key).peer_id:
        raise CliError("that is this node's own peer id")
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            call(client, "add_peer", name=args.name, peer_id=peer_id.hex(), address=args.address,
                 groups=args.group, plaintext=args.plaintext)
        return 0
    config = load(nodedir)
    entry = PeerConfig(args.name, peer_id.hex(), args.address, list(args.group), args.plaintext)
    peers = [p for p in config.peers if p.name != args.name] + [entry]
    try:
        save_config(nodedir.config, dataclasses.replace(config, peers=peers))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return 0


def run_remove(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    if daemon_running(nodedir):
        with connect(nodedir) as client:
            call(client, "remove_peer", name=args.name)
        return 0
    config = load(nodedir)
    if config.peer_named(args.name) is None:
        raise CliError(f"no peer named {args.name!r} in {nodedir.config}")
    save_config(nodedir.config, dataclasses.replace(
        config, peers=[p for p in config.peers if p.name != args.name]))
    return 0


def run_list(args: argparse.Namespace) -> int:
    config = load(node_dir(args.dir))
    for peer in config.peers:
        if args.json:
            print_json(dataclasses.asdict(peer))
        else:
            groups = ",".join(peer.groups) or "-"
            extra = "  PLAINTEXT" if peer.plaintext else ""
            print(f"{peer.name}  {peer.id}  {peer.address}  groups={groups}{extra}")
    return 0
