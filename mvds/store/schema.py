"""The SQLite store's schema: versioned, with forward migrations.

``PRAGMA user_version`` holds the schema version and ``PRAGMA
application_id`` marks the file as an mvds store, so that opening some other
SQLite file is refused instead of being "migrated".  ``MIGRATIONS[n]`` takes a
database from version ``n`` to ``n + 1``; version 0 is an empty file.  A
migration is a list of SQL statements run in the same transaction as the
version bump, so a crash mid-migration leaves the old version intact.

Add a migration, never edit one that has shipped: files in the wild were
made by it.  docs/STORAGE.md describes each table.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mvds.store.errors import SchemaTooNew, StoreError

APPLICATION_ID = 0x4D564453  # "MVDS"

UNKNOWN_GROUP_GID = 0
"""Row of ``groups`` standing for the unknown group of REQUEST records made
from OFFERs (:data:`mvds.engine.records.UNKNOWN_GROUP`, the empty id)."""

_V1 = [
    # The store's own bookkeeping (counters that must survive restarts).
    """CREATE TABLE internal (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # Small named values of the I/O shell (Store.get_meta / set_meta).
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    # Peer and group ids are interned: rows elsewhere carry small integers.
    """CREATE TABLE peers (
        pid INTEGER PRIMARY KEY,
        peer BLOB NOT NULL UNIQUE
    )""",
    """CREATE TABLE groups (
        gid INTEGER PRIMARY KEY,
        group_id BLOB NOT NULL UNIQUE,
        member INTEGER NOT NULL DEFAULT 0
    )""",
    f"INSERT INTO groups (gid, group_id, member) VALUES ({UNKNOWN_GROUP_GID}, x'', 0)",
    # Rowid order is sharing order (Store.shared_peers is stable).
    """CREATE TABLE shares (
        gid INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        UNIQUE (gid, pid)
    )""",
    # One row per stored message, in arrival order (rid).  ``encoded`` is the
    # message's protobuf wire encoding, reused as is for every send.
    """CREATE TABLE messages (
        rid INTEGER PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        gid INTEGER NOT NULL,
        encoded BLOB NOT NULL,
        ready INTEGER NOT NULL,
        seq INTEGER,
        src INTEGER
    )""",
    "CREATE INDEX messages_by_group ON messages (gid)",
    "CREATE UNIQUE INDEX messages_by_seq ON messages (seq) WHERE seq IS NOT NULL",
    # The DAG: current leaves per group (rowid order = order they became
    # leaves), ids named as parents before they were stored, and received
    # messages held until their parents are handed over (causal delivery).
    """CREATE TABLE leaves (
        gid INTEGER NOT NULL,
        id BLOB NOT NULL,
        UNIQUE (gid, id)
    )""",
    """CREATE TABLE dangling (
        id BLOB PRIMARY KEY
    ) WITHOUT ROWID""",
    """CREATE TABLE waiting (
        parent BLOB NOT NULL,
        child BLOB NOT NULL,
        UNIQUE (parent, child)
    )""",
    "CREATE INDEX waiting_by_child ON waiting (child)",
    # Sync state.  ``qseq`` orders records the way they were last placed:
    # FIFO for new ones, tie-break for in-flight ones with the same epoch.
    # Only new records (send_count = 0) are ever looked up by these indexes;
    # in-flight ones are few (bounded by the window) and kept in memory.
    """CREATE TABLE records (
        pid INTEGER NOT NULL,
        mid BLOB NOT NULL,
        gid INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        send_count INTEGER NOT NULL,
        send_epoch INTEGER NOT NULL,
        max_sends INTEGER,
        expires_at REAL,
        qseq INTEGER NOT NULL,
        PRIMARY KEY (pid, mid)
    ) WITHOUT ROWID""",
    """CREATE INDEX records_new ON records (pid, gid, qseq, kind)
        WHERE send_count = 0 AND kind != 2""",
    """CREATE INDEX records_new_requests ON records (pid, qseq)
        WHERE send_count = 0 AND kind = 2""",
]

_V2 = [
    # Message ids are SHA-256 outputs: a UNIQUE index on them puts every new
    # row on a random index page, and a transaction that writes N messages
    # then rewrites about N index pages (4 KiB each) into the WAL: most of
    # the store's cost on a busy node.  From version 2 the newest ids are
    # found through memory (rows with rid > internal 'indexed_upto') and
    # ``message_ids`` gets them in bulk, sorted, so each of its pages is
    # written once per batch instead of once per message.
    """CREATE TABLE messages_v2 (
        rid INTEGER PRIMARY KEY,
        id BLOB NOT NULL,
        gid INTEGER NOT NULL,
        encoded BLOB NOT NULL,
        ready INTEGER NOT NULL,
        seq INTEGER,
        src INTEGER
    )""",
    "INSERT INTO messages_v2 SELECT rid, id, gid, encoded, ready, seq, src FROM messages",
    """CREATE TABLE message_ids (
        id BLOB PRIMARY KEY,
        rid INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT INTO message_ids (id, rid) SELECT id, rid FROM messages ORDER BY id",
    # OFFER and MESSAGE records name a stored message by its row number, so
    # a burst of records for new messages is written at the end of the
    # table, not on random pages; REQUEST records name a message we do not
    # have (no row number), so they live apart, keyed by id.
    """CREATE TABLE records_v2 (
        pid INTEGER NOT NULL,
        rid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        send_count INTEGER NOT NULL,
        send_epoch INTEGER NOT NULL,
        max_sends INTEGER,
        expires_at REAL,
        qseq INTEGER NOT NULL,
        PRIMARY KEY (pid, rid)
    ) WITHOUT ROWID""",
    """INSERT INTO records_v2
        SELECT r.pid, m.rid, r.gid, r.kind, r.send_count, r.send_epoch,
               r.max_sends, r.expires_at, r.qseq
        FROM records AS r JOIN messages AS m ON m.id = r.mid
        WHERE r.kind != 2""",
    """CREATE TABLE requests (
        mid BLOB NOT NULL,
        pid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        send_count INTEGER NOT NULL,
        send_epoch INTEGER NOT NULL,
        max_sends INTEGER,
        expires_at REAL,
        qseq INTEGER NOT NULL,
        PRIMARY KEY (mid, pid)
    ) WITHOUT ROWID""",
    """INSERT INTO requests
        SELECT mid, pid, gid, send_count, send_epoch, max_sends, expires_at, qseq
        FROM records WHERE kind = 2""",
    "DROP TABLE records",
    "DROP TABLE messages",
    "ALTER TABLE messages_v2 RENAME TO messages",
    "ALTER TABLE records_v2 RENAME TO records",
    "CREATE INDEX messages_by_group ON messages (gid)",
    "CREATE UNIQUE INDEX messages_by_seq ON messages (seq) WHERE seq IS NOT NULL",
    # New (never sent) records in FIFO order per peer (and group); sent ones
    # are few (bounded by the in-flight window) and kept in memory.
    "CREATE INDEX records_new ON records (pid, gid, qseq) WHERE send_count = 0",
    "CREATE INDEX requests_new ON requests (pid, qseq) WHERE send_count = 0",
    """INSERT OR REPLACE INTO internal (key, value)
        SELECT 'indexed_upto', coalesce(max(rid), 0) FROM messages""",
]

MIGRATIONS: list[list[str]] = [_V1, _V2]
"""``MIGRATIONS[n]`` upgrades a version-``n`` database to version ``n + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


def version_of(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_mvds_file(conn: sqlite3.Connection, path: str | Path) -> int:
    """Return the file's schema version; refuse files that are not mvds stores
    or that come from a newer mvds."""
    version = version_of(conn)
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables:
            raise StoreError(
                f"store {path}: an SQLite database that is not an mvds store; refusing to touch it",
                cause="not mvds",
            )
    elif app_id != APPLICATION_ID:
        raise StoreError(
            f"store {path}: an SQLite database of another application "
            f"(application_id {app_id:#x}); refusing to touch it",
            cause="not mvds",
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(path, version, SCHEMA_VERSION)
    return version


def migrate(conn: sqlite3.Connection, path: str | Path, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target`` in one transaction; return the
    version found.  The caller holds no transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = check_mvds_file(conn, path)
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if found < target:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
