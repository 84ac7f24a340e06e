"""In-memory store: the simulator's and the tests' store, and in-memory nodes.

Every operation the engine uses on a hot path is O(1) or proportional to what
it returns: sync state records sit in a RecordIndex (``_record_index``, the
same index that holds the SQLite store's hot records): in-flight ones in a
per-peer heap keyed by send epoch, new ones in insertion-ordered FIFOs per
(peer, group).  ``delete_group_records`` (unshare) is the one full scan; it
is rare.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from typing import Iterable, Iterator

from mvds.engine.records import Record, RecordType
from mvds.store._record_index import RecordIndex
from mvds.store.base import StoredMessage
from mvds.store.rangeindex import GroupRanges, RangeIndex
from mvds.wire import Message


class MemoryStore:
    """A :class:`mvds.store.base.Store` that keeps everything in dicts."""

    def __init__(self) -> None:
        self._messages: dict[bytes, StoredMessage] = {}
        self._group_messages: dict[bytes, list[bytes]] = defaultdict(list)
        self._leaves: dict[bytes, dict[bytes, None]] = defaultdict(dict)
        self._referenced: set[bytes] = set()
        self._waiting_children: dict[bytes, list[bytes]] = {}
        self._missing: dict[bytes, set[bytes]] = {}
        self._delivered: dict[int, bytes] = {}
        self._seq = 0
        self._shares: dict[bytes, dict[bytes, None]] = {}
        self._index = RecordIndex()
        self._counter = itertools.count()  # placement sequence numbers
        self._meta: dict[str, bytes] = {}
        self._ranges = GroupRanges(self._group_keys, self._messages.__contains__)

    # -- transactions -----------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Nothing to commit in memory; exists so shells treat stores alike."""
        yield

    def close(self) -> None:
        pass

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = bytes(value)

    # -- groups and sharing --------------------------------------------------
    def join(self, group_id: bytes) -> None:
        self._shares.setdefault(group_id, {})

    def groups(self) -> set[bytes]:
        return set(self._shares)

    def is_member(self, group_id: bytes) -> bool:
        return group_id in self._shares

    def share(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.setdefault(group_id, {})
        if peer in peers:
            return False
        peers[peer] = None
        return True

    def unshare(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.get(group_id)
        if peers is None or peer not in peers:
            return False
        del peers[peer]
        return True

    def shared_peers(self, group_id: bytes) -> list[bytes]:
        return list(self._shares.get(group_id, ()))

    def is_shared(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.get(group_id)
        return peers is not None and peer in peers

    def sharing(self) -> dict[bytes, list[bytes]]:
        return {group: list(peers) for group, peers in self._shares.items()}

    # -- messages and the DAG ------------------------------------------------
    def has_message(self, message_id: bytes) -> bool:
        return message_id in self._messages

    def get_message(self, message_id: bytes) -> Message | None:
        stored = self._messages.get(message_id)
        return stored.message if stored is not None else None

    def get_messages(self, message_ids: list[bytes]) -> dict[bytes, Message]:
        messages = self._messages
        return {m: messages[m].message for m in message_ids if m in messages}

    def delivery_seqs(self, message_ids: list[bytes]) -> dict[bytes, int]:
        messages = self._messages
        out = {}
        for mid in message_ids:
            stored = messages.get(mid)
            if stored is not None and stored.seq is not None:
                out[mid] = stored.seq
        return out

    def get_stored(self, message_id: bytes) -> StoredMessage | None:
        return self._messages.get(message_id)

    def add_message(
        self, message: Message, *, ready: bool, received_from: bytes | None
    ) -> None:
        mid = message.id
        if mid in self._messages:
            raise ValueError(f"message {mid.hex()} is already stored")
        if message.ephemeral:
            raise ValueError("ephemeral messages are never stored")
        stored = self._messages[mid] = StoredMessage(message, ready, None, received_from)
        if ready and received_from is None:  # own: a place in the one delivery sequence
            self._seq += 1
            stored.seq = self._seq
            self._delivered[self._seq] = mid
        self._group_messages[message.group_id].append(mid)
        self._ranges.added(message.group_id, message.timestamp, mid)
        if ready:
            self._became_ready(message)

    def _became_ready(self, message: Message) -> None:
        """Leaves of the DAG of ready messages (see the SQLite store's
        ``_became_ready``: a held message is no leaf and hides no parent)."""
        leaves = self._leaves[message.group_id]
        for parent in message.parents:
            leaves.pop(parent, None)
            self._referenced.add(parent)
        if message.id not in self._referenced:
            leaves[message.id] = None

    def mark_ready(self, message_id: bytes, *, deliver: bool) -> int | None:
        stored = self._messages[message_id]
        if not stored.ready:
            stored.ready = True
            self._became_ready(stored.message)
        if deliver and stored.seq is None:
            self._seq += 1
            stored.seq = self._seq
            self._delivered[self._seq] = message_id
        return stored.seq

    def is_ready(self, message_id: bytes) -> bool:
        stored = self._messages.get(message_id)
        return stored is not None and stored.ready

    def leaves(self, group_id: bytes) -> list[bytes]:
        return list(self._leaves.get(group_id, ()))

    def group_message_ids(self, group_id: bytes) -> Iterable[bytes]:
        return list(self._group_messages.get(group_id, ()))

    def range_index(self, group_id: bytes) -> RangeIndex:
        return self._ranges.get(group_id)

    def warm_range_index(self, group_id: bytes, rows: int) -> bool:
        return self._ranges.warm(group_id, rows)

    def settle_range_indexes(self) -> bool:
        return self._ranges.settle()

    def _group_keys(self, group_id: bytes) -> Iterator[tuple[int, bytes]]:
        messages = self._messages
        for mid in self._group_messages.get(group_id, ()):
            yield messages[mid].message.timestamp, mid

    def add_waiting(self, child: bytes, missing_parents: Iterable[bytes]) -> None:
        missing = self._missing.setdefault(child, set())
        for parent in missing_parents:
            if parent not in missing:
                missing.add(parent)
                self._waiting_children.setdefault(parent, []).append(child)

    def waiting_parents(self, child: bytes) -> list[bytes]:
        return sorted(self._missing.get(child, ()))

    def release_waiting(self, parent: bytes) -> list[bytes]:
        released = []
        for child in self._waiting_children.pop(parent, ()):
            missing = self._missing.get(child)
            if missing is None:
                continue
            missing.discard(parent)
            if not missing:
                del self._missing[child]
                released.append(child)
        return released

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None = None, *, own: bool = False
    ) -> list[StoredMessage]:
        out = []
        delivered = self._delivered
        for seq in range(max(after_seq, 0) + 1, self._seq + 1):
            mid = delivered.get(seq)
            if mid is None:  # an own message from before own messages had a seq
                continue
            stored = self._messages[mid]
            if not own and stored.received_from is None:
                continue
            if group_id is None or stored.message.group_id == group_id:
                out.append(stored)
                if len(out) >= limit:
                    break
        return out

    def last_seq(self) -> int:
        return self._seq

    def message_count(self) -> int:
        return len(self._messages)

    # -- sync state --------------------------------------------------------
    #
    # Records live in a RecordIndex (mvds/store/_record_index.py), the same
    # index that holds the SQLite store's hot records.

    def get_record(self, message_id: bytes, peer: bytes) -> Record | None:
        return self._index.get((message_id, peer))

    def delete_requests_for(self, message_id: bytes) -> int:
        doomed = self._index.requests_for(message_id)
        for peer in doomed:
            self.delete_record(message_id, peer)
        return len(doomed)

    def insert_record(self, record: Record) -> None:
        if (record.message_id, record.peer) in self._index:
            raise ValueError("a record for this message and peer exists already")
        self._index.add(record, next(self._counter))

    def update_record(self, record: Record) -> None:
        if self._index.remove((record.message_id, record.peer)) is None:
            raise KeyError("update of a record that is not stored")
        self._index.add(record, next(self._counter))

    def delete_record(self, message_id: bytes, peer: bytes) -> Record | None:
        return self._index.remove((message_id, peer))

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        return self._index.new_records(peer, group_id, limit)

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        return self._index.new_requests(peer, limit)

    def groups_with_new_records(self, peer: bytes) -> list[bytes]:
        return list(self._index.groups_with_new_records(peer))

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        return self._index.due_records(peer, epoch)

    def next_due_epoch(self, peer: bytes) -> int | None:
        return self._index.next_due_epoch(peer)

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        return self._index.inflight_count(peer, group_id)

    def inflight_messages(self, peer: bytes) -> list[bytes]:
        return self._index.inflight_messages(peer)

    def request_count(self, peer: bytes) -> int:
        return self._index.request_count(peer)

    def has_new_records(self, peer: bytes) -> bool:
        return self._index.has_new_records(peer)

    def peers_with_records(self) -> list[bytes]:
        return sorted(self._index.peers())

    def pull_forward(self, peer: bytes, beyond_epoch: int, to_epoch: int) -> int:
        return self._index.pull_forward(peer, beyond_epoch, to_epoch, self.update_record)

    def add_group_records(
        self, group_id: bytes, peer: bytes, kind: RecordType, epoch: int
    ) -> int:
        added = 0
        for message_id in self._group_messages.get(group_id, ()):
            if (message_id, peer) not in self._index:
                self.insert_record(Record(message_id, peer, group_id, kind, 0, epoch))
                added += 1
        return added

    def delete_group_records(self, group_id: bytes, peer: bytes) -> int:
        doomed = self._index.records_in_group(group_id, peer)
        for mid in doomed:
            self.delete_record(mid, peer)
        return len(doomed)

    def record_count(self) -> int:
        return len(self._index)

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        return self._index.record_stats()
