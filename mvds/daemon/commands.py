"""Requests to a running node, queued for its next step (sans-IO).

The embedding API and the control API never touch the engine or the store
directly: they queue a :class:`Command` and wait for its ``done`` event.
The node's step carries out every queued command inside its one store
transaction and answers them only after the commit, so an append returns
once it is durable and a refused or rolled-back request changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from mvds.daemon.config import NodeConfig, format_address
from mvds.ids import ID_SIZE, parse_group


class NodeError(Exception):
    """A request the node cannot carry out; the message says why, in one line."""


def group_arg(group: str) -> bytes:
    """A GROUP argument's id; a user's bad group (empty) is a NodeError, not
    the ValueError of mvds.ids, so every caller (embedding, control API)
    reports it in one line instead of as an internal error."""
    if not isinstance(group, str):
        raise NodeError(f"a group is a name or 64 hex characters, not {type(group).__name__}")
    try:
        return parse_group(group)
    except ValueError as exc:
        raise NodeError(str(exc)) from None



def address_arg(address: str | tuple[str, int] | Any) -> str:
    """``"HOST:PORT"`` from a string or a ``(host, port[, ...])`` tuple (IPv6
    hosts bracketed: ``"[::1]:7000"``); anything else is a NodeError."""
    if isinstance(address, str):
        return address
    if isinstance(address, (tuple, list)) and len(address) >= 2 \
            and isinstance(address[0], str) and isinstance(address[1], int):
        return format_address(address[0], address[1])
    raise NodeError(f"an address is 'HOST:PORT' or a (host, port) tuple, not {address!r}")


def known_group(group: str | bytes, is_member: Callable[[bytes], bool]) -> bytes:
    """A group's id from its name, 64-hex id or raw 32 bytes; it must be
    one the node is a member of (``is_member``, the store's answer)."""
    group_id = group if isinstance(group, bytes) else group_arg(group)
    if len(group_id) != ID_SIZE:
        raise NodeError(f"a group id is {ID_SIZE} bytes")
    if not is_member(group_id):
        label = group if isinstance(group, str) else group_id.hex()
        raise NodeError(f"unknown group {label!r}: join it or share it with a peer first")
    return group_id


def checked_body(body: Any, max_body: int) -> bytes:
    """A message body as bytes, refused (NodeError) above ``max_body``."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("a message body is bytes")
    if len(body) > max_body:
        raise NodeError(
            f"message body is {len(body)} bytes; the maximum is {max_body} (setting max_body)"
        )
    return bytes(body)

@dataclass
class Command:
    """Work queued for the next step, answered after its commit."""

    apply: Callable[[float], Any] | None = None
    """Work on the engine inside the step's transaction (appends); given the time."""
    edit: Callable[[NodeConfig], NodeConfig] | None = None
    """A pure config edit (mvds.daemon.admin): config in, new config out."""
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """Answer with an error (the step's changes were rolled back)."""
        self.error = error
        self.done.set()
