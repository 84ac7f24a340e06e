"""Waiting for acknowledgements (``send --wait-ack``, :meth:`Node.wait_acked`).

The node's part is only the waiting (a trio event with a timeout); which
peers a wait wants, whose ACKs have come and how many ACKs each peer sent
this run are kept here, without I/O or a clock of its own (the time is an
argument), so they are tested without sockets.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Callable, Iterable

import trio

from mvds.daemon.commands import NodeError
from mvds.daemon.config import PeerConfig
from mvds.ids import short


@dataclasses.dataclass(eq=False)  # compared by identity: two waits for one message differ
class AckWaiter:
    """One :meth:`Node.wait_acked` call: whose ACK it wants, how many."""

    wanted: set[bytes]
    need: int
    acked: set[bytes] = dataclasses.field(default_factory=set)
    done: trio.Event = dataclasses.field(default_factory=trio.Event)

    def satisfied(self) -> bool:
        return len(self.acked) >= self.need

    def ack(self, peer: bytes) -> None:
        if peer in self.wanted:
            self.acked.add(peer)
            if self.satisfied():
                self.done.set()


def wanted_peers(
    shared: set[bytes],
    peers: int | Iterable[str] | None,
    peer_named: Callable[[str], PeerConfig | None],
) -> tuple[set[bytes], int]:
    """Whose ACKs a wait wants and how many of them, from the peers the
    message's group is shared with: ``peers`` None means all of them, an
    int that many, a list those peers by name.  A request that cannot be
    met is a :class:`NodeError` at once, not a wait that times out."""
    if isinstance(peers, int) and not isinstance(peers, bool):
        if peers < 1:
            raise NodeError("wait for at least 1 peer")
        if peers > len(shared):
            raise NodeError(
                f"the group is shared with {len(shared)} peer{'s' if len(shared) != 1 else ''}; "
                f"{peers} cannot acknowledge")
        return shared, peers
    if peers is None:
        if not shared:
            raise NodeError("the group is shared with no peer")
        return shared, len(shared)
    wanted = set()
    for name in peers:
        entry = peer_named(name)
        if entry is None:
            raise NodeError(f"unknown peer {name!r}")
        if entry.peer_id not in shared:
            raise NodeError(f"the message's group is not shared with {name!r}")
        wanted.add(entry.peer_id)
    return wanted, len(wanted)


class AckBook:
    """The waits in progress per message, and the ACKs each peer sent this
    run (``acknowledged`` and ``last_ack_s`` in ``mvds status``)."""

    def __init__(self) -> None:
        self.waiters: dict[bytes, list[AckWaiter]] = {}
        self.acked: Counter[bytes] = Counter()
        self.last_ack: dict[bytes, float] = {}

    def add(self, message_id: bytes, waiter: AckWaiter) -> None:
        self.waiters.setdefault(message_id, []).append(waiter)

    def remove(self, message_id: bytes, waiter: AckWaiter) -> None:
        """The wait is over (answered, timed out or cancelled)."""
        waiters = self.waiters.get(message_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self.waiters.pop(message_id, None)

    def acknowledged(self, message_id: bytes, peer: bytes, now: float) -> None:
        """A peer acknowledged a message (the engine's MessageAcknowledged)."""
        self.acked[peer] += 1
        self.last_ack[peer] = now
        for waiter in self.waiters.get(message_id, ()):
            waiter.ack(peer)

    def last_ack_s(self, peer: bytes, now: float) -> float | None:
        """Seconds since the peer's last ACK this run (None: none yet)."""
        last = self.last_ack.get(peer)
        return None if last is None else round(now - last, 1)

    async def wait(
        self,
        message_id: bytes,
        waiter: AckWaiter,
        timeout: float | None,
        name: Callable[[bytes], str],
    ) -> list[str]:
        """Wait (up to ``timeout`` seconds; None: no limit) until the waiter
        is satisfied; the names of the peers that acknowledged, or a
        :class:`NodeError` naming who is missing."""
        if not waiter.satisfied():
            self.add(message_id, waiter)
            try:
                with trio.move_on_after(math.inf if timeout is None else timeout):
                    await waiter.done.wait()
            finally:
                self.remove(message_id, waiter)
        if not waiter.satisfied():
            need = waiter.need
            missing = sorted(name(p) for p in waiter.wanted - waiter.acked)
            raise NodeError(
                f"message {short(message_id)}: {len(waiter.acked)} of {need} "
                f"acknowledgement{'s' if need != 1 else ''} within {timeout:g} s "
                f"(waiting for {', '.join(missing)})")
        return sorted(name(p) for p in waiter.acked)
