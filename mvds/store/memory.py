"""In-memory store: the simulator's and the tests' store, and in-memory nodes.

Every operation the engine uses on a hot path is O(1) or proportional to what
it returns: in-flight records sit in a per-peer heap keyed by send epoch (with
lazy deletion, versioned so a rescheduled record's stale entries are
skipped), new records in insertion-ordered dicts per (peer, group).
``delete_group_records`` (unshare) is the one full scan; it is rare.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import defaultdict
from typing import Iterable, Iterator

from mvds.engine.records import Record, RecordType
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
        self._records: dict[tuple[bytes, bytes], Record] = {}
        self._placement: dict[tuple[bytes, bytes], tuple[str, bytes | None]] = {}
        self._new: dict[bytes, dict[bytes, dict[bytes, None]]] = defaultdict(dict)
        self._new_requests: dict[bytes, dict[bytes, None]] = defaultdict(dict)
        self._window: dict[tuple[bytes, bytes], int] = defaultdict(int)
        # Insertion-ordered (a dict, not a set): pull_forward walks it, and
        # the order it reschedules records in must not depend on hashing,
        # or runs with the same inputs differ between processes.
        self._inflight: dict[bytes, dict[bytes, None]] = defaultdict(dict)
        self._requests_by_message: dict[bytes, set[bytes]] = {}
        self._request_count: dict[bytes, int] = defaultdict(int)  # REQUEST records per peer
        self._heaps: dict[bytes, list[tuple[int, int, bytes]]] = defaultdict(list)
        self._versions: dict[tuple[bytes, bytes], int] = {}
        self._counter = itertools.count()
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
        self._messages[mid] = StoredMessage(message, ready, None, received_from)
        self._group_messages[message.group_id].append(mid)
        leaves = self._leaves[message.group_id]
        for parent in message.parents:
            leaves.pop(parent, None)
            self._referenced.add(parent)
        if mid not in self._referenced:
            leaves[mid] = None
        self._ranges.added(message.group_id, message.timestamp, mid)

    def mark_ready(self, message_id: bytes, *, deliver: bool) -> int | None:
        stored = self._messages[message_id]
        stored.ready = True
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
        self, after_seq: int, limit: int, group_id: bytes | None = None
    ) -> list[StoredMessage]:
        out = []
        for seq in range(after_seq + 1, self._seq + 1):
            stored = self._messages[self._delivered[seq]]
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
    # Every record has exactly one placement, kept in ``_placement`` so that
    # moving it (sent, rescheduled, kind changed, deleted) can undo the old
    # one without trusting the record object, which the engine mutates.
    #   ("new", group)      FIFO in _new[peer][group]      (OFFER/MESSAGE)
    #   ("request", None)   FIFO in _new_requests[peer]
    #   ("inflight", group) in _inflight[peer] and the peer's heap; group is
    #                       None for REQUESTs, which the window does not count

    def get_record(self, message_id: bytes, peer: bytes) -> Record | None:
        return self._records.get((message_id, peer))

    def delete_requests_for(self, message_id: bytes) -> int:
        peers = self._requests_by_message.get(message_id)
        if not peers:
            return 0
        doomed = list(peers)
        for peer in doomed:
            self.delete_record(message_id, peer)
        return len(doomed)

    def insert_record(self, record: Record) -> None:
        key = (record.message_id, record.peer)
        if key in self._records:
            raise ValueError("a record for this message and peer exists already")
        self._records[key] = record
        if record.kind is RecordType.REQUEST:
            self._requests_by_message.setdefault(record.message_id, set()).add(record.peer)
        self._place(record)

    def update_record(self, record: Record) -> None:
        key = (record.message_id, record.peer)
        if key not in self._records:
            raise KeyError("update of a record that is not stored")
        self._records[key] = record
        if record.kind is not RecordType.REQUEST:
            self._forget_request(key)
        self._unplace(key)
        self._place(record)

    def _place(self, record: Record) -> None:
        mid, peer = record.message_id, record.peer
        key = (mid, peer)
        is_request = record.kind is RecordType.REQUEST
        if is_request:
            self._request_count[peer] += 1
        if record.send_count == 0:
            if is_request:
                self._new_requests[peer][mid] = None
                self._placement[key] = ("request", None)
            else:
                self._new[peer].setdefault(record.group_id, {})[mid] = None
                self._placement[key] = ("new", record.group_id)
            return
        group = None if is_request else record.group_id
        if group is not None:
            self._window[(peer, group)] += 1
        self._inflight[peer][mid] = None
        self._placement[key] = ("inflight", group)
        version = next(self._counter)
        self._versions[key] = version
        heapq.heappush(self._heaps[peer], (record.send_epoch, version, mid))

    def _unplace(self, key: tuple[bytes, bytes]) -> None:
        placement = self._placement.pop(key, None)
        if placement is None:
            return
        mid, peer = key
        where, group = placement
        if where == "request" or (where == "inflight" and group is None):
            self._request_count[peer] -= 1
        if where == "new":
            queues = self._new[peer]
            queue = queues[group]
            del queue[mid]
            if not queue:
                del queues[group]
        elif where == "request":
            del self._new_requests[peer][mid]
        else:
            self._versions.pop(key, None)
            inflight = self._inflight[peer]
            inflight.pop(mid, None)
            if not inflight:
                # Every entry left in the heap is stale now; drop them at
                # once rather than when their epochs pass.
                self._heaps.pop(peer, None)
            if group is not None:
                self._window[(peer, group)] -= 1

    def delete_record(self, message_id: bytes, peer: bytes) -> Record | None:
        key = (message_id, peer)
        record = self._records.pop(key, None)
        if record is not None:
            self._forget_request(key)
            self._unplace(key)
        return record

    def _forget_request(self, key: tuple[bytes, bytes]) -> None:
        peers = self._requests_by_message.get(key[0])
        if peers is not None:
            peers.discard(key[1])
            if not peers:
                del self._requests_by_message[key[0]]

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        queue = self._new.get(peer, {}).get(group_id)
        if not queue or limit <= 0:
            return []
        records = self._records
        return [records[(mid, peer)] for mid in itertools.islice(queue, limit)]

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        queue = self._new_requests.get(peer)
        if not queue or limit <= 0:
            return []
        records = self._records
        return [records[(mid, peer)] for mid in itertools.islice(queue, limit)]

    def groups_with_new_records(self, peer: bytes) -> list[bytes]:
        return list(self._new.get(peer, ()))

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        heap = self._heaps.get(peer)
        out: list[Record] = []
        if not heap:
            return out
        versions = self._versions
        while heap and heap[0][0] <= epoch:
            _, version, mid = heapq.heappop(heap)
            if versions.get((mid, peer)) == version:
                out.append(self._records[(mid, peer)])
        return out

    def next_due_epoch(self, peer: bytes) -> int | None:
        heap = self._heaps.get(peer)
        if not heap:
            return None
        versions = self._versions
        while heap and versions.get((heap[0][2], peer)) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        return self._window.get((peer, group_id), 0)

    def request_count(self, peer: bytes) -> int:
        return self._request_count.get(peer, 0)

    def has_new_records(self, peer: bytes) -> bool:
        return bool(self._new.get(peer)) or bool(self._new_requests.get(peer))

    def peers_with_records(self) -> list[bytes]:
        peers = {p for p, q in self._new.items() if q}
        peers.update(p for p, q in self._new_requests.items() if q)
        peers.update(p for p, s in self._inflight.items() if s)
        return sorted(peers)

    def pull_forward(self, peer: bytes, beyond_epoch: int, to_epoch: int) -> int:
        moved = 0
        for mid in list(self._inflight.get(peer, ())):
            record = self._records[(mid, peer)]
            if record.send_epoch > beyond_epoch:
                record.send_epoch = to_epoch
                self.update_record(record)
                moved += 1
        return moved

    def add_group_records(
        self, group_id: bytes, peer: bytes, kind: RecordType, epoch: int
    ) -> int:
        added = 0
        for message_id in self._group_messages.get(group_id, ()):
            if (message_id, peer) not in self._records:
                self.insert_record(Record(message_id, peer, group_id, kind, 0, epoch))
                added += 1
        return added

    def delete_group_records(self, group_id: bytes, peer: bytes) -> int:
        doomed = [
            mid
            for (mid, p), record in list(self._records.items())
            if p == peer and record.group_id == group_id
        ]
        for mid in doomed:
            self.delete_record(mid, peer)
        return len(doomed)

    def record_count(self) -> int:
        return len(self._records)

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        stats: dict[tuple[bytes, RecordType], int] = defaultdict(int)
        for record in self._records.values():
            stats[(record.peer, record.kind)] += 1
        return dict(stats)
