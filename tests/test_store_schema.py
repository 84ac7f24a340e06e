"""Schema versions: old files migrate forward intact, newer and foreign ones are refused.

``tests/fixtures/store-v1.db`` was written by the schema-version-1 code
(tests/fixtures/make_store_v1.py), so the migration is checked on a file the
old code really made, not on one the new code imitates.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mvds.daemon.setup import init_node_dir
from mvds.daemon.nodedir import NodeDir
from mvds.engine import Engine, EngineConfig
from mvds.engine.events import MessageReceived
from mvds.engine.records import RecordType
from mvds.ids import group_id_for_name
from mvds.store import MemoryStore, SchemaTooNew, SQLiteStore, StoreError
from mvds.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from mvds.store.sqlite import SQLiteReader

FIXTURE = Path(__file__).parent / "fixtures" / "store-v1.db"
KEPT_TABLES = ["meta", "peers", "groups", "shares", "messages", "leaves", "dangling", "waiting"]
"""Version-1 tables whose rows later versions keep as they are."""
B, C = b"B" * 32, b"C" * 32
CHAT, NOTES = group_id_for_name("chat"), group_id_for_name("notes")
NOW = 1_700_000_000.0


def dump(path: Path) -> dict[str, list[tuple]]:
    """The rows of the tables that keep their shape, and every sync record in
    its version-1 shape (version 2 keys OFFER/MESSAGE records by message row
    and keeps REQUESTs apart), in a stable order."""
    conn = sqlite3.connect(path)
    try:
        out = {
            t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in KEPT_TABLES
        }
        columns = "send_count, send_epoch, max_sends, expires_at, qseq"
        if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
            records = conn.execute(f"SELECT pid, mid, gid, kind, {columns} FROM records")
        else:
            records = conn.execute(
                f"SELECT r.pid, m.id, r.gid, r.kind, {', '.join('r.' + c for c in columns.split(', '))} "
                "FROM records AS r JOIN messages AS m ON m.rid = r.rid "
                f"UNION ALL SELECT pid, mid, gid, 2, {columns} FROM requests"
            )
        out["records"] = sorted(records.fetchall(), key=repr)
        return out
    finally:
        conn.close()


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    finally:
        conn.close()


@pytest.fixture
def v1_file(tmp_path) -> Path:
    path = tmp_path / "mvds.db"
    shutil.copyfile(FIXTURE, path)
    return path


def test_the_fixture_is_a_version_1_file():
    assert pragma(FIXTURE, "user_version") == 1
    assert pragma(FIXTURE, "application_id") == APPLICATION_ID
    assert SCHEMA_VERSION > 1, "the fixture exists to test a migration from 1"


def test_a_version_1_file_migrates_forward_with_its_data_intact(v1_file):
    before = dump(v1_file)
    assert len(before["messages"]) == 11 and len(before["records"]) == 14
    with SQLiteStore(v1_file) as store:
        assert pragma(v1_file, "user_version") == SCHEMA_VERSION
        # What the v1 code stored, as the store's API reads it back.
        assert store.message_count() == 11 and store.last_seq() == 3
        delivered = store.delivered_since(0, 100)
        assert [(s.seq, s.message.body, s.received_from) for s in delivered] == [
            (1, b"v1 from b 0", B), (2, b"v1 from b 1", B), (3, b"v1 from b 2", B)
        ]
        assert [s.message.body for s in store.delivered_since(1, 100, CHAT)] == [
            b"v1 from b 1", b"v1 from b 2"
        ]
        assert store.sharing() == {CHAT: [B, C], NOTES: []}
        (held,) = [s for s in map(store.get_stored, (r[1] for r in before["messages"])) if not s.ready]
        assert held.message.body == b"v1 held child" and held.seq is None
        (missing,) = held.message.parents
        assert store.waiting_parents(held.message.id) == [missing]
        assert not store.has_message(missing)
        assert store.get_record(missing, B).kind is RecordType.REQUEST
        assert len(store.leaves(NOTES)) == 1
        stats = store.record_stats()
        assert sum(stats.values()) == 14 and stats[(C, RecordType.OFFER)] == 1
        assert store.get_meta("replay/" + B.hex()) == b"\x01\x02\x03"
    after = dump(v1_file)
    assert after == before, "the migration changed stored rows"
    assert {"messages_by_group_seq", "records_in_flight", "requests_in_flight"} <= indexes(v1_file)


def test_a_migrated_store_carries_on_syncing(v1_file):
    """Records written by the v1 code drive a fresh engine: C, offline when
    the file was written, gets every chat message A holds."""
    store = SQLiteStore(v1_file)
    try:
        a = Engine(store, EngineConfig(max_inflight=3), now=NOW + 100)
        c = Engine(MemoryStore(), EngineConfig(), now=NOW + 100)
        c.share(CHAT, b"A" * 32, NOW + 100)
        now = NOW + 100
        for _ in range(200):
            now += 1.0
            with store.transaction():
                out = a.payloads_to_send(now)
            for peer, payload in out:
                if peer == C:
                    c.receive(b"A" * 32, payload, now)
            with store.transaction():
                for peer, payload in c.payloads_to_send(now):
                    a.receive(C, payload, now)
            if not any(k[0] == C for k in store.record_stats()):
                break
        chat_ids = set(store.group_message_ids(CHAT))
        assert chat_ids and set(c.store.group_message_ids(CHAT)) == chat_ids
        received = [e for e in c.events() if isinstance(e, MessageReceived)]
        assert len({e.message.id for e in received}) == len(received)
    finally:
        store.close()


def test_a_crash_during_the_migration_leaves_the_old_version(v1_file):
    """The migrations run in one transaction: dying in the middle of the last
    one leaves version 1 (not even version 2), which the next open migrates."""

    class DiesMidMigration(sqlite3.Connection):
        """From the second index on, every statement fails: no ROLLBACK
        gets through, the transaction is simply abandoned (closed)."""

        dead = False

        def execute(self, sql, *args):
            if sql.startswith("CREATE INDEX records_in_flight"):
                self.dead = True
            if self.dead:
                raise KeyboardInterrupt  # not an sqlite3 error: nothing cleans up politely
            return super().execute(sql, *args)

    before = dump(v1_file)
    with pytest.raises(KeyboardInterrupt):
        SQLiteStore(v1_file, connection_factory=DiesMidMigration)
    assert pragma(v1_file, "user_version") == 1
    assert "messages_by_group_seq" not in indexes(v1_file)
    assert dump(v1_file) == before
    with SQLiteStore(v1_file) as store:
        assert store.message_count() == 11
    assert pragma(v1_file, "user_version") == SCHEMA_VERSION


def test_every_migration_step_is_applied_in_order(tmp_path):
    """A new file goes through every step: its schema equals the one an old
    file reaches by migrating."""
    fresh = tmp_path / "fresh.db"
    SQLiteStore(fresh).close()
    migrated = tmp_path / "migrated.db"
    shutil.copyfile(FIXTURE, migrated)
    SQLiteStore(migrated).close()

    def schema(path):
        conn = sqlite3.connect(path)
        try:
            return sorted(conn.execute("SELECT type, name, sql FROM sqlite_schema").fetchall(), key=repr)
        finally:
            conn.close()

    assert schema(fresh) == schema(migrated)
    assert pragma(fresh, "user_version") == len(MIGRATIONS) == SCHEMA_VERSION


def make_newer(path: Path) -> None:
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "mvds.db"
    make_newer(path)
    content = path.read_bytes()
    for opener in (SQLiteStore, SQLiteReader):
        with pytest.raises(SchemaTooNew) as info:
            opener(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message
        assert f"schema version {SCHEMA_VERSION + 1} is newer" in message and "upgrade mvds" in message
        assert info.value.fatal
    assert path.read_bytes() == content
    assert pragma(path, "user_version") == SCHEMA_VERSION + 1


@pytest.mark.parametrize("kind", ["other application", "plain sqlite"])
def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path, kind):
    path = tmp_path / "mvds.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('alice')")
    if kind == "other application":
        conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    content = path.read_bytes()
    with pytest.raises(StoreError, match="refusing to touch it") as info:
        SQLiteStore(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == content
    assert not Path(str(path) + "-wal").exists()


def test_a_reader_asks_for_a_migration_it_cannot_do(v1_file):
    with pytest.raises(StoreError, match="predates this mvds"):
        SQLiteReader(v1_file)
    assert pragma(v1_file, "user_version") == 1


def mvds_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mvds", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("damage", ["newer", "foreign", "garbage"])
def test_the_cli_refuses_a_bad_store_in_one_line(tmp_path, damage):
    """`mvds status` and `mvds run` on a store they must not open: one line
    on stderr naming the file and the cause, a non-zero exit, no traceback."""
    nodedir = NodeDir.at(tmp_path / "node")
    init_node_dir(nodedir.path)
    if damage == "newer":
        make_newer(nodedir.db)
        expected = "is newer than this mvds supports"
    elif damage == "foreign":
        conn = sqlite3.connect(nodedir.db)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
        expected = "not an mvds store"
    else:
        nodedir.db.write_bytes(b"this is not a database\n" * 500)
        expected = "not an SQLite database"
    for args in (["status", str(nodedir.path)], ["run", str(nodedir.path)]):
        result = mvds_cli(*args)
        assert result.returncode != 0, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("mvds: store ") and expected in lines[0], lines
        assert str(nodedir.db) in lines[0]
        assert "Traceback" not in result.stderr
