"""`mvds send DIR GROUP [TEXT | --file F | --lines] [--ephemeral]`.

Prints each message id (hex) once the append is durable in the daemon's
store.  Without TEXT, --file or --lines, the whole of stdin is one message.
"""

from __future__ import annotations

import argparse
import base64
import sys

from mvds.cli.common import add_dir_argument, call, check_group, connect, load, node_dir, resolve_file
from mvds.cli.errors import CliError

LINES_PER_REQUEST = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="append a message to a group; prints its id",
        description="Append a message to GROUP through the running daemon and print the "
        "message id once it is stored durably.",
        # Options may follow TEXT or precede it: `send DIR GROUP --ephemeral TEXT`.
        intermixed=True,
    )
    add_dir_argument(parser)
    parser.add_argument("group", metavar="GROUP", help="group name or 64 hex characters")
    # TEXT stays out of the mutually exclusive group: argparse cannot parse
    # intermixed with a positional in one; run() checks the exclusion.
    parser.add_argument("text", metavar="TEXT", nargs="?", help="the message text")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", "-f", metavar="F", help="send the contents of file F (any bytes)")
    source.add_argument("--lines", action="store_true",
                        help="send each line of stdin as one message, printing one id per line")
    parser.add_argument("--ephemeral", action="store_true",
                        help="send once, no ACK, not stored, not retransmitted")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.text is not None and (args.file is not None or args.lines):
        raise CliError("give the message as TEXT, --file F or --lines, not several")
    nodedir = node_dir(args.dir)
    check_group(load(nodedir), args.group)
    if args.lines:
        if args.ephemeral:
            raise CliError("--lines and --ephemeral cannot be combined")
        return _send_lines(nodedir, args.group)
    if args.text is not None:
        body = args.text.encode("utf-8")
    elif args.file is not None:
        try:
            body = resolve_file(args.file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    else:
        body = sys.stdin.buffer.read()
    with connect(nodedir) as client:
        reply = call(client, "append", group=args.group,
                     body_b64=base64.b64encode(body).decode("ascii"), ephemeral=args.ephemeral)
    print(reply["message_id"])
    return 0


def _send_lines(nodedir, group: str) -> int:
    with connect(nodedir) as client:
        batch: list[str] = []
        for raw in sys.stdin.buffer:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            batch.append(base64.b64encode(line).decode("ascii"))
            if len(batch) >= LINES_PER_REQUEST:
                _flush(client, group, batch)
                batch = []
        if batch:
            _flush(client, group, batch)
    return 0


def _flush(client, group: str, batch: list[str]) -> None:
    reply = call(client, "append_many", group=group, bodies_b64=batch)
    sys.stdout.write("".join(f"{mid}\n" for mid in reply["message_ids"]))
    sys.stdout.flush()
