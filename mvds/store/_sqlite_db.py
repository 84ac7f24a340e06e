"""One SQLite connection with the store's settings and error translation.

Every statement the SQLite store runs goes through :class:`Database`, so any
``sqlite3`` error becomes a :class:`~mvds.store.errors.StoreError` that names
the file and the cause, and the first error of a transaction is remembered:
a transaction whose statement failed is never committed, even if the caller
swallowed the exception.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Sequence

from mvds.store.errors import StoreError, from_sqlite
from mvds.store.schema import UNKNOWN_GROUP_GID

DURABILITY_SYNCHRONOUS = {"crash": "NORMAL", "power": "FULL"}
"""WAL journal plus this ``synchronous`` level per durability setting.

"crash": a commit is safe once it returns if the process dies (the WAL is in
the OS page cache); a power cut may lose the last commits, never corrupts.
"power": every commit fsyncs the WAL before returning.
"""

# Python 3.11's sqlite3 passes every bytes, None and bool parameter through
# its adaptation protocol, which looks for __adapt__ / __conform__ and fails,
# building and discarding two AttributeErrors per parameter: about 6% of a
# busy node's CPU.  An adapter registered for the exact type short-cuts it.
# Each returns the value sqlite3 would bind anyway (bytes(b) is b for exact
# bytes; None binds as NULL; a bool as its int), so no other user of sqlite3
# in the process sees a difference.
def _unchanged(value: None) -> None:
    return value


sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), _unchanged)
sqlite3.register_adapter(bool, int)

CACHE_KIB = 16 * 1024
"""SQLite page cache per connection.  Big enough to hold the hot index pages
of a million-message store, small enough for the memory budget."""


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0600) if it does not exist yet.

    SQLite would create it with the umask's mode (usually 0644); it gives
    its -wal and -shm files the main file's mode, so creating the main file
    first keeps the messages unreadable to other users on the machine.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # it exists, or sqlite3.connect will report why not, in the store's words
        return
    os.close(fd)


class Database:
    """A connection plus the file name to put into error messages."""

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
        self.conn = conn
        self.path = path
        self.busy_timeout = busy_timeout
        self.error: StoreError | None = None
        """First failure since the current transaction began (None if none)."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readonly: bool,
        busy_timeout: float,
        factory: type[sqlite3.Connection] | None = None,
    ) -> "Database":
        """Connect (creating the file unless ``readonly``); no transaction open."""
        mode = "ro" if readonly else "rwc"
        if not readonly:
            _create_private(path)
        uri = f"{path.resolve().as_uri()}?mode={mode}"
        kwargs: dict[str, Any] = {
            "uri": True,
            "timeout": busy_timeout,
            "isolation_level": None,  # we issue BEGIN/COMMIT ourselves
            "cached_statements": 256,
        }
        if factory is not None:
            kwargs["factory"] = factory
        try:
            conn = sqlite3.connect(uri, **kwargs)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, path) from exc
        return cls(conn, path, busy_timeout)

    def configure(self, durability: str) -> None:
        """Apply the per-connection settings (WAL must already be on for writers)."""
        self.execute_script(
            [
                f"PRAGMA synchronous = {DURABILITY_SYNCHRONOUS[durability]}",
                f"PRAGMA cache_size = -{CACHE_KIB}",
                "PRAGMA temp_store = MEMORY",
                # Keep the WAL from growing without bound between checkpoints.
                "PRAGMA journal_size_limit = 67108864",
            ]
        )

    def enable_wal(self) -> None:
        mode = self.one("PRAGMA journal_mode = WAL")
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(
                f"store {self.path}: cannot switch the database to WAL mode (got {mode and mode[0]})",
                cause="io",
            )

    # -- statements ----------------------------------------------------------
    def fail(self, exc: sqlite3.Error) -> StoreError:
        error = from_sqlite(exc, self.path, busy_timeout=self.busy_timeout)
        if self.error is None:
            self.error = error
        return error

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement; return how many rows it changed."""
        try:
            return self.conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute an INSERT; return the new row's rowid."""
        try:
            cursor = self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc
        rowid = cursor.lastrowid
        assert rowid is not None
        return rowid

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc

    def execute_script(self, statements: Iterable[str]) -> None:
        for statement in statements:
            self.one(statement)

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error as exc:
            raise from_sqlite(exc, self.path) from exc


class Names:
    """Peer and group ids interned as small integers (rows of peers / groups).

    Rows elsewhere carry the integers; these maps are tiny (one entry per
    peer and group ever seen) and live in memory.  New rows are written in
    the caller's transaction; :meth:`load` after a rollback forgets any that
    were not committed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.pid: dict[bytes, int] = {}
        self.peer: dict[int, bytes] = {}
        self.gid: dict[bytes, int] = {}
        self.group: dict[int, bytes] = {}
        self.load()

    def load(self) -> None:
        self.peer = dict(self._db.all("SELECT pid, peer FROM peers"))
        self.pid = {peer: pid for pid, peer in self.peer.items()}
        self.group = dict(self._db.all("SELECT gid, group_id FROM groups"))
        self.group.setdefault(UNKNOWN_GROUP_GID, b"")
        self.gid = {group: gid for gid, group in self.group.items()}

    def pid_for(self, peer: bytes) -> int:
        pid = self.pid.get(peer)
        if pid is None:
            pid = self._db.insert("INSERT INTO peers (peer) VALUES (?)", (peer,))
            self.pid[peer] = pid
            self.peer[pid] = peer
        return pid

    def gid_for(self, group_id: bytes) -> int:
        gid = self.gid.get(group_id)
        if gid is None:
            gid = self._db.insert("INSERT INTO groups (group_id) VALUES (?)", (group_id,))
            self.gid[group_id] = gid
            self.group[gid] = group_id
        return gid
