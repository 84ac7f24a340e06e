"""Readers of a node's delivered messages: one bounded channel each.

Durable messages are never queued: a subscriber reads them from the store
by seq (``delivered_since``), so a slow reader holds nothing but its cursor
and nothing durable is ever dropped.  Ephemeral messages are never stored,
so they are pushed into each subscriber's own trio memory channel of
``buffer`` messages; when a subscriber does not keep up, what does not fit
is dropped and counted (``ephemeral_dropped`` in status) instead of growing
the daemon's memory without bound.  No sockets, no clock: the node calls
:meth:`Subscriptions.publish` and :meth:`Subscriptions.notify` after each
committed step.
"""

from __future__ import annotations

from collections import Counter
from typing import AsyncIterator

import trio

from mvds.daemon.delivered import DeliveredMessage
from mvds.store.base import Store

SUBSCRIBER_BUFFER = 1024
"""Ephemeral messages waiting for one subscriber before more are dropped."""

BATCH = 512
"""Most messages in one batch read from the store."""


class Subscriptions:
    """The node's subscribers and the "something was delivered" signal."""

    def __init__(self, counters: Counter[str], buffer: int = SUBSCRIBER_BUFFER) -> None:
        self.buffer = buffer
        self._counters = counters
        self._senders: dict[trio.MemorySendChannel[DeliveredMessage], bytes | None] = {}
        self._delivered = trio.Event()

    def publish(self, message: DeliveredMessage) -> None:
        """Hand an ephemeral message to every subscriber of its group that
        has room; count one drop for each that has none."""
        for sender, group_id in self._senders.items():
            if group_id is not None and message.group_id != group_id:
                continue
            try:
                sender.send_nowait(message)
            except trio.WouldBlock:
                self._counters["ephemeral_dropped"] += 1

    def notify(self) -> None:
        """Wake every subscriber: new messages were delivered."""
        self._delivered.set()
        self._delivered = trio.Event()

    async def batches(
        self,
        store: Store,
        since: int,
        group_id: bytes | None,
        follow: bool,
        *,
        own: bool = False,
        names: dict[bytes, str] | None = None,
    ) -> AsyncIterator[list[DeliveredMessage]]:
        """Stored messages with ``seq > since`` a batch at a time (received
        ones; with ``own`` the node's own appends too, in the same sequence),
        then the ephemeral ones waiting, then (``follow``) new ones as they
        come.  ``names`` maps group ids to the names put on the messages."""
        cursor = since
        sender, receiver = trio.open_memory_channel[DeliveredMessage](self.buffer)
        self._senders[sender] = group_id
        try:
            while True:
                high = store.last_seq()
                stored = store.delivered_since(cursor, BATCH, group_id, own=own)
                if len(stored) < BATCH:
                    # Every message up to ``high`` was read (those of other
                    # groups are skipped): without this a reader of a quiet
                    # group would ask again forever while others get messages.
                    cursor = max(cursor, high)
                if stored:
                    cursor = max(cursor, stored[-1].seq or cursor)
                    yield [DeliveredMessage.from_stored(m, names) for m in stored]
                    if len(stored) == BATCH:
                        continue
                live = []
                while True:
                    try:
                        live.append(receiver.receive_nowait())
                    except trio.WouldBlock:
                        break
                if live:
                    yield live
                if not follow:
                    return
                if store.last_seq() > cursor:
                    continue
                await self._delivered.wait()
        finally:
            del self._senders[sender]
            sender.close()
            receiver.close()
