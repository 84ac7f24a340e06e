"""The durable store: one SQLite file (stdlib ``sqlite3``, WAL), no server.

``SQLiteStore(path)`` implements the whole :class:`mvds.store.base.Store`
protocol, so the engine runs on it unchanged.  How the daemon uses it::

    with store.transaction():        # ONE transaction per wake-up
        engine.receive(...); engine.append(...); store.set_meta(...)
        out = engine.payloads_to_send(now)
    send(out)                        # only after the commit returned

Rules it keeps (docs/STORAGE.md has the details and the measured costs):

* ``transaction()`` commits on success and rolls back on any exception; the
  in-memory caches are then rebuilt from the committed state, so a fresh
  engine can carry on.  Transactions do not nest (RuntimeError).  Calls
  outside a transaction commit one by one (slow, but never lose anything).
* Once ``transaction()`` returns, the data is on disk for any other
  connection: safe against a process crash with ``durability="crash"`` (WAL,
  synchronous=NORMAL, the default), against a power cut with
  ``durability="power"`` (synchronous=FULL: an fsync per commit).
* Every SQLite failure raises :class:`~mvds.store.errors.StoreError` with one
  line naming the file and the cause; the transaction is rolled back, so
  nothing uncommitted is acknowledged and nothing committed is lost.  A
  locked database is waited for ``busy_timeout`` seconds (default 5).
* Readers in other processes use ``SQLiteReader(path)`` (or
  ``SQLiteStore(path, readonly=True)``, which returns one): every call sees
  the latest committed state, never a transaction in progress.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from mvds.engine.records import Record, RecordType
from mvds.store._sqlite_db import DURABILITY_SYNCHRONOUS, Database, Names
from mvds.store._sqlite_messages import MessageLog, decode_stored, select_delivered
from mvds.store._sqlite_records import RecordBook
from mvds.store.base import StoredMessage
from mvds.store.errors import StoreError, from_sqlite
from mvds.store.rangeindex import GroupRanges, RangeIndex
from mvds.store.schema import SCHEMA_VERSION, check_mvds_file, migrate
from mvds.wire import Message

__all__ = ["SQLiteReader", "SQLiteStore"]

DEFAULT_BUSY_TIMEOUT = 5.0
"""Seconds to wait for another connection's write lock before giving up with
"locked".  Only a second writer holds it (readers never block the writer in
WAL mode), and the daemon allows one writer per directory, so a long wait
means something is wrong; five seconds rides out a slow checkpoint."""

_T = TypeVar("_T")


class SQLiteStore:
    """A :class:`mvds.store.base.Store` in one SQLite file."""

    def __new__(cls, path: str | Path, *, readonly: bool = False, **kwargs: Any) -> Any:
        if readonly:
            return SQLiteReader(path, busy_timeout=kwargs.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        return super().__new__(cls)

    def __init__(
        self,
        path: str | Path,
        *,
        durability: str = "crash",
        readonly: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        connection_factory: type[sqlite3.Connection] | None = None,
    ) -> None:
        """Open (creating and migrating as needed) the store at ``path``.

        ``durability`` is "crash" (default) or "power"; see the module doc.
        ``connection_factory`` is an ``sqlite3.Connection`` subclass to use
        (fault-injection tests).
        """
        if durability not in DURABILITY_SYNCHRONOUS:
            raise ValueError(f"durability must be 'crash' or 'power', not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._in_txn = False
        self._broken: StoreError | None = None
        db = self._db = Database.open(
            self.path, readonly=False, busy_timeout=busy_timeout, factory=connection_factory
        )
        try:
            try:
                # Refuse a foreign or newer file before writing anything to it
                # (switching to WAL rewrites the header).
                check_mvds_file(db.conn, self.path)
                db.enable_wal()
                migrate(db.conn, self.path)
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self.path, busy_timeout=busy_timeout) from exc
            db.configure(durability)
            self._names = Names(db)
            self._messages = MessageLog(db, self._names)
            self._records = RecordBook(
                db,
                self._names,
                self._messages.rid_of,
                fresh=self._messages.is_unwritten,
                prefetch=self._messages.prefetch,
            )
            self._load_sharing()
            self._ranges = GroupRanges(self._messages.group_keys, self._messages.has_message)
        except BaseException:
            db.conn.close()
            raise

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, durability={self.durability!r})"

    # -- caches ---------------------------------------------------------------------
    def _load_sharing(self) -> None:
        names = self._names
        self._shares: dict[bytes, dict[bytes, None]] = {
            group_id: {}
            for (group_id,) in self._db.all("SELECT group_id FROM groups WHERE member = 1 ORDER BY gid")
        }
        for gid, pid in self._db.all("SELECT gid, pid FROM shares ORDER BY rowid"):
            self._shares.setdefault(names.group[gid], {})[names.peer[pid]] = None

    def _reload(self) -> None:
        """Forget everything uncommitted: rebuild each cache from the file."""
        self._names.load()
        self._messages.load()
        self._records.load()
        self._load_sharing()
        self._ranges.clear()

    # -- transactions -----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or (on any exception) not at all.

        Does not nest: a nested call raises RuntimeError.
        """
        if self._broken is not None:
            raise self._broken
        if self._in_txn:
            raise RuntimeError("SQLiteStore transactions do not nest")
        db = self._db
        db.error = None
        db.run("BEGIN IMMEDIATE")
        self._in_txn = True
        try:
            yield
            if db.error is not None:
                raise db.error  # a statement failed and the caller swallowed it
            self._messages.flush()
            self._records.flush()
            db.run("COMMIT")
        except BaseException:
            self._in_txn = False
            self._rollback()
            raise
        self._in_txn = False
        self._messages.after_commit()
        self._records.after_commit()

    def _rollback(self) -> None:
        db = self._db
        try:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            db.error = None
            self._reload()
        except (sqlite3.Error, StoreError) as exc:
            error = exc if isinstance(exc, StoreError) else from_sqlite(exc, self.path)
            self._broken = StoreError(
                f"{error} -- store unusable after a failed rollback; reopen it",
                cause=error.cause,
                fatal=True,
            )

    def _autocommit(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a mutating call outside any transaction in one of its own."""
        with self.transaction():
            return method(*args, **kwargs)

    def close(self) -> None:
        """Close the file.  An open transaction is rolled back."""
        conn = self._db.conn
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self._db.close()

    # -- small named values -------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        row = self._db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        if not self._in_txn:
            return self._autocommit(self.set_meta, key, value)
        self._db.run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, bytes(value)))

    # -- groups and sharing ----------------------------------------------------------------
    def join(self, group_id: bytes) -> None:
        if group_id in self._shares:
            return
        if not self._in_txn:
            return self._autocommit(self.join, group_id)
        gid = self._names.gid_for(group_id)
        self._db.run("UPDATE groups SET member = 1 WHERE gid = ?", (gid,))
        self._shares[group_id] = {}

    def groups(self) -> set[bytes]:
        return set(self._shares)

    def is_member(self, group_id: bytes) -> bool:
        return group_id in self._shares

    def share(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.get(group_id)
        if peers is not None and peer in peers:
            return False
        if not self._in_txn:
            return self._autocommit(self.share, group_id, peer)
        self.join(group_id)
        self._db.run(
            "INSERT INTO shares (gid, pid) VALUES (?, ?)",
            (self._names.gid_for(group_id), self._names.pid_for(peer)),
        )
        self._shares[group_id][peer] = None
        return True

    def unshare(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.get(group_id)
        if peers is None or peer not in peers:
            return False
        if not self._in_txn:
            return self._autocommit(self.unshare, group_id, peer)
        self._db.run(
            "DELETE FROM shares WHERE gid = ? AND pid = ?",
            (self._names.gid[group_id], self._names.pid[peer]),
        )
        del peers[peer]
        return True

    def shared_peers(self, group_id: bytes) -> list[bytes]:
        return list(self._shares.get(group_id, ()))

    def is_shared(self, group_id: bytes, peer: bytes) -> bool:
        peers = self._shares.get(group_id)
        return peers is not None and peer in peers

    def sharing(self) -> dict[bytes, list[bytes]]:
        return {group: list(peers) for group, peers in self._shares.items()}

    # -- messages and the DAG ------------------------------------------------------------------
    def has_message(self, message_id: bytes) -> bool:
        return self._messages.has_message(message_id)

    def get_message(self, message_id: bytes) -> Message | None:
        return self._messages.get_message(message_id)

    def get_messages(self, message_ids: list[bytes]) -> dict[bytes, Message]:
        return self._messages.get_messages(message_ids)

    def delivery_seqs(self, message_ids: list[bytes]) -> dict[bytes, int]:
        return self._messages.delivery_seqs(message_ids)

    def get_stored(self, message_id: bytes) -> StoredMessage | None:
        return self._messages.get_stored(message_id)

    def add_message(self, message: Message, *, ready: bool, received_from: bytes | None) -> None:
        if not self._in_txn:
            return self._autocommit(
                self.add_message, message, ready=ready, received_from=received_from
            )
        self._messages.add_message(message, ready, received_from)
        self._ranges.added(message.group_id, message.timestamp, message.id)

    def mark_ready(self, message_id: bytes, *, deliver: bool) -> int | None:
        if not self._in_txn:
            return self._autocommit(self.mark_ready, message_id, deliver=deliver)
        return self._messages.mark_ready(message_id, deliver)

    def is_ready(self, message_id: bytes) -> bool:
        return self._messages.is_ready(message_id)

    def leaves(self, group_id: bytes) -> list[bytes]:
        return self._messages.leaves(group_id)

    def group_message_ids(self, group_id: bytes) -> Iterable[bytes]:
        return self._messages.group_message_ids(group_id)

    def range_index(self, group_id: bytes) -> RangeIndex:
        return self._ranges.get(group_id)

    def warm_range_index(self, group_id: bytes, rows: int) -> bool:
        return self._ranges.warm(group_id, rows)

    def settle_range_indexes(self) -> bool:
        return self._ranges.settle()

    def add_waiting(self, child: bytes, missing_parents: Iterable[bytes]) -> None:
        if not self._in_txn:
            return self._autocommit(self.add_waiting, child, missing_parents)
        self._messages.add_waiting(child, list(missing_parents))

    def waiting_parents(self, child: bytes) -> list[bytes]:
        return self._messages.waiting_parents(child)

    def release_waiting(self, parent: bytes) -> list[bytes]:
        if not self._in_txn:
            return self._autocommit(self.release_waiting, parent)
        return self._messages.release_waiting(parent)

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None = None, *, own: bool = False
    ) -> list[StoredMessage]:
        return self._messages.delivered_since(after_seq, limit, group_id, own)

    def last_seq(self) -> int:
        return self._messages.last_seq

    def message_count(self) -> int:
        return self._messages.count

    # -- sync state ------------------------------------------------------------------------------
    def get_record(self, message_id: bytes, peer: bytes) -> Record | None:
        return self._records.get_record(message_id, peer)

    def delete_requests_for(self, message_id: bytes) -> int:
        if not self._in_txn:
            return self._autocommit(self.delete_requests_for, message_id)
        return self._records.delete_requests_for(message_id)

    def insert_record(self, record: Record) -> None:
        if not self._in_txn:
            return self._autocommit(self.insert_record, record)
        self._records.insert_record(record)

    def update_record(self, record: Record) -> None:
        if not self._in_txn:
            return self._autocommit(self.update_record, record)
        self._records.update_record(record)

    def delete_record(self, message_id: bytes, peer: bytes) -> Record | None:
        if not self._in_txn:
            return self._autocommit(self.delete_record, message_id, peer)
        return self._records.delete_record(message_id, peer)

    def new_records(self, peer: bytes, group_id: bytes, limit: int) -> list[Record]:
        return self._records.new_records(peer, group_id, limit)

    def new_requests(self, peer: bytes, limit: int) -> list[Record]:
        return self._records.new_requests(peer, limit)

    def groups_with_new_records(self, peer: bytes) -> list[bytes]:
        return self._records.groups_with_new_records(peer)

    def due_records(self, peer: bytes, epoch: int) -> list[Record]:
        return self._records.due_records(peer, epoch)

    def next_due_epoch(self, peer: bytes) -> int | None:
        return self._records.next_due_epoch(peer)

    def inflight_count(self, peer: bytes, group_id: bytes) -> int:
        return self._records.inflight_count(peer, group_id)

    def inflight_messages(self, peer: bytes) -> list[bytes]:
        return self._records.inflight_messages(peer)

    def request_count(self, peer: bytes) -> int:
        return self._records.request_count(peer)

    def has_new_records(self, peer: bytes) -> bool:
        return self._records.has_new_records(peer)

    def peers_with_records(self) -> list[bytes]:
        return self._records.peers_with_records()

    def pull_forward(self, peer: bytes, beyond_epoch: int, to_epoch: int) -> int:
        if not self._in_txn:
            return self._autocommit(self.pull_forward, peer, beyond_epoch, to_epoch)
        return self._records.pull_forward(peer, beyond_epoch, to_epoch)

    def add_group_records(
        self, group_id: bytes, peer: bytes, kind: RecordType, epoch: int
    ) -> int:
        if not self._in_txn:
            return self._autocommit(self.add_group_records, group_id, peer, kind, epoch)
        self._messages.flush()
        return self._records.add_group_records(group_id, peer, kind, epoch, self._messages.count)

    def delete_group_records(self, group_id: bytes, peer: bytes) -> int:
        if not self._in_txn:
            return self._autocommit(self.delete_group_records, group_id, peer)
        return self._records.delete_group_records(group_id, peer)

    def record_count(self) -> int:
        return self._records.record_count()

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        return self._records.record_stats()


class SQLiteReader:
    """Read-only access to a store another process (the daemon) writes.

    Holds no caches: every call reads the latest committed state (WAL lets
    it run alongside the writer, never blocking it), so ``mvds tail`` and the
    embedding API resume from a seq cursor with ``delivered_since`` and poll
    ``last_seq``.  Opening needs an existing store at the current schema
    version (the writer migrates; a reader never writes).
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"store {self.path}: no such file", cause="cannot open")
        db = self._db = Database.open(self.path, readonly=True, busy_timeout=busy_timeout)
        try:
            try:
                version = check_mvds_file(db.conn, self.path)
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self.path) from exc
            if version == 0:
                raise StoreError(f"store {self.path}: empty file, not an mvds store yet", cause="not mvds")
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path}: schema version {version} predates this mvds "
                    f"({SCHEMA_VERSION}); open it once for writing (mvds run) to migrate it",
                    cause="old schema",
                )
            self._names = Names(db)
        except BaseException:
            db.conn.close()
            raise

    def __enter__(self) -> "SQLiteReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _stored(self, row: tuple) -> StoredMessage:
        encoded, ready, seq, src = row
        peer = None if src is None else self._peer(src)
        return StoredMessage(decode_stored(encoded), bool(ready), seq, peer)

    def _peer(self, pid: int) -> bytes:
        peer = self._names.peer.get(pid)
        if peer is None:  # a peer the writer added after we loaded the names
            self._names.load()
            peer = self._names.peer[pid]
        return peer

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several statements that must see one committed state."""
        self._db.run("BEGIN")
        try:
            yield
        finally:
            if self._db.conn.in_transaction:
                self._db.conn.execute("COMMIT")

    def delivered_since(
        self, after_seq: int, limit: int, group_id: bytes | None = None, *, own: bool = False
    ) -> list[StoredMessage]:
        if group_id is not None and group_id not in self._names.gid:
            self._names.load()
        return select_delivered(
            self._db, self._names, after_seq, limit, group_id, self._stored, own=own
        )

    def last_seq(self) -> int:
        return self._db.one("SELECT max(seq) FROM messages")[0] or 0

    def message_count(self) -> int:
        return self._db.one("SELECT max(rid) FROM messages")[0] or 0

    # The writer keeps the newest ids in memory (rows above 'indexed_upto');
    # a reader finds those by scanning that short tail of the table.
    _BY_ID = (
        "SELECT {columns} FROM messages WHERE rid = (SELECT rid FROM message_ids WHERE id = ?1) "
        "UNION ALL SELECT {columns} FROM messages WHERE rid > coalesce("
        "(SELECT value FROM internal WHERE key = 'indexed_upto'), 0) AND id = ?1 LIMIT 1"
    )

    def has_message(self, message_id: bytes) -> bool:
        return self._db.one(self._BY_ID.format(columns="1"), (message_id,)) is not None

    def get_stored(self, message_id: bytes) -> StoredMessage | None:
        row = self._db.one(
            self._BY_ID.format(columns="encoded, ready, seq, src"), (message_id,)
        )
        return None if row is None else self._stored(row)

    def get_message(self, message_id: bytes) -> Message | None:
        stored = self.get_stored(message_id)
        return None if stored is None else stored.message

    def get_meta(self, key: str) -> bytes | None:
        row = self._db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def sharing(self) -> dict[bytes, list[bytes]]:
        with self._snapshot():
            self._names.load()
            names = self._names
            out: dict[bytes, list[bytes]] = {
                group_id: []
                for (group_id,) in self._db.all(
                    "SELECT group_id FROM groups WHERE member = 1 ORDER BY gid"
                )
            }
            for gid, pid in self._db.all("SELECT gid, pid FROM shares ORDER BY rowid"):
                out.setdefault(names.group[gid], []).append(names.peer[pid])
        return out

    def groups(self) -> set[bytes]:
        return set(self.sharing())

    def record_count(self) -> int:
        return self._db.one(
            "SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM requests)"
        )[0]

    def record_stats(self) -> dict[tuple[bytes, RecordType], int]:
        stats: dict[tuple[bytes, RecordType], int] = defaultdict(int)
        with self._snapshot():
            # Grouped by the primary key's prefix and summed by kind: GROUP BY
            # kind too would sort every record (a backlog may be millions).
            kinds = (RecordType.OFFER, RecordType.MESSAGE)
            sums = ", ".join(f"sum(kind = {int(kind)})" for kind in kinds)
            for pid, *counts in self._db.all(f"SELECT pid, {sums} FROM records GROUP BY pid"):
                for kind, n in zip(kinds, counts):
                    if n:
                        stats[(self._peer(pid), kind)] += n
            for pid, n in self._db.all("SELECT pid, count(*) FROM requests GROUP BY pid"):
                stats[(self._peer(pid), RecordType.REQUEST)] += n
        return dict(stats)
