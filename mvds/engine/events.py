"""Events the engine emits for the application (drained with Engine.events())."""

from __future__ import annotations

from dataclasses import dataclass

from mvds.engine.records import RecordType
from mvds.wire import Message


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message is handed to the application: once per node, ever.

    ``seq`` is the store's local, monotonically increasing delivery number
    (readers resume from it); ephemeral messages are not stored and carry
    ``seq=None``.  ``peer`` is the peer the message arrived from.
    """

    message: Message
    seq: int | None
    peer: bytes


@dataclass(frozen=True, slots=True)
class MessageAcknowledged:
    """``peer`` is known to hold the message: it ACKed, offered or sent it."""

    message_id: bytes
    peer: bytes


@dataclass(frozen=True, slots=True)
class GaveUp:
    """A record reached its retransmission limit or expiry and was dropped.

    ``reason`` is ``"max_sends"`` or ``"expired"``.  For a MESSAGE or OFFER
    record it means ``peer`` may never receive the message from us.
    """

    message_id: bytes
    peer: bytes
    kind: RecordType
    reason: str


@dataclass(frozen=True, slots=True)
class MessageRefused:
    """A MESSAGE from ``peer`` was ACKed but neither stored nor delivered.

    ``reason`` is ``"unshared_group"``: the group is not shared with
    ``peer``.  Rate-limited: at most one event a minute per peer;
    ``suppressed`` counts the refusals since the previous event that had
    none of their own (the engine's ``dropped_unshared_group`` counter has
    them all).
    """

    message_id: bytes
    peer: bytes
    group_id: bytes
    reason: str
    suppressed: int


@dataclass(frozen=True, slots=True)
class PeerReachable:
    """Something arrived from ``peer`` after a silence (or for the first time).

    Its records in long backoff were made due at once (once per such
    transition, not on every payload).
    """

    peer: bytes


Event = MessageReceived | MessageAcknowledged | GaveUp | MessageRefused | PeerReachable
