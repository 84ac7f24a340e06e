"""Sync state records in SQLite, with the hot part in memory.

A record's life on a busy node is short: inserted when a message is appended
or received, sent (updated) in the same wake-up, deleted when the ACK comes.
So records are split in two:

* **hot** records live in memory: every record in flight (``send_count >=
  1``; at most the window per (peer, group), plus REQUESTs), and every record
  inserted, changed or deleted in the current transaction.  They sit in the
  memory store's own index (``_record_index.RecordIndex``), so
  ``due_records`` and ``next_due_epoch`` never touch SQLite and both stores
  give records in the same order.
* **cold** records are committed new ones (``send_count == 0``) that nothing
  has touched since: the backlog for a slow or offline peer, which may be
  large, so it stays on disk and is read in FIFO pages (partial indexes
  ``records_new`` and ``records_new_requests``).  Counters per peer and group
  say where cold records exist, so the hot path asks SQLite nothing when
  there are none.

Changes are remembered per key (``_dirty``, with the table the committed
row is in, if any) and written at commit with a few ``executemany`` DELETEs
and INSERT OR REPLACEs, sorted by key: a record inserted and sent in the
same wake-up is written once.  At commit, new records leave memory (they
become cold).  After a rollback everything is rebuilt from the tables, so
no undo log is needed.

On disk, OFFER and MESSAGE records (whose message is stored) are keyed by
the message's row number ``rid`` (table ``records``): records for a burst
of new messages land at the end of the table instead of on random pages.
REQUEST records name a message this node does not hold, so they are keyed
by its id (table ``requests``).  In memory every record is keyed by
(message id, peer) as the engine sees it; ``rid_of`` maps ids to rows.

``qseq`` numbers every placement (insert or update), giving new records their
FIFO order and in-flight records their tie-break: it is the sequence number
the index is given.

Work on a group's whole history (sharing it with a new peer, unsharing it)
never passes records through memory: the transaction's changes are first
written into it ("spilled", as a commit would), then SQL does the rest, and
the counters are adjusted by the rows it touched.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from enum import IntEnum
from typing import Callable

from mvds.engine.records import Record, RecordType
from mvds.store._record_index import RecordIndex
from mvds.store._sqlite_db import Database, Names

_REQUEST = RecordType.REQUEST

_RECORD_COLUMNS = "pid, rid, gid, kind, send_count, send_epoch, max_sends, expires_at, qseq"
_REQUEST_COLUMNS = "mid, pid, gid, send_count, send_epoch, max_sends, expires_at, qseq"
_Key = tuple[bytes, bytes]

BULK_DELETE = 10_000
"""Most rows one DELETE of an unshared backlog removes (see delete_group_records)."""


class Row(IntEnum):
    """Where a key's committed row is (the value of ``_dirty``)."""

    NONE = 0
    IN_RECORDS = 1
    IN_REQUESTS = 2


_NO_ROW = Row.NONE
_IN_RECORDS = Row.IN_RECORDS
_IN_REQUESTS = Row.IN_REQUESTS


def _table_of(kind: RecordType) -> Row:
    return _IN_REQUESTS if kind is _REQUEST else _IN_RECORDS


class RecordBook:
    """The records table plus the in-memory hot set described above."""

    def __init__(
        self,
        db: Database,
        names: Names,
        rid_of: Callable[[bytes], int | None],
        fresh: Callable[[bytes], bool] | None = None,
        prefetch: Callable[[bytes, int, bytes], None] | None = None,
    ) -> None:
        self._db = db
        self._names = names
        self._rid_of = rid_of
        """A stored message's row number (None if it is not stored)."""
        self._prefetch = prefetch or (lambda mid, rid, encoded: None)
        """Hands over a message row read with a MESSAGE record that is about
        to be sent, so sending it costs no second query."""
        self._fresh = fresh or (lambda mid: False)
        """Whether a message was first stored in the current transaction: then
        no committed OFFER or MESSAGE record can name it, and a record insert
        need not look for one on disk."""
        self.load()

    # -- state --------------------------------------------------------------
    def load(self) -> None:
        """(Re)build from committed state: at open and after a rollback."""
        self._index = RecordIndex()  # the hot records
        self._hot = self._index.records  # read-only view: change through the index
        self._dirty: dict[_Key, Row] = {}  # key -> where its committed row is
        self._seen_cold: dict[_Key, tuple[bytes, RecordType]] = {}
        # Cold (committed, untouched, new) records, counted.
        self._cold_groups: dict[bytes, dict[bytes, int]] = defaultdict(dict)
        self._cold_requests: dict[bytes, int] = defaultdict(int)
        self._cold_peer: dict[bytes, int] = defaultdict(int)
        self._cold_kinds: dict[tuple[bytes, RecordType], int] = defaultdict(int)
        self._cold_total = 0

        db, names = self._db, self._names
        peer_of, group_of = names.peer, names.group
        next_qseq = 1
        in_flight = db.all(
            "SELECT r.pid, m.id, r.gid, r.kind, r.send_count, r.send_epoch, r.max_sends, "
            "r.expires_at, r.qseq FROM records AS r JOIN messages AS m ON m.rid = r.rid "
            "WHERE r.send_count > 0 "
            f"UNION ALL SELECT pid, mid, gid, {int(_REQUEST)}, send_count, send_epoch, "
            "max_sends, expires_at, qseq FROM requests WHERE send_count > 0 "
            "ORDER BY 9"
        )
        for pid, mid, gid, kind, count, epoch, max_sends, expires, qseq in in_flight:
            record = Record(
                mid, peer_of[pid], group_of[gid], RecordType(kind), count, epoch, max_sends, expires
            )
            self._index.add(record, qseq)
            next_qseq = max(next_qseq, qseq + 1)
        # New records keep their FIFO order by qseq, so the counter resumes
        # above every one of them (read from the same index pass).  Grouped
        # by a prefix of the records_new index and summed by kind: GROUP BY
        # kind too would sort every cold record (a backlog of a million is
        # tens of MB of sorter memory) at each open.
        for pid, gid, offers, messages, top in db.all(
            f"SELECT pid, gid, sum(kind = {int(RecordType.OFFER)}), "
            f"sum(kind = {int(RecordType.MESSAGE)}), max(qseq) FROM records "
            "WHERE send_count = 0 GROUP BY pid, gid"
        ):
            for kind, n in ((RecordType.OFFER, offers), (RecordType.MESSAGE, messages)):
                if n:
                    self._count_cold(peer_of[pid], group_of[gid], kind, n)
            next_qseq = max(next_qseq, top + 1)
        for pid, n, top in db.all(
            "SELECT pid, count(*), max(qseq) FROM requests WHERE send_count = 0 GROUP BY pid"
        ):
            self._count_cold(peer_of[pid], b"", _REQUEST, n)
            next_qseq = max(next_qseq, top + 1)
        self._qseq = itertools.count(next_qseq)

    def _count_cold(self, peer: bytes, group: bytes, kind: RecordType, delta: int) -> None:
        if kind is _REQUEST:
            self._cold_requests[peer] += delta
        else:
            groups = self._cold_groups[peer]
            left = groups.get(group, 0) + delta
            if left:
                groups[group] = left
            else:
                del groups[group]
        self._cold_peer[peer] += delta
        self._cold_kinds[(peer, kind)] += delta
        self._cold_total += delta

    # -- cold records ---------------------------------------------------------
    def _read_cold(self, key: _Key) -> Record | None:
        """A committed new record not in memory (caller checked it may exist)."""
        mid, peer = key
        pid = self._names.pid.get(peer)
        if pid is None:
            return None
        db = self._db
        record = None
        cold_requests = self._cold_requests.get(peer, 0)
        if cold_requests:
            row = db.one(
                "SELECT gid, send_count, send_epoch, max_sends, expires_at "
                "FROM requests WHERE mid = ? AND pid = ?",
                (mid, pid),
            )
            if row is not None:
                gid, count, epoch, max_sends, expires = row
                record = Record(
                    mid, peer, self._names.group[gid], _REQUEST, count, epoch, max_sends, expires
                )
        if record is None and self._cold_peer.get(peer, 0) > cold_requests:
            rid = self._rid_of(mid)
            if rid is None:
                return None
            row = db.one(
                "SELECT gid, kind, send_count, send_epoch, max_sends, expires_at "
                "FROM records WHERE pid = ? AND rid = ?",
                (pid, rid),
            )
            if row is not None:
                gid, kind, count, epoch, max_sends, expires = row
                record = Record(
                    mid, peer, self._names.group[gid], RecordType(kind), count, epoch, max_sends,
                    expires,
                )
        if record is not None:
            self._seen_cold[key] = (record.group_id, record.kind)
        return record

    def _claim_cold(self, key: _Key) -> bool:
        """Take a cold record out of the cold set (it is being changed or
        deleted in this transaction); False if there is none."""
        old = self._seen_cold.get(key)
        if old is None:
            if not self._cold_peer.get(key[1]):
                return False
            record = self._read_cold(key)
            if record is None:
                return False
            old = (record.group_id, record.kind)
        self._count_cold(key[1], old[0], old[1], -1)
        self._dirty[key] = _table_of(old[1])
        return True

    # -- the Store interface -------------------------------------------------------
    def get_record(self, mid: bytes, peer: bytes) -> Record | None:
        key = (mid, peer)
        record = self._hot.get(key)
        if record is not None or key in self._dirty or not self._cold_peer.get(peer):
            return record
        return self._read_cold(key)

    def insert_record(self, record: Record) -> None:
        key = (record.message_id, record.peer)
        peer = record.peer
        if key in self._hot or (
            key not in self._dirty
            and self._cold_peer.get(peer)
            and (self._cold_requests.get(peer) or not self._fresh(record.message_id))
            and self._read_cold(key) is not None
        ):
            raise ValueError("a record for this message and peer exists already")
        if key not in self._dirty:
            self._dirty[key] = _NO_ROW
        self._index.add(record, next(self._qseq))

    def update_record(self, record: Record) -> None:
        key = (record.message_id, record.peer)
        index = self._index
        if key in index:
            if key not in self._dirty:
                # Committed in flight: its row exists, in the table its
                # placement says (the caller may have changed ``kind``).
                was_request = index.placed_as_request(key)
                self._dirty[key] = _IN_REQUESTS if was_request else _IN_RECORDS
            index.remove(key)
        elif key in self._dirty or not self._claim_cold(key):
            raise KeyError("update of a record that is not stored")
        index.add(record, next(self._qseq))

    def delete_record(self, mid: bytes, peer: bytes) -> Record | None:
        key = (mid, peer)
        record = self._index.remove(key)
        if record is not None:
            if key not in self._dirty:
                self._dirty[key] = _table_of(record.kind)
            return record
        if key in self._dirty or not self._cold_peer.get(peer):
            return None
        record = self._read_cold(key)
        if record is not None:
            self._claim_cold(key)
        return record

    def delete_requests_for(self, mid: bytes) -> int:
        deleted = 0
        for peer in self._index.requests_for(mid):
            self.delete_record(mid, peer)
            deleted += 1
        if any(self._cold_requests.values()):
            peer_of = self._names.peer
            for (pid,) in self._db.all(
                "SELECT pid FROM requests WHERE mid = ? AND send_count = 0", (mid,)
            ):
                key = (mid, peer_of[pid])
                if key not in self._hot and key not in self._dirty:
                    self._count_cold(key[1], b"", _REQUEST, -1)
                    self._dirty[key] = _IN_REQUESTS
                    deleted += 1
        return deleted

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        if limit <= 0:
            return []
        out: list[Record] = []
        cold = self._cold_groups.get(peer, {}).get(group_id, 0)
        if cold:
            self._page_cold(
                out,
                limit,
                cold,
                # The message rows come along: MESSAGE records are paged to
                # be sent, and sending needs the encoded message.
                "SELECT m.id, r.kind, r.send_epoch, r.max_sends, r.expires_at, r.qseq, "
                f"CASE WHEN r.kind = {int(RecordType.MESSAGE)} THEN m.encoded END, r.rid "
                "FROM records AS r JOIN messages AS m ON m.rid = r.rid "
                "WHERE r.pid = ? AND r.gid = ? AND r.send_count = 0 "
                "AND r.qseq > ? ORDER BY r.qseq LIMIT ?",
                (self._names.pid[peer], self._names.gid[group_id]),
                peer,
                group_id,
            )
        if len(out) < limit:
            out.extend(self._index.new_records(peer, group_id, limit - len(out)))
        return out

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        if limit <= 0:
            return []
        out: list[Record] = []
        cold = self._cold_requests.get(peer, 0)
        if cold:
            self._page_cold(
                out,
                limit,
                cold,
                f"SELECT mid, {int(_REQUEST)}, send_epoch, max_sends, expires_at, qseq, gid "
                "FROM requests WHERE pid = ? AND send_count = 0 AND qseq > ? "
                "ORDER BY qseq LIMIT ?",
                (self._names.pid[peer],),
                peer,
                None,
            )
        if len(out) < limit:
            out.extend(self._index.new_requests(peer, limit - len(out)))
        return out

    def _page_cold(
        self,
        out: list[Record],
        limit: int,
        cold: int,
        sql: str,
        params: tuple,
        peer: bytes,
        group_id: bytes | None,
    ) -> None:
        """Append up to ``limit`` cold records in FIFO order, skipping rows
        that this transaction changed (they are hot, or deleted)."""
        after = -1
        found = 0
        hot, dirty, seen = self._hot, self._dirty, self._seen_cold
        group_of = self._names.group
        prefetch = self._prefetch
        while len(out) < limit and found < cold:
            want = limit - len(out)
            rows = self._db.all(sql, (*params, after, want))
            for row in rows:
                mid, kind, epoch, max_sends, expires, qseq = row[:6]
                key = (mid, peer)
                if key in hot or key in dirty:
                    continue
                if group_id is None:
                    group = group_of[row[6]]
                else:
                    group = group_id
                    if row[6] is not None:
                        prefetch(mid, row[7], row[6])
                record = Record(mid, peer, group, RecordType(kind), 0, epoch, max_sends, expires)
                seen[key] = (group, record.kind)
                out.append(record)
                found += 1
                if len(out) >= limit:
                    return
            if len(rows) < want:
                return
            after = rows[-1][5]

    def groups_with_new_records(self, peer: bytes) -> list[bytes]:
        groups = list(self._cold_groups.get(peer, ()))
        groups.extend(g for g in self._index.groups_with_new_records(peer) if g not in groups)
        return groups

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        return self._index.due_records(peer, epoch)

    def next_due_epoch(self, peer: bytes) -> int | None:
        return self._index.next_due_epoch(peer)

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        return self._index.inflight_count(peer, group_id)

    def inflight_messages(self, peer: bytes) -> list[bytes]:
        return self._index.inflight_messages(peer)  # in flight = hot: all in memory

    def request_count(self, peer: bytes) -> int:
        return self._index.request_count(peer) + self._cold_requests.get(peer, 0)

    def has_new_records(self, peer: bytes) -> bool:
        return bool(self._cold_peer.get(peer)) or self._index.has_new_records(peer)

    def peers_with_records(self) -> list[bytes]:
        peers = {p for p, n in self._cold_peer.items() if n}
        peers.update(self._index.peers())
        return sorted(peers)

    def pull_forward(self, peer: bytes, beyond_epoch: int, to_epoch: int) -> int:
        return self._index.pull_forward(peer, beyond_epoch, to_epoch, self.update_record)

    def add_group_records(
        self, group_id: bytes, peer: bytes, kind: RecordType, epoch: int, last_rid: int
    ) -> int:
        """One INSERT ... SELECT over the group's messages (the caller flushed
        them; ``last_rid`` is the highest message row): a group of a million
        messages shared with a new peer costs disk, not a million records in
        memory.  Rows come in rid order, so they are appended to the table."""
        gid = self._names.gid.get(group_id)
        if gid is None:
            return 0
        self.spill()  # the table must show this transaction's records
        pid = self._names.pid_for(peer)
        base = next(self._qseq)
        # OR IGNORE skips the messages the peer has a record for (the primary
        # key), and also spares SQLite a statement journal: one for a
        # statement this size would hold tens of MB (temp_store = MEMORY).
        added = self._db.run(
            f"INSERT OR IGNORE INTO records ({_RECORD_COLUMNS}) "
            "SELECT ?, rid, gid, ?, 0, ?, NULL, NULL, ? + rid FROM messages WHERE gid = ?",
            (pid, int(kind), epoch, base, gid),
        )
        # Each record's queue number is base + its message's row: FIFO in
        # history order, after every record placed before it.
        self._qseq = itertools.count(base + last_rid + 1)
        if added:
            self._count_cold(peer, group_id, kind, added)
        return added

    def delete_group_records(self, group_id: bytes, peer: bytes) -> int:
        pid, gid = self._names.pid.get(peer), self._names.gid.get(group_id)
        cold = bool(self._cold_peer.get(peer)) and pid is not None and gid is not None
        if cold:
            self.spill()  # memory then holds only records in flight
        doomed = self._index.records_in_group(group_id, peer)
        for mid in doomed:
            self.delete_record(mid, peer)
        deleted = len(doomed)
        if cold:
            # The rest are cold and untouched: deleted by SQL and counted by
            # kind, never loaded (an unshared backlog may be huge).  In slices
            # in key order: SQLite journals each statement in memory
            # (temp_store = MEMORY), and one DELETE of a million rows (or a
            # GROUP BY over them) would hold tens of MB.
            slices = [
                (
                    kind,
                    "DELETE FROM records WHERE pid = ? AND rid IN (SELECT rid FROM records "
                    "WHERE pid = ? AND gid = ? AND send_count = 0 AND kind = ? "
                    f"LIMIT {BULK_DELETE})",
                    (pid, pid, gid, int(kind)),
                )
                for kind in (RecordType.OFFER, RecordType.MESSAGE)
            ]
            slices.append(
                (
                    _REQUEST,
                    "DELETE FROM requests WHERE pid = ? AND mid IN (SELECT mid FROM requests "
                    f"WHERE pid = ? AND send_count = 0 AND gid = ? LIMIT {BULK_DELETE})",
                    (pid, pid, gid),
                )
            )
            for kind, sql, params in slices:
                removed = 0
                while n := self._db.run(sql, params):
                    removed += n
                if removed:
                    self._count_cold(peer, group_id, kind, -removed)
                    deleted += removed
        return deleted

    def record_count(self) -> int:
        return len(self._hot) + self._cold_total

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        stats: dict[tuple[bytes, RecordType], int] = defaultdict(int)
        for key, n in self._cold_kinds.items():
            if n:
                stats[key] += n
        for key, n in self._index.record_stats().items():
            stats[key] += n
        return dict(stats)

    # -- commit ---------------------------------------------------------------------
    def flush(self) -> None:
        """Write this transaction's changes (before COMMIT)."""
        if not self._dirty:
            return
        hot = self._hot
        pid_for, gid_for = self._names.pid_for, self._names.gid_for
        rid_of = self._rid_of
        seq_of = self._index.seq_of
        record_deletes: list[tuple[int, int]] = []
        request_deletes: list[tuple[bytes, int]] = []
        record_rows = []
        request_rows = []
        for key, origin in self._dirty.items():
            mid, peer = key
            record = hot.get(key)
            table = _NO_ROW if record is None else _table_of(record.kind)
            if origin != table:
                # The committed row goes: deleted, or moving to the other
                # table (a REQUEST settled by the message, then a MESSAGE
                # record to relay it, in one transaction).
                if origin == _IN_RECORDS:
                    rid = rid_of(mid)
                    if rid is not None:
                        record_deletes.append((pid_for(peer), rid))
                elif origin == _IN_REQUESTS:
                    request_deletes.append((mid, pid_for(peer)))
            if record is None:
                continue
            qseq = seq_of(key)
            if table == _IN_REQUESTS:
                request_rows.append(
                    (
                        mid,
                        pid_for(peer),
                        gid_for(record.group_id),
                        record.send_count,
                        record.send_epoch,
                        record.max_sends,
                        record.expires_at,
                        qseq,
                    )
                )
            else:
                rid = rid_of(mid)
                if rid is None:  # pragma: no cover - the engine stores first
                    raise ValueError(f"record for message {mid.hex()} that is not stored")
                record_rows.append(
                    (
                        pid_for(peer),
                        rid,
                        gid_for(record.group_id),
                        int(record.kind),
                        record.send_count,
                        record.send_epoch,
                        record.max_sends,
                        record.expires_at,
                        qseq,
                    )
                )
        db = self._db
        # Key order: neighbouring rows share B-tree pages.
        if record_deletes:
            record_deletes.sort()
            db.many("DELETE FROM records WHERE pid = ? AND rid = ?", record_deletes)
        if request_deletes:
            request_deletes.sort()
            db.many("DELETE FROM requests WHERE mid = ? AND pid = ?", request_deletes)
        if record_rows:
            record_rows.sort()
            db.many(
                f"INSERT OR REPLACE INTO records ({_RECORD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                record_rows,
            )
        if request_rows:
            request_rows.sort()
            db.many(
                f"INSERT OR REPLACE INTO requests ({_REQUEST_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                request_rows,
            )

    def spill(self) -> None:
        """Write this transaction's changes into it now and let its new records
        go cold, as a commit does: the open transaction holds them (a rollback
        still undoes them, and rebuilds memory from the tables), and bulk
        statements can then work on the tables alone."""
        self.flush()
        self.after_commit()

    def after_commit(self) -> None:
        """Committed (or spilled): new records leave memory and become cold."""
        index = self._index
        for key in self._dirty:
            if key in index and not index.is_in_flight(key):
                record = index.remove(key)
                self._count_cold(key[1], record.group_id, record.kind, 1)  # type: ignore[union-attr]
        self._dirty.clear()
        self._seen_cold.clear()
