"""Sync state records (2/MVDS "State") and the modes that create them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RecordType(enum.IntEnum):
    """What a sync state record sends to its peer until it is settled."""

    OFFER = 1
    REQUEST = 2
    MESSAGE = 3


class Mode(enum.Enum):
    """How a node hands a message to a peer (spec 2/MVDS, "Flow").

    BATCH sends the whole MESSAGE at once (more bandwidth, fewer round trips);
    INTERACTIVE sends an OFFER first and the MESSAGE only on REQUEST.
    """

    BATCH = "batch"
    INTERACTIVE = "interactive"


class Delivery(enum.Enum):
    """When a received message is handed to the application (4/MVDS-META).

    CAUSAL holds a message until all its parents have been handed over (and
    requests missing parents from the peer that sent it); EVENTUAL hands it
    over on arrival.
    """

    CAUSAL = "causal"
    EVENTUAL = "eventual"


UNKNOWN_GROUP = b""
"""Group of a REQUEST record created from an OFFER: OFFERs carry only ids."""


@dataclass(slots=True)
class Record:
    """One sync state record: what we still owe ``peer`` about one message.

    ``send_count`` is how often it was sent; 0 means it is new and has not
    been sent yet (new records wait for room in the peer's in-flight window,
    sent ones wait for ``send_epoch``).  ``max_sends`` and ``expires_at`` are
    the optional retransmission limit and expiry (seconds on the engine's
    clock); reaching either ends the record with a ``GaveUp`` event.
    """

    message_id: bytes
    peer: bytes
    group_id: bytes
    kind: RecordType
    send_count: int = 0
    send_epoch: int = 0
    max_sends: int | None = None
    expires_at: float | None = None

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.message_id, self.peer)
