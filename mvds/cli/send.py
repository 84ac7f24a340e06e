"""`mvds send DIR GROUP [TEXT | --file F | --stdin | --lines] [--ephemeral]`.

Prints each message id (hex) once the append is durable in the daemon's
store.  stdin is read only when asked (--stdin: all of it is one message;
--lines: one message a line), so a forgotten TEXT is an error instead of a
command that silently waits for input.  Bodies are checked against the
node's ``max_body`` before anything is read whole or sent, and an empty body
is refused unless --allow-empty says it is meant.
"""

from __future__ import annotations

import argparse
import base64
import os
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
    source.add_argument("--stdin", action="store_true",
                        help="send all of stdin as one message (any bytes)")
    source.add_argument("--lines", action="store_true",
                        help="send each line of stdin as one message, printing one id per line")
    parser.add_argument("--allow-empty", action="store_true",
                        help="allow an empty message body (refused by default: usually a mistake)")
    parser.add_argument("--ephemeral", action="store_true",
                        help="send once, no ACK, not stored, not retransmitted")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.text is not None and (args.file is not None or args.lines or args.stdin):
        raise CliError("give the message as TEXT, --file F, --stdin or --lines, not several")
    if args.text is None and args.file is None and not (args.lines or args.stdin):
        raise CliError("no message: give TEXT, --file F, --stdin or --lines")
    nodedir = node_dir(args.dir)
    config = load(nodedir)
    check_group(config, args.group)
    limit = config.max_body
    if args.lines:
        if args.ephemeral:
            raise CliError("--lines and --ephemeral cannot be combined")
        return _send_lines(nodedir, args.group, limit, args.allow_empty)
    if args.text is not None:
        body = args.text.encode("utf-8")
    elif args.file is not None:
        body = _read_file(args.file, limit)
    else:
        # One byte more than the limit is enough to know it is too big.
        body = sys.stdin.buffer.read(limit + 1)
    _check_body(body, limit, args.allow_empty, "the message")
    with connect(nodedir) as client:
        reply = call(client, "append", group=args.group,
                     body_b64=base64.b64encode(body).decode("ascii"), ephemeral=args.ephemeral)
    print(reply["message_id"])
    return 0


def _check_body(body: bytes, limit: int, allow_empty: bool, what: str) -> None:
    if len(body) > limit:
        # Input read with a bound of limit + 1 bytes: its true size is unknown.
        raise CliError(f"{what} is longer than the maximum of {limit} bytes (setting max_body)")
    if not body and not allow_empty:
        raise CliError(f"{what} is empty (pass --allow-empty if that is meant)")


def _read_file(name: str, limit: int) -> bytes:
    """The file's bytes, its size checked first: a 300 MB file is refused
    without reading it (a message travels whole in one datagram)."""
    path = resolve_file(name)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise CliError(
                    f"{name} is {size} bytes; the maximum message body is {limit} "
                    "(setting max_body)"
                )
            return f.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None


def _send_lines(nodedir, group: str, limit: int, allow_empty: bool) -> int:
    """Each line one message, in batches; a line that cannot be sent stops
    the run after everything before it was stored (and its id printed), and
    the error names the line and says how many were stored."""
    stored = 0
    with connect(nodedir) as client:
        batch: list[str] = []
        # readline with a bound: an over-long line is known without holding it.
        number = 0
        while True:
            raw = sys.stdin.buffer.readline(limit + 2)
            if not raw:
                break
            number += 1
            line = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                _check_body(line, limit, allow_empty, f"line {number}")
            except CliError as exc:
                if batch:
                    stored += _flush(client, group, batch)
                raise CliError(
                    f"{exc}; {stored} line{'s' if stored != 1 else ''} before it "
                    f"{'were' if stored != 1 else 'was'} stored, nothing after it"
                ) from None
            batch.append(base64.b64encode(line).decode("ascii"))
            if len(batch) >= LINES_PER_REQUEST:
                stored += _flush(client, group, batch)
                batch = []
        if batch:
            stored += _flush(client, group, batch)
    return 0


def _flush(client, group: str, batch: list[str]) -> int:
    reply = call(client, "append_many", group=group, bodies_b64=batch)
    sys.stdout.write("".join(f"{mid}\n" for mid in reply["message_ids"]))
    sys.stdout.flush()
    return len(reply["message_ids"])
