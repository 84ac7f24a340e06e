"""`mvds invite DIR` and `mvds accept DIR CODE`: pairing in one command per side.

Both talk to the running daemon (the inviter must keep running until the
code is used; the acceptor's daemon makes the handshake), so both say so
when it is not running.  mvds/daemon/pairing.py has the code format and
docs/PROTOCOL.md "Pairing" how the secret enters the handshake.
"""

from __future__ import annotations

import argparse
import re
import sys

from mvds.cli.common import add_dir_argument, call, connect, node_dir, print_json
from mvds.cli.errors import CliError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``500ms``, ``7d`` -> seconds (argparse type)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: a number with ms, s, m, h or d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def register(subparsers: argparse._SubParsersAction) -> None:
    invite = subparsers.add_parser(
        "invite", help="print a single-use code that pairs another node with this one "
        "(the daemon must be running until the code is used)")
    add_dir_argument(invite)
    invite.add_argument("--group", action="append", default=[], metavar="GROUP",
                        help="a group to share with the node that accepts (repeat for more)")
    invite.add_argument("--expires", type=duration, default=600.0, metavar="DURATION",
                        help="how long the code is valid: 90s, 10m, 2h (default 10m, at most 7d)")
    invite.add_argument("--name", metavar="NAME",
                        help="what this node calls the peer that accepts "
                        "(default: peer- and its id's first 8 hex digits)")
    invite.add_argument("--address", action="append", metavar="HOST:PORT", dest="addresses",
                        help="where the other node reaches this one (repeat for more; default: "
                        "the listen address, or every interface address for 0.0.0.0)")
    invite.add_argument("--json", action="store_true", help="machine-readable output")
    invite.set_defaults(func=run_invite)

    accept = subparsers.add_parser(
        "accept", help="pair with the node that made an invite code (the daemon must be running)")
    add_dir_argument(accept)
    accept.add_argument("code", metavar="CODE", help="the code `mvds invite` printed")
    accept.add_argument("--name", metavar="NAME",
                        help="what this node calls the inviter "
                        "(default: peer- and its id's first 8 hex digits)")
    accept.add_argument("--timeout", type=duration, default=30.0, metavar="DURATION",
                        help="how long to wait for the inviter's answer (default 30s)")
    accept.add_argument("--json", action="store_true", help="machine-readable output")
    accept.set_defaults(func=run_accept)


def run_invite(args: argparse.Namespace) -> int:
    if not 0 < args.expires <= 7 * 86400:
        raise CliError("--expires must be more than 0 and at most 7d")
    nodedir = node_dir(args.dir)
    fields: dict = {"groups": args.group, "expires": args.expires}
    if args.name is not None:
        fields["name"] = args.name
    if args.addresses:
        fields["addresses"] = args.addresses
    with _connect(nodedir, "invite") as client:
        code = call(client, "invite", **fields)["code"]
    if args.json:
        print_json({"code": code, "expires_in_s": args.expires})
        return 0
    print(code, flush=True)
    print(f"single use, valid for {_human(args.expires)}; on the other node run: "
          f"mvds accept DIR {code[:12]}... (keep this daemon running until then)", file=sys.stderr)
    return 0


def run_accept(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 3600:
        raise CliError("--timeout must be more than 0 and at most 1h")
    nodedir = node_dir(args.dir)
    fields: dict = {"code": args.code, "timeout": args.timeout}
    if args.name is not None:
        fields["name"] = args.name
    with _connect(nodedir, "accept", timeout=args.timeout + 15) as client:
        result = call(client, "accept", **fields)
    result.pop("ok", None)
    result.pop("id", None)
    if args.json:
        print_json(result)
        return 0
    groups = ", ".join(result["groups"]) or "no groups yet"
    print(f"paired with {result['peer']} ({result['peer_id'][:16]}...), sharing {groups}")
    return 0


def _connect(nodedir, what: str, timeout: float = 30.0):
    from mvds.daemon.nodedir import is_running

    if not (is_running(nodedir) and nodedir.socket.exists()):
        raise CliError(f"mvds {what} needs the running daemon: start it with: mvds run {nodedir.path}")
    return connect(nodedir, timeout=timeout)


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
