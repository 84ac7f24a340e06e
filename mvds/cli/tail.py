"""`mvds tail DIR [--group G] [--since SEQ] [--follow] [--all] [--json]`: received messages
(with --all the node's own messages too, in the same sequence).

Each message has the node's local sequence number; `--since SEQ` resumes
after it, so a reader that remembers the last seq it handled never skips or
repeats a message, across restarts of the daemon or of the reader.  Works
without the daemon (reading the store) except with --follow.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
import unicodedata
from typing import Any, Iterator

from mvds.cli.common import (
    add_dir_argument,
    check_group,
    connect,
    daemon_running,
    format_time,
    group_names,
    load,
    node_dir,
    peer_names,
    print_json,
)
from mvds.cli.errors import CliError
from mvds.daemon.control_client import ControlError
from mvds.ids import INT64_MAX

RECONNECT_INTERVAL = 0.5
"""Seconds between attempts to reach a daemon that went away (--follow)."""

_BIDI_CONTROLS = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x2028, 0x2029}
"""Bidirectional overrides and line/paragraph separators: they reorder or
break what a terminal shows, like control characters do."""

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (C0, DEL, C1) and bidi
    overrides are shown as escapes (\\n, \\x1b, \\u202e), so a message cannot
    forge a tail line, move the cursor or change the terminal's title."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif unicodedata.category(ch) == "Cc" or code in _BIDI_CONTROLS:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tail", help="print received messages (one JSON object a line with --json)",
    )
    add_dir_argument(parser)
    parser.add_argument("--group", "-g", metavar="G", help="only this group")
    parser.add_argument("--since", type=int, default=0, metavar="SEQ",
                        help="only messages after this sequence number (default 0: all)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new messages")
    parser.add_argument("--all", "-a", action="store_true", dest="own",
                        help="the node's own messages too, in the same sequence (marked own)")
    parser.add_argument("--json", action="store_true",
                        help="JSON lines: seq, group, id, timestamp, body_b64, text (if UTF-8), "
                        "via (the neighbour it came from; from: deprecated) or own")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    nodedir = node_dir(args.dir)
    config = load(nodedir)
    if not 0 <= args.since <= INT64_MAX:
        raise CliError(f"--since must be between 0 and {INT64_MAX}")
    if args.group is not None:
        check_group(config, args.group)
    printer = _printer(args.json, group_names(config), peer_names(config))
    if daemon_running(nodedir):
        for message in _from_daemon(nodedir, args):
            printer(message)
        return 0
    if args.follow:
        raise CliError(
            f"--follow needs the running daemon (start it with: mvds run {nodedir.path})"
        )
    for message in _from_store(nodedir, args, config):
        printer(message)
    return 0


def _from_daemon(nodedir, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Messages from the running daemon.  With --follow, like `tail -F`: when
    the daemon goes away (a restart, an upgrade) the reader waits for it and
    resumes after the last seq it printed, so nothing is skipped or repeated."""
    since = args.since
    while True:
        fields: dict[str, Any] = {"since": since, "follow": args.follow}
        if args.own:
            fields["own"] = True
        if args.group is not None:
            fields["group"] = args.group
        subscribed = False
        try:
            with connect(nodedir, timeout=None) as client:
                for event in client.stream("subscribe", **fields):
                    subscribed = True
                    kind = event.get("event")
                    if kind == "message":
                        message = event["message"]
                        if message.get("seq") is not None:
                            since = message["seq"]
                        yield message
                    elif kind == "caught_up" and not args.follow:
                        return
        except ControlError as exc:
            # Refused (a bad request) or lost before subscribing: an error.
            if not (args.follow and subscribed):
                raise CliError(str(exc)) from None
        print(f"mvds: lost the daemon of {nodedir.path}; waiting for it to come back "
              "(Ctrl-C stops)", file=sys.stderr, flush=True)
        _wait_for_daemon(nodedir)


def _wait_for_daemon(nodedir) -> None:
    """Until the daemon answers on its control socket again."""
    while True:
        time.sleep(RECONNECT_INTERVAL)
        if not daemon_running(nodedir):
            continue
        try:
            with connect(nodedir, timeout=5.0) as client:
                client.request("ping")
            return
        except (CliError, ControlError):
            continue


def _from_store(nodedir, args: argparse.Namespace, config) -> Iterator[dict[str, Any]]:
    from mvds.daemon.delivered import DeliveredMessage
    from mvds.ids import parse_group
    from mvds.store.errors import StoreError
    from mvds.store.sqlite import SQLiteStore

    if not nodedir.db.exists():
        return
    group_id = parse_group(args.group) if args.group else None
    try:
        store = SQLiteStore(nodedir.db, readonly=True)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        cursor = args.since
        while True:
            batch = store.delivered_since(cursor, 1000, group_id, own=args.own)
            for stored in batch:
                cursor = stored.seq or cursor
                yield DeliveredMessage.from_stored(stored).to_json()
            if len(batch) < 1000:
                return
    finally:
        store.close()


def _printer(as_json: bool, groups: dict[str, str], peers: dict[str, str]):
    if as_json:
        return print_json

    def human(message: dict[str, Any]) -> None:
        group = groups.get(message["group"], message["group"][:8])
        via = message.get("via") or ""
        sender = "(own)" if message.get("own") else peers.get(via, via[:8] or "-")
        text = message.get("text")
        if text is None:
            size = len(base64.b64decode(message["body_b64"]))
            text = f"<{size} bytes>"
        else:
            text = printable(text)
        seq = message["seq"] if message["seq"] is not None else "-"
        line = f"{seq:>6}  {format_time(message['timestamp'])}  {printable(group)}  {printable(sender)}  {text}"
        print(line, flush=True)

    return human
