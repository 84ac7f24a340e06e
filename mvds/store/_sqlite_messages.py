"""Messages, the DAG and delivery numbers in SQLite.

Writes are buffered for the length of a transaction and go to SQLite in a
few ``executemany`` calls at commit: a received message is typically added,
marked ready and given its seq in the same wake-up, which then costs one
INSERT instead of an INSERT and an UPDATE.  Reads consult the buffer first;
queries that SQL must answer over many rows (a group's messages, delivered
ranges) flush the buffer into the open transaction first.

Leaves are cached per group and written back as a net difference at commit
(a chain of a thousand appends changes one leaf).  Ids named as parents
before they were stored ("dangling") and messages held for their parents
("waiting") are rare and written straight through; counters of both let the
hot path skip SQL when there are none.

Recently committed messages stay in memory for a while (:class:`RecentCache`,
bounded by count): a busy node sends what it just stored and its readers ask
for what it just delivered, and both would otherwise read back and re-decode
rows that were in memory moments ago.

Ids are found without a per-row random index write: the ids of the newest
rows (``rid > indexed_upto``, at most ``INDEX_BATCH`` of them) are held in
memory, and every ``INDEX_BATCH`` messages they go into ``message_ids`` in
one sorted pass (schema version 2 explains why).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

from mvds._pb import mvds_pb2 as _pb
from mvds.store._idfilter import IdFilter
from mvds.store._sqlite_db import Database, Names
from mvds.store.base import StoredMessage
from mvds.store.rangeindex import encoded_timestamp
from mvds.wire import Message, encode_message

PAGE = 1000
"""Rows fetched per query when paging through a long result."""

RECENT_MESSAGES = 8192
"""Committed messages kept in memory (about 4 MB at 256-byte bodies)."""

INDEX_BATCH = 16384
"""Ids held in memory before they are written into ``message_ids`` in one
sorted pass (about 2 MB of memory; the pass takes tens of milliseconds on a
million-message store, once per this many messages)."""

RID_CACHE = 16384
"""Row numbers of older messages looked up recently (records name rows)."""


def decode_stored(encoded: bytes, mid: bytes | None = None) -> Message:
    """Rebuild a stored message from its wire encoding (kept for sending).

    ``mid``, when the caller read it from the same row, saves re-hashing.
    """
    pm = _pb.Message.FromString(encoded)
    parents = tuple(pm.metadata.parents) if pm.HasField("metadata") else ()
    return Message._from_wire(pm.group_id, pm.timestamp, pm.body, parents, False, encoded, mid)


_FIELDS = frozenset(("group_id", "timestamp", "body", "parents", "ephemeral"))


class _LazyMessage(Message):
    """A stored message read back to be sent: sending needs only its id and
    its encoding, so the fields are parsed on first use (most never are)."""

    __slots__ = ()

    def __init__(self, mid: bytes, encoded: bytes) -> None:  # noqa: D107 - no super(): lazy
        self.id = mid
        self._encoded = encoded
        self.ephemeral = False  # never stored (add_message refuses them): no parse to ask

    def __getattr__(self, name: str) -> object:
        if name not in _FIELDS:
            raise AttributeError(name)
        full = decode_stored(self._encoded, self.id)
        for field in _FIELDS:
            setattr(self, field, getattr(full, field))
        return getattr(self, name)


class _Unwritten(StoredMessage):
    """A message added in the current transaction, not yet INSERTed.

    It is the :class:`StoredMessage` readers get once committed (the recent
    cache hands out this very object), so committing builds nothing new.
    Nothing changes it after its transaction committed.
    """

    __slots__ = ("rid", "gid")

    def __init__(
        self, rid: int, message: Message, gid: int, ready: bool, src: bytes | None
    ) -> None:
        self.rid = rid
        self.message = message
        self.gid = gid
        self.ready = ready
        self.seq: int | None = None
        self.received_from = src


class RecentCache:
    """The last committed messages, by id and (for delivered ones) by seq.

    Only committed state goes in (``promote`` runs after COMMIT), so a
    rollback never leaves a cached message that the file does not hold.
    The seq index covers one contiguous range ``[low, high]``: a reader
    asking from inside it is answered from memory, anyone else from SQL.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = RECENT_MESSAGES if size is None else size
        # OrderedDict: evicting the oldest of a plain dict is slow once many
        # have been deleted from its front (iteration skips the holes).
        self.by_id: OrderedDict[bytes, Message] = OrderedDict()
        self.by_seq: dict[int, StoredMessage] = {}
        self.low = 1  # lowest seq in by_seq, when it is not empty
        self.pending: list[_Unwritten] = []  # written, not yet committed

    def promote(self) -> None:
        """The transaction that wrote ``pending`` committed."""
        by_id, by_seq = self.by_id, self.by_seq
        delivered = []
        for u in self.pending:
            by_id[u.message.id] = u.message
            if u.seq is not None:
                delivered.append(u)
        self.pending.clear()
        delivered.sort(key=lambda u: u.seq)  # type: ignore[arg-type, return-value]
        for u in delivered:
            if by_seq and u.seq != self.low + len(by_seq):
                by_seq.clear()  # not contiguous: start the range afresh
            if not by_seq:
                self.low = u.seq  # type: ignore[assignment]
            by_seq[u.seq] = u  # type: ignore[index]
        while len(by_id) > self.size:
            by_id.popitem(last=False)
        while len(by_seq) > self.size:
            del by_seq[self.low]
            self.low += 1

    def forget_seqs(self) -> None:
        """A seq was given outside the cache's view: drop the seq range."""
        self.by_seq.clear()

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None, last_seq: int, own: bool
    ) -> list[StoredMessage] | None:
        """Answer from memory if the range runs from ``after_seq + 1`` (or
        lower) up to ``last_seq``; None when SQL must answer."""
        by_seq = self.by_seq
        high = self.low + len(by_seq)  # one past the newest cached seq
        if not by_seq or high != last_seq + 1 or not self.low <= after_seq + 1 <= high:
            return None
        out: list[StoredMessage] = []
        for seq in range(after_seq + 1, high):
            stored = by_seq[seq]
            if not own and stored.received_from is None:
                continue
            if group_id is None or stored.message.group_id == group_id:
                out.append(stored)
                if len(out) >= limit:
                    break
        return out


class MessageLog:
    """The messages table, the DAG tables and the delivery sequence."""

    def __init__(self, db: Database, names: Names) -> None:
        self._db = db
        self._names = names
        self.load()
        self._filter = self._build_filter()
        """Ids that may be stored.  Built once at open and kept across
        rollbacks: ids it holds in excess only cost a lookup."""

    def _build_filter(self) -> IdFilter:
        """Every id in the table as this connection sees it (flushed rows of
        an open transaction too) plus the unwritten ones."""
        def ids() -> Iterator[bytes]:
            # From message_ids alone (in key order: a tenth of the pages the
            # messages table, with every body, would cost), then the newest
            # ids, which are held in memory until they are indexed.
            after = b""
            while True:
                rows = self._db.all(
                    "SELECT id FROM message_ids WHERE id > ? ORDER BY id LIMIT ?",
                    (after, PAGE * 10),
                )
                for (mid,) in rows:
                    yield mid
                if len(rows) < PAGE * 10:
                    break
                after = rows[-1][0]
            yield from self._unindexed
            yield from self._unwritten

        return IdFilter.of(ids(), self.count + len(self._unwritten))

    def load(self) -> None:
        """(Re)build every cache from committed state (open, after a rollback)."""
        db = self._db
        self._unwritten: dict[bytes, _Unwritten] = {}
        self._prefetched: dict[bytes, Message] = {}
        self.recent = RecentCache()
        self._absent: bytes | None = None  # last id has_message found absent
        self.count: int = db.one("SELECT max(rid) FROM messages")[0] or 0
        self.last_seq: int = db.one("SELECT max(seq) FROM messages")[0] or 0
        self._leaves: dict[int, dict[bytes, None]] = {}
        self._leaves_added: dict[tuple[int, bytes], None] = {}
        self._leaves_removed: set[tuple[int, bytes]] = set()
        self._dangling: int = db.one("SELECT count(*) FROM dangling")[0]
        self._waiting: int = db.one("SELECT count(*) FROM waiting")[0]
        row = db.one("SELECT value FROM internal WHERE key = 'indexed_upto'")
        self.indexed_upto: int = row[0] if row else 0
        self._unindexed: dict[bytes, int] = dict(
            db.all("SELECT id, rid FROM messages WHERE rid > ?", (self.indexed_upto,))
        )
        """Id -> row of every written row not yet in ``message_ids``."""
        self._rids: OrderedDict[bytes, int] = OrderedDict()

    # -- writing back ---------------------------------------------------------
    def flush(self) -> None:
        """Write buffered rows into the open transaction."""
        db = self._db
        if self._unwritten:
            pid_for = self._names.pid_for
            rows = [
                (
                    u.rid,
                    mid,
                    u.gid,
                    encode_message(u.message),
                    u.ready,
                    u.seq,
                    None if u.received_from is None else pid_for(u.received_from),
                )
                for mid, u in self._unwritten.items()
            ]
            self.recent.pending.extend(self._unwritten.values())
            db.many(
                "INSERT INTO messages (rid, id, gid, encoded, ready, seq, src) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            unindexed = self._unindexed
            for mid, u in self._unwritten.items():
                unindexed[mid] = u.rid
            self._unwritten.clear()
            if len(unindexed) >= INDEX_BATCH:
                self._index_ids()
        if self._leaves_removed:
            db.many("DELETE FROM leaves WHERE gid = ? AND id = ?", self._leaves_removed)
            self._leaves_removed.clear()
        if self._leaves_added:
            db.many("INSERT INTO leaves (gid, id) VALUES (?, ?)", self._leaves_added)
            self._leaves_added.clear()

    def _index_ids(self) -> None:
        """Move the in-memory ids into ``message_ids``, sorted (one write per
        index page touched, not one per id), within the open transaction.  A
        rollback reloads ``indexed_upto`` and the ids from the file."""
        db = self._db
        db.many(
            "INSERT INTO message_ids (id, rid) VALUES (?, ?)", sorted(self._unindexed.items())
        )
        self.indexed_upto = self.count
        db.run(
            "INSERT OR REPLACE INTO internal (key, value) VALUES ('indexed_upto', ?)",
            (self.indexed_upto,),
        )
        self._unindexed = {}

    def rid_of(self, mid: bytes) -> int | None:
        """The row number of a stored message (None if it is not stored)."""
        u = self._unwritten.get(mid)
        if u is not None:
            return u.rid
        rid = self._unindexed.get(mid)
        if rid is not None:
            return rid
        rids = self._rids
        rid = rids.get(mid)
        if rid is not None:
            return rid
        if not self._filter.may_contain(mid):
            return None
        row = self._db.one("SELECT rid FROM message_ids WHERE id = ?", (mid,))
        if row is None:
            return None
        self._remember_rid(mid, row[0])
        return row[0]

    def _remember_rid(self, mid: bytes, rid: int) -> None:
        rids = self._rids
        rids[mid] = rid
        if len(rids) > RID_CACHE:
            rids.popitem(last=False)

    def after_commit(self) -> None:
        """Committed: what was written joins the recent cache."""
        self.recent.promote()
        self._prefetched.clear()

    def prefetch(self, mid: bytes, rid: int, encoded: bytes) -> None:
        """A row read along with something else (a record about to be sent):
        keep it for :meth:`get_message` until the transaction ends."""
        if mid not in self._prefetched:
            self._prefetched[mid] = _LazyMessage(mid, encoded)
            if rid <= self.indexed_upto:
                self._remember_rid(mid, rid)

    # -- messages -------------------------------------------------------------
    def is_unwritten(self, mid: bytes) -> bool:
        """Added in this transaction (so no committed row names it yet)."""
        return mid in self._unwritten

    def has_message(self, mid: bytes) -> bool:
        if mid in self._unwritten or mid in self._unindexed:
            return True
        if not self._filter.may_contain(mid):
            self._absent = mid
            return False
        if mid in self._rids:
            return True
        if self._db.one("SELECT 1 FROM message_ids WHERE id = ?", (mid,)) is None:
            self._absent = mid
            return False
        return True

    def _row(self, mid: bytes) -> tuple | None:
        rid = self.rid_of(mid)
        if rid is None:
            return None
        return self._db.one("SELECT encoded, ready, seq, src FROM messages WHERE rid = ?", (rid,))

    def get_message(self, mid: bytes) -> Message | None:
        unwritten = self._unwritten.get(mid)
        if unwritten is not None:
            return unwritten.message
        recent = self.recent.by_id.get(mid) or self._prefetched.get(mid)
        if recent is not None:
            return recent
        rid = self.rid_of(mid)
        if rid is None:
            return None
        row = self._db.one("SELECT encoded FROM messages WHERE rid = ?", (rid,))
        return None if row is None else decode_stored(row[0], mid)

    def get_messages(self, mids: list[bytes]) -> dict[bytes, Message]:
        """Many messages, one query per 500 for those not in memory."""
        out: dict[bytes, Message] = {}
        rest = []
        for mid in mids:
            unwritten = self._unwritten.get(mid)
            if unwritten is not None:
                out[mid] = unwritten.message
                continue
            recent = self.recent.by_id.get(mid) or self._prefetched.get(mid)
            if recent is not None:
                out[mid] = recent
            else:
                rest.append(mid)
        for mid, encoded in self._committed(rest, "encoded"):
            out[mid] = _LazyMessage(mid, encoded)  # read to be sent: parsed if used
        return out

    def delivery_seqs(self, mids: list[bytes]) -> dict[bytes, int]:
        """The delivery sequence number of each of ``mids`` that has one
        (stored and handed over), in batches (:meth:`_committed`)."""
        out: dict[bytes, int] = {}
        rest = []
        for mid in mids:
            u = self._unwritten.get(mid)
            if u is None:
                rest.append(mid)
            elif u.seq is not None:
                out[mid] = u.seq
        for mid, seq in self._committed(rest, "seq"):
            if seq is not None:
                out[mid] = seq
        return out

    def _committed(self, mids: list[bytes], column: str) -> Iterator[tuple[bytes, Any]]:
        """(id, ``column``) of the written rows among ``mids``, one query
        per 500: ids not yet in ``message_ids`` (this session's, see
        INDEX_BATCH) by row number, the rest through ``message_ids``."""
        by_id: list[bytes] = []
        by_rid: dict[int, bytes] = {}
        unindexed = self._unindexed
        for mid in mids:
            rid = unindexed.get(mid)
            if rid is None:
                by_id.append(mid)
            else:
                by_rid[rid] = mid
        db = self._db
        for start in range(0, len(by_id), 500):
            chunk = by_id[start : start + 500]
            for mid, value in db.all(
                f"SELECT i.id, m.{column} FROM message_ids i JOIN messages m ON m.rid = i.rid"
                f" WHERE i.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                yield bytes(mid), value
        rids = list(by_rid)
        for start in range(0, len(rids), 500):
            chunk = rids[start : start + 500]
            for rid, value in db.all(
                f"SELECT rid, {column} FROM messages WHERE rid IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                yield by_rid[rid], value

    def get_stored(self, mid: bytes) -> StoredMessage | None:
        u = self._unwritten.get(mid)
        if u is not None:
            return StoredMessage(u.message, u.ready, u.seq, u.received_from)
        row = self._row(mid)
        return None if row is None else self._stored(row)

    def _stored(self, row: tuple) -> StoredMessage:
        encoded, ready, seq, src = row
        peer = None if src is None else self._names.peer[src]
        return StoredMessage(decode_stored(encoded), bool(ready), seq, peer)

    def add_message(self, message: Message, ready: bool, received_from: bytes | None) -> None:
        mid = message.id
        if message.ephemeral:
            raise ValueError("ephemeral messages are never stored")
        if mid != self._absent and self.has_message(mid):
            raise ValueError(f"message {mid.hex()} is already stored")
        self._absent = None
        gid = self._names.gid_for(message.group_id)
        self.count += 1
        u = self._unwritten[mid] = _Unwritten(self.count, message, gid, ready, received_from)
        if ready and received_from is None:  # own: a place in the one delivery sequence
            self.last_seq += 1
            u.seq = self.last_seq
        self._filter.add(mid)
        if self._filter.needs_rebuild():
            self._filter = self._build_filter()  # twice the room; this id included
        if ready:
            self._became_ready(message, gid)

    def _became_ready(self, message: Message, gid: int) -> None:
        """The leaves are those of the DAG of READY messages: a message held
        for its parents neither is a leaf nor hides its parents until it is
        ready, so a local append never names an undelivered message as a
        parent (that would let a descendant be delivered before it)."""
        mid = message.id
        leaves = self._leaves_of(gid)
        for parent in message.parents:
            if parent in leaves:
                self._remove_leaf(gid, parent, leaves)
            elif not self.is_ready(parent):
                # Named by a ready message, not ready itself (not stored, or
                # held): once it is ready it is not a leaf.
                self._add_dangling(parent)
        self._absent = None
        referenced = mid in message.parents or (self._dangling and self._take_dangling(mid))
        if not referenced and mid not in leaves:
            leaves[mid] = None
            self._leaves_added[(gid, mid)] = None

    def mark_ready(self, mid: bytes, deliver: bool) -> int | None:
        u = self._unwritten.get(mid)
        if u is not None:
            if not u.ready:
                u.ready = True
                self._became_ready(u.message, u.gid)
            if deliver and u.seq is None:
                self.last_seq += 1
                u.seq = self.last_seq
            return u.seq
        rid = self.rid_of(mid)
        row = None if rid is None else self._db.one(
            "SELECT seq, ready, gid, encoded FROM messages WHERE rid = ?", (rid,)
        )
        if row is None:
            raise KeyError(f"message {mid.hex()} is not stored")
        seq, ready, gid, encoded = row
        if not ready:
            self._became_ready(decode_stored(encoded), gid)
        if deliver and seq is None:
            self.last_seq += 1
            seq = self.last_seq
            self.recent.forget_seqs()
        self._db.run("UPDATE messages SET ready = 1, seq = ? WHERE rid = ?", (seq, rid))
        return seq

    def is_ready(self, mid: bytes) -> bool:
        u = self._unwritten.get(mid)
        if u is not None:
            return u.ready
        rid = self.rid_of(mid)
        if rid is None:
            return False
        row = self._db.one("SELECT ready FROM messages WHERE rid = ?", (rid,))
        return row is not None and bool(row[0])

    def group_message_ids(self, group_id: bytes) -> Iterator[bytes]:
        gid = self._names.gid.get(group_id)
        if gid is None:
            return iter(())
        self.flush()
        return self._page_group(gid, self.count)

    def group_keys(self, group_id: bytes) -> Iterator[tuple[int, bytes]]:
        """(timestamp, id) of every stored message of a group (in rid order).

        Resumable (GroupRanges.warm reads it a slice at a time between
        steps): each page is read when the last is used up, after writing
        the open transaction's buffered rows, and it ends only at a page
        that finds nothing, so rows stored meanwhile are read too."""
        after = 0
        while True:
            gid = self._names.gid.get(group_id)  # interned by the first message
            if gid is None:
                return
            self.flush()
            rows = self._db.all(
                # Only the bytes that hold the timestamp (after the group id).
                "SELECT rid, id, substr(encoded, 35, 11) FROM messages "
                "WHERE gid = ? AND rid > ? ORDER BY rid LIMIT ?",
                (gid, after, PAGE * 10),
            )
            if not rows:
                return
            for _, mid, head in rows:
                yield encoded_timestamp(head, 0), mid
            after = rows[-1][0]

    def _page_group(self, gid: int, last_rid: int) -> Iterator[bytes]:
        after = 0
        while True:
            rows = self._db.all(
                "SELECT rid, id FROM messages WHERE gid = ? AND rid > ? AND rid <= ? "
                "ORDER BY rid LIMIT ?",
                (gid, after, last_rid, PAGE),
            )
            for _, mid in rows:
                yield mid
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None, own: bool = False
    ) -> list[StoredMessage]:
        if not self._unwritten and limit > 0 and after_seq >= 0:
            cached = self.recent.delivered_since(after_seq, limit, group_id, self.last_seq, own)
            if cached is not None:
                return cached
        self.flush()
        return select_delivered(
            self._db, self._names, after_seq, limit, group_id, self._stored, own=own
        )

    # -- leaves -----------------------------------------------------------------
    def _leaves_of(self, gid: int) -> dict[bytes, None]:
        leaves = self._leaves.get(gid)
        if leaves is None:
            rows = self._db.all("SELECT id FROM leaves WHERE gid = ? ORDER BY rowid", (gid,))
            leaves = self._leaves[gid] = {mid: None for (mid,) in rows}
        return leaves

    def _remove_leaf(self, gid: int, mid: bytes, leaves: dict[bytes, None]) -> None:
        del leaves[mid]
        key = (gid, mid)
        if key in self._leaves_added:
            del self._leaves_added[key]
        else:
            self._leaves_removed.add(key)

    def leaves(self, group_id: bytes) -> list[bytes]:
        gid = self._names.gid.get(group_id)
        return [] if gid is None else list(self._leaves_of(gid))

    def _add_dangling(self, mid: bytes) -> None:
        self._dangling += self._db.run("INSERT OR IGNORE INTO dangling (id) VALUES (?)", (mid,))

    def _take_dangling(self, mid: bytes) -> bool:
        taken = self._db.run("DELETE FROM dangling WHERE id = ?", (mid,))
        self._dangling -= taken
        return bool(taken)

    # -- messages held for their parents ----------------------------------------
    def add_waiting(self, child: bytes, parents: list[bytes]) -> None:
        db = self._db
        for parent in parents:
            self._waiting += db.run(
                "INSERT OR IGNORE INTO waiting (parent, child) VALUES (?, ?)", (parent, child)
            )

    def waiting_parents(self, child: bytes) -> list[bytes]:
        if not self._waiting:
            return []
        rows = self._db.all("SELECT parent FROM waiting WHERE child = ? ORDER BY parent", (child,))
        return [parent for (parent,) in rows]

    def release_waiting(self, parent: bytes) -> list[bytes]:
        if not self._waiting:
            return []
        db = self._db
        rows = db.all("SELECT child FROM waiting WHERE parent = ? ORDER BY rowid", (parent,))
        if not rows:
            return []
        self._waiting -= db.run("DELETE FROM waiting WHERE parent = ?", (parent,))
        return [
            child
            for (child,) in rows
            if db.one("SELECT 1 FROM waiting WHERE child = ? LIMIT 1", (child,)) is None
        ]


def select_delivered(
    db: Database,
    names: Names,
    after_seq: int,
    limit: int,
    group_id: bytes | None,
    stored,
    *,
    own: bool = False,
) -> list[StoredMessage]:
    """Messages with ``seq > after_seq`` in seq order (shared with the reader);
    received ones only unless ``own``."""
    if limit <= 0:
        return []
    columns = "SELECT encoded, ready, seq, src FROM messages"
    received = "" if own else " AND src IS NOT NULL"
    if group_id is None:
        rows = db.all(
            f"{columns} WHERE seq > ?{received} ORDER BY seq LIMIT ?", (after_seq, limit)
        )
    else:
        gid = names.gid.get(group_id)
        if gid is None:
            return []
        rows = db.all(
            f"{columns} WHERE seq > ? AND gid = ?{received} ORDER BY seq LIMIT ?",
            (after_seq, gid, limit),
        )
    return [stored(row) for row in rows]
