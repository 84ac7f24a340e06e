"""`mvds peer add|remove|list DIR ...`: trust peers and choose what to share.

With the daemon running the change goes through its control API and takes
effect at once; otherwise DIR/mvds.toml is edited and the next `mvds run`
picks it up.
"""

from __future__ import annotations

import argparse
import dataclasses

from mvds.cli.common import add_dir_argument, change_config, edit, group_arg, load, node_dir, print_json
from mvds.daemon import admin
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
    config = load(nodedir)
    fields = dict(plaintext=args.plaintext, own_id=Identity.load(nodedir.key).peer_id)
    # Checked here even with the daemon running: the same error, before any request.
    edit(config, admin.add_peer, args.name, args.peer_id, args.address, args.group, **fields)
    request = {"op": "add_peer", "name": args.name, "peer_id": parse_peer_id(args.peer_id).hex(),
               "address": args.address, "groups": args.group, "plaintext": args.plaintext}
    change_config(nodedir, request, admin.add_peer, args.name, args.peer_id, args.address,
                  args.group, **fields)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    change_config(node_dir(args.dir), {"op": "remove_peer", "name": args.name},
                  admin.remove_peer, args.name)
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
