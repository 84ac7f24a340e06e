"""The in-memory index of sync state records, shared by both stores.

The memory store keeps every record here; the SQLite store keeps its *hot*
records here (every record in flight, and every record touched in the open
transaction; see ``_sqlite_records``).  One implementation, so the two
stores cannot disagree about the order records come out in.

Each record has exactly one placement, remembered per key so that moving it
(sent, rescheduled, kind changed, deleted) undoes the old one without
trusting the record object, which the engine mutates in place:

* ``Placement.NEW``: never sent (OFFER/MESSAGE), FIFO per (peer, group);
* ``Placement.NEW_REQUEST``: a REQUEST never sent, FIFO per peer;
* ``Placement.IN_FLIGHT``: sent at least once, in the peer's heap keyed by
  send epoch; its group is None for REQUESTs, which the window does not
  count.

Every placement carries a sequence number the caller gives (strictly
increasing): the heap's tie-break between records due in the same epoch,
and the way its lazy deletion recognises stale entries (a rescheduled
record's old entries no longer match its placement).

Everything is insertion-ordered (dicts, never sets): ``pull_forward`` and
``requests_for`` walk these collections, and an order that depended on the
hash seed would make runs with the same inputs differ between processes.
"""

from __future__ import annotations

import heapq
import itertools
from enum import IntEnum
from typing import Callable, Iterator

from mvds.engine.records import Record, RecordType

Key = tuple[bytes, bytes]
"""(message id, peer): a record's identity."""

_REQUEST = RecordType.REQUEST


class Placement(IntEnum):
    """Where a record sits in the index."""

    NEW = 0
    NEW_REQUEST = 1
    IN_FLIGHT = 2


_NEW = Placement.NEW
_NEW_REQUEST = Placement.NEW_REQUEST
_IN_FLIGHT = Placement.IN_FLIGHT


class RecordIndex:
    """Records by key, with the queues and counts the engine's queries need.

    Every query the engine makes on a hot path is O(1) or proportional to
    what it returns; ``records_in_group`` is the one full scan (unshare).
    """

    __slots__ = (
        "records", "_placement", "_new", "_new_requests", "_inflight", "_heaps",
        "_window", "_requests", "_request_count",
    )

    def __init__(self) -> None:
        self.records: dict[Key, Record] = {}
        """Every indexed record (read freely; change through add/remove)."""
        self._placement: dict[Key, tuple[Placement, bytes | None, int]] = {}
        self._new: dict[bytes, dict[bytes, dict[bytes, None]]] = {}
        self._new_requests: dict[bytes, dict[bytes, None]] = {}
        self._inflight: dict[bytes, dict[bytes, None]] = {}
        self._heaps: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self._window: dict[tuple[bytes, bytes], int] = {}
        self._requests: dict[bytes, dict[bytes, None]] = {}  # REQUEST records by message
        self._request_count: dict[bytes, int] = {}  # REQUEST records by peer

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, key: object) -> bool:
        return key in self.records

    def get(self, key: Key) -> Record | None:
        return self.records.get(key)

    # -- changes --------------------------------------------------------------
    def add(self, record: Record, seq: int) -> None:
        """Index ``record`` (its key must not be indexed) with sequence ``seq``."""
        mid, peer = record.message_id, record.peer
        key = (mid, peer)
        self.records[key] = record
        is_request = record.kind is _REQUEST
        if is_request:
            peers = self._requests.get(mid)
            if peers is None:
                peers = self._requests[mid] = {}
            peers[peer] = None
            self._request_count[peer] = self._request_count.get(peer, 0) + 1
        if record.send_count == 0:
            if is_request:
                queue = self._new_requests.get(peer)
                if queue is None:
                    queue = self._new_requests[peer] = {}
                queue[mid] = None
                self._placement[key] = (_NEW_REQUEST, None, seq)
            else:
                group = record.group_id
                queues = self._new.get(peer)
                if queues is None:
                    queues = self._new[peer] = {}
                queue = queues.get(group)
                if queue is None:
                    queue = queues[group] = {}
                queue[mid] = None
                self._placement[key] = (_NEW, group, seq)
            return
        if is_request:
            group = None
        else:
            group = record.group_id
            window_key = (peer, group)
            self._window[window_key] = self._window.get(window_key, 0) + 1
        inflight = self._inflight.get(peer)
        if inflight is None:
            inflight = self._inflight[peer] = {}
        inflight[mid] = None
        self._placement[key] = (_IN_FLIGHT, group, seq)
        heap = self._heaps.get(peer)
        if heap is None:
            heap = self._heaps[peer] = []
        heapq.heappush(heap, (record.send_epoch, seq, mid))

    def remove(self, key: Key) -> Record | None:
        """Take the record of ``key`` out of the index (None if not indexed)."""
        record = self.records.pop(key, None)
        if record is None:
            return None
        where, group, _ = self._placement.pop(key)
        mid, peer = key
        if where is _NEW_REQUEST or (where is _IN_FLIGHT and group is None):
            peers = self._requests[mid]
            del peers[peer]
            if not peers:
                del self._requests[mid]
            left = self._request_count[peer] - 1
            if left:
                self._request_count[peer] = left
            else:
                del self._request_count[peer]
        if where is _NEW:
            queues = self._new[peer]
            queue = queues[group]  # type: ignore[index]
            del queue[mid]
            if not queue:
                del queues[group]  # type: ignore[arg-type]
                if not queues:
                    del self._new[peer]
        elif where is _NEW_REQUEST:
            queue = self._new_requests[peer]
            del queue[mid]
            if not queue:
                del self._new_requests[peer]
        else:
            inflight = self._inflight[peer]
            del inflight[mid]
            if not inflight:
                # Every entry left in the heap is stale now; drop them at
                # once rather than when their epochs pass.
                del self._inflight[peer]
                self._heaps.pop(peer, None)
            if group is not None:
                window_key = (peer, group)
                left = self._window[window_key] - 1
                if left:
                    self._window[window_key] = left
                else:
                    del self._window[window_key]
        return record

    # -- placements ---------------------------------------------------------------
    def seq_of(self, key: Key) -> int:
        """The sequence number ``key`` was placed with (it must be indexed)."""
        return self._placement[key][2]

    def is_in_flight(self, key: Key) -> bool:
        placed = self._placement.get(key)
        return placed is not None and placed[0] is _IN_FLIGHT

    def placed_as_request(self, key: Key) -> bool:
        """Whether ``key`` was indexed as a REQUEST: the kind it was added
        with, which the engine may since have changed on the record object."""
        where, group, _ = self._placement[key]
        return where is _NEW_REQUEST or (where is _IN_FLIGHT and group is None)

    # -- queries ------------------------------------------------------------------
    def inflight_messages(self, peer: bytes) -> list[bytes]:
        """Message ids of ``peer``'s in-flight OFFER/MESSAGE records (not
        REQUESTs): at most the window per group, read-only."""
        placement = self._placement
        return [mid for mid in self._inflight.get(peer, ())
                if placement[(mid, peer)][1] is not None]

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        """Up to ``limit`` never-sent OFFER/MESSAGE records, oldest first."""
        queue = self._new.get(peer, {}).get(group_id)
        if not queue or limit <= 0:
            return []
        records = self.records
        return [records[(mid, peer)] for mid in itertools.islice(queue, limit)]

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        """Up to ``limit`` never-sent REQUEST records, oldest first."""
        queue = self._new_requests.get(peer)
        if not queue or limit <= 0:
            return []
        records = self.records
        return [records[(mid, peer)] for mid in itertools.islice(queue, limit)]

    def groups_with_new_records(self, peer: bytes) -> Iterator[bytes]:
        return iter(self._new.get(peer, ()))

    def has_new_records(self, peer: bytes) -> bool:
        return peer in self._new or peer in self._new_requests

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        """In-flight records due by ``epoch``, in (send epoch, seq) order;
        they leave the heap (the caller reschedules or deletes each)."""
        heap = self._heaps.get(peer)
        out: list[Record] = []
        if not heap:
            return out
        placement, records = self._placement, self.records
        while heap and heap[0][0] <= epoch:
            _, seq, mid = heapq.heappop(heap)
            key = (mid, peer)
            placed = placement.get(key)
            if placed is not None and placed[2] == seq:
                out.append(records[key])
        return out

    def next_due_epoch(self, peer: bytes) -> int | None:
        heap = self._heaps.get(peer)
        if not heap:
            return None
        placement = self._placement
        while heap:
            epoch, seq, mid = heap[0]
            placed = placement.get((mid, peer))
            if placed is not None and placed[2] == seq:
                return epoch
            heapq.heappop(heap)
        return None

    def pull_forward(
        self, peer: bytes, beyond_epoch: int, to_epoch: int, update: Callable[[Record], None]
    ) -> int:
        """Reschedule the peer's in-flight records due after ``beyond_epoch``
        to ``to_epoch``, through the store's ``update`` (which re-places
        them), in the order they were in flight: they then come out of
        ``due_records`` in that order in both stores."""
        records = self.records
        moved = 0
        for mid in list(self._inflight.get(peer, ())):
            record = records[(mid, peer)]
            if record.send_epoch > beyond_epoch:
                record.send_epoch = to_epoch
                update(record)
                moved += 1
        return moved

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        return self._window.get((peer, group_id), 0)

    def request_count(self, peer: bytes) -> int:
        return self._request_count.get(peer, 0)

    def requests_for(self, message_id: bytes) -> list[bytes]:
        """The peers with a REQUEST record for ``message_id``, in insertion order."""
        return list(self._requests.get(message_id, ()))

    def peers(self) -> set[bytes]:
        """Every peer with an indexed record."""
        peers = set(self._new)
        peers.update(self._new_requests)
        peers.update(self._inflight)
        return peers

    def records_in_group(self, group_id: bytes, peer: bytes) -> list[bytes]:
        """Message ids of the peer's records in ``group_id`` (a full scan)."""
        return [
            mid
            for (mid, p), record in self.records.items()
            if p == peer and record.group_id == group_id
        ]

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        stats: dict[tuple[bytes, RecordType], int] = {}
        for record in self.records.values():
            key = (record.peer, record.kind)
            stats[key] = stats.get(key, 0) + 1
        return stats
