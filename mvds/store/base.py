"""The store interface the engine keeps all of its durable state behind.

Two implementations: :class:`mvds.store.memory.MemoryStore` (simulator,
tests, in-memory nodes) and the SQLite store (the daemon's default).  The
engine never caches what lives here, so a store can be swapped without
touching the engine, and after a failed transaction the I/O shell can simply
build a new engine on the same store.

Transactions belong to the I/O shell, not the engine: the shell opens one
around everything it does in a wake-up (drain datagrams, feed them to the
engine, collect payloads), commits, and only then sends what the engine
produced.  That is what makes "no ACK before the message is committed" hold.

Contracts every implementation keeps (tests/test_store_contract.py runs the
same checks on each store):

* Messages are immutable and stored once; ephemeral messages are never stored.
* DAG leaves per group are those of the READY messages, maintained
  incrementally when a message becomes ready (``add_message(ready=True)`` or
  ``mark_ready``): its parents stop being leaves, and it becomes a leaf
  unless a ready message already names it as a parent.  A message held for
  its parents is no leaf and hides none, so the engine never names an
  undelivered message as the parent of a local append (a descendant of it
  could otherwise be delivered before it).
* ``seq`` numbers are assigned by ``mark_ready(..., deliver=True)`` (received
  messages) and by ``add_message`` of an own message (``ready=True``,
  ``received_from=None``): ONE sequence for both, strictly increasing, never
  reused, committed with the transaction that assigned them.
  ``delivered_since`` gives received messages only unless ``own=True``.
* A record returned by ``due_records`` or ``new_records`` must afterwards be
  passed to ``update_record`` or ``delete_record`` by the caller.
* OFFER and MESSAGE records name stored messages (the engine stores a
  message before it makes records to send it); REQUEST records name
  messages that are not stored, and ``delete_requests_for`` runs before the
  message is added.  A record's kind changes only from OFFER to MESSAGE.
* ``send_count == 0`` means new: OFFER/MESSAGE records wait FIFO per
  (peer, group) for room in that window, REQUESTs FIFO per peer (never
  windowed: they settle the peer's records, so holding them back could
  deadlock two full windows); ``send_count >= 1`` means in flight, ordered
  by ``send_epoch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ContextManager, Iterable, Protocol

from mvds.engine.records import Record, RecordType
from mvds.store.rangeindex import RangeIndex
from mvds.wire import Message


@dataclass(slots=True)
class StoredMessage:
    """A stored message and what this node knows about it."""

    message: Message
    ready: bool
    """Own message, or received and handed over (all parents ready in causal mode)."""
    seq: int | None
    """Place in the node's one delivery sequence: received messages when handed
    to the application, own messages when appended (None: not yet handed over,
    or an own message stored before own messages got a seq)."""
    received_from: bytes | None
    """The peer it first arrived from; None for own messages."""


class Store(Protocol):
    """Durable state of one node: messages, DAG, sharing, sync state."""

    # -- transactions (used by the I/O shell) --------------------------------
    def transaction(self) -> ContextManager[None]:
        """Everything inside commits together or not at all."""
        ...

    def close(self) -> None: ...

    # -- small named values (epoch, crypto replay windows, ...) -------------
    def get_meta(self, key: str) -> bytes | None:
        """A value the I/O shell stored with ``set_meta``, or None."""
        ...

    def set_meta(self, key: str, value: bytes) -> None:
        """Store a small value; committed with the surrounding transaction."""
        ...

    # -- groups and sharing ----------------------------------------------------
    def join(self, group_id: bytes) -> None:
        """Make this node a member of a group (idempotent)."""
        ...

    def groups(self) -> set[bytes]: ...

    def is_member(self, group_id: bytes) -> bool: ...

    def share(self, group_id: bytes, peer: bytes) -> bool:
        """Share a group with a peer; True if it was not shared before."""
        ...

    def unshare(self, group_id: bytes, peer: bytes) -> bool:
        """Stop sharing; True if it was shared."""
        ...

    def shared_peers(self, group_id: bytes) -> list[bytes]:
        """Peers the group is shared with, in a stable order."""
        ...

    def is_shared(self, group_id: bytes, peer: bytes) -> bool: ...

    def sharing(self) -> dict[bytes, list[bytes]]:
        """Every group this node is in, with its peers."""
        ...

    # -- messages and the DAG -------------------------------------------------
    def has_message(self, message_id: bytes) -> bool: ...

    def get_message(self, message_id: bytes) -> Message | None: ...

    def get_messages(self, message_ids: list[bytes]) -> dict[bytes, Message]:
        """The stored ones of ``message_ids`` (a batch read: streaming a
        range of history should not cost one query per message)."""
        out = {}
        for message_id in message_ids:
            message = self.get_message(message_id)
            if message is not None:
                out[message_id] = message
        return out

    def delivery_seqs(self, message_ids: list[bytes]) -> dict[bytes, int]:
        """The delivery sequence number (``StoredMessage.seq``) of each of
        ``message_ids`` that has one, in a batch read.  Delivery order is
        causal order (a message is handed over only after its parents), so
        catch-up streams a second's messages in it (engine/catchup.py)."""
        ...

    def get_stored(self, message_id: bytes) -> StoredMessage | None: ...

    def add_message(
        self, message: Message, *, ready: bool, received_from: bytes | None
    ) -> None:
        """Store a new (non-ephemeral) message and update its group's leaves."""
        ...

    def mark_ready(self, message_id: bytes, *, deliver: bool) -> int | None:
        """Mark a stored message ready; with ``deliver`` assign and return its seq."""
        ...

    def is_ready(self, message_id: bytes) -> bool: ...

    def leaves(self, group_id: bytes) -> list[bytes]:
        """Ids of the group's ready messages that no ready message names as parent."""
        ...

    def group_message_ids(self, group_id: bytes) -> Iterable[bytes]:
        """Every stored message id of a group, oldest first."""
        ...

    def range_index(self, group_id: bytes) -> "RangeIndex":
        """The group's messages in (timestamp, id) order with range counts
        and id sums, for range-based set reconciliation: built on first use,
        then kept up to date by ``add_message`` (not persisted)."""
        ...

    def warm_range_index(self, group_id: bytes, rows: int) -> bool:
        """Build the group's range index ahead of first use, reading at most
        ``rows`` more messages per call; True once it is built.  A shell
        calls it between steps (the build takes seconds at a million)."""
        ...

    def settle_range_indexes(self) -> bool:
        """Add the keys that appends deferred to the built range indexes
        (``RangeIndex.defer``) now where they all sort after every key
        (this node's new messages: cheap); True if any did.  A shell calls
        it when idle, so that a reconciliation does not wait for them."""
        ...

    def add_waiting(self, child: bytes, missing_parents: Iterable[bytes]) -> None:
        """Record that ``child`` waits for these parents to become ready."""
        ...

    def waiting_parents(self, child: bytes) -> list[bytes]:
        """Parents ``child`` still waits for (empty if none)."""
        ...

    def release_waiting(self, parent: bytes) -> list[bytes]:
        """``parent`` became ready: return the children that now wait for nothing."""
        ...

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None = None, *, own: bool = False
    ) -> list[StoredMessage]:
        """Messages handed over with ``seq > after_seq``, in seq order: the
        received ones, and with ``own`` this node's own appends too."""
        ...

    def last_seq(self) -> int:
        """Highest seq assigned so far (0 if none)."""
        ...

    def message_count(self) -> int: ...

    # -- sync state -----------------------------------------------------------
    def get_record(self, message_id: bytes, peer: bytes) -> Record | None: ...

    def delete_requests_for(self, message_id: bytes) -> int:
        """The message arrived: drop every REQUEST record for it (any peer)."""
        ...

    def insert_record(self, record: Record) -> None:
        """Add a record; none may exist for the same (message, peer)."""
        ...

    def update_record(self, record: Record) -> None:
        """Persist a changed record (send count, epoch, kind)."""
        ...

    def delete_record(self, message_id: bytes, peer: bytes) -> Record | None:
        """Remove a record; return it, or None if there was none."""
        ...

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        """Up to ``limit`` never-sent OFFER/MESSAGE records of a group for
        ``peer``, oldest first."""
        ...

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        """Up to ``limit`` never-sent REQUEST records for ``peer``, oldest first."""
        ...

    def groups_with_new_records(self, peer: bytes) -> list[bytes]:
        """Groups that have never-sent OFFER/MESSAGE records for ``peer``."""
        ...

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        """In-flight records for ``peer`` with ``send_epoch <= epoch``, earliest first."""
        ...

    def next_due_epoch(self, peer: bytes) -> int | None:
        """Smallest ``send_epoch`` of ``peer``'s in-flight records."""
        ...

    def inflight_messages(self, peer: bytes) -> list[bytes]:
        """Message ids of ``peer``'s in-flight OFFER/MESSAGE records (sent,
        not yet acknowledged; at most the window per group).  For status."""
        ...

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        """In-flight OFFER/MESSAGE records of a group for ``peer`` (the window;
        REQUESTs do not count)."""
        ...

    def has_new_records(self, peer: bytes) -> bool:
        """Any never-sent record (of any type) for ``peer``."""
        ...

    def request_count(self, peer: bytes) -> int:
        """REQUEST records towards ``peer``, new and in flight (cheap: the
        engine asks before every REQUEST it adds, to cap what one peer's
        OFFERs can make this node hold)."""
        ...

    def peers_with_records(self) -> list[bytes]: ...

    def pull_forward(self, peer: bytes, beyond_epoch: int, to_epoch: int) -> int:
        """In-flight records of ``peer`` due after ``beyond_epoch`` become due at
        ``to_epoch``; return how many moved."""
        ...

    def add_group_records(
        self, group_id: bytes, peer: bytes, kind: RecordType, epoch: int
    ) -> int:
        """Give ``peer`` a new record of ``kind`` (OFFER or MESSAGE) for every
        stored message of the group it has no record for, oldest first;
        return how many.  Sharing a group syncs its history: a store with a
        long history does this in bulk instead of one record at a time."""
        ...

    def delete_group_records(self, group_id: bytes, peer: bytes) -> int:
        """Drop every record of ``group_id`` towards ``peer``; return how many."""
        ...

    def record_count(self) -> int: ...

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        """Number of records per (peer, type), for status reports."""
        ...
