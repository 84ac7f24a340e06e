"""SQLite failures on a running node: a clear logged line, no ACK for what was
not stored, nothing stored lost, and the node either keeps running (the
fault may clear: disk full, locked) or stops with a one-line reason (I/O
error, corrupt file) -- never a silent hang.

Real failures wherever a test can cause them: a full file system (a tmpfs
mounted for the test, where permitted, and SQLite's own page limit), a file
size limit on a real ``mvds run`` (writes fail with EFBIG: SQLITE_IOERR),
a second connection holding the write lock, a database page overwritten
under a running daemon.  A fault-injecting connection covers the rest.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import trio

import mvds
import mvds.daemon.node
from mvds.daemon.control_client import ControlError
from mvds.daemon.node import NodeError
from mvds.daemon.setup import init_node_dir
from mvds.store import SQLiteStore, StoreError
from mvds.store.sqlite import SQLiteReader

from procs import MVDS, Daemon, cli, wait_until
from storefaults import FaultyConnection, node_store

CHAT = mvds.group_id_for_name("chat")


def events(lines, name: str) -> list[dict]:
    return [line for line in lines() if line["event"] == name]


def stored_bodies(db: Path) -> list[bytes]:
    with SQLiteStore(db) as store:
        return [store.get_message(mid).body for mid in store.group_message_ids(CHAT)]


def last_line(path: Path) -> str:
    return path.read_text().strip().splitlines()[-1]


def node_dir(path: Path) -> Path:
    init_node_dir(path)
    assert cli("join", str(path), "chat").returncode == 0
    return path


# -- faults that may clear: the node keeps running ------------------------------------


async def test_disk_full_fails_appends_clearly_and_the_node_carries_on(tmp_path, logs):
    """SQLite's page limit makes the file "full" for real (SQLITE_FULL)."""
    init_node_dir(tmp_path / "a")
    async with mvds.open_node() as b, mvds.open_node(tmp_path / "a") as a:
        await a.add_peer("b", b.peer_id, "%s:%d" % b.address, ["chat"])
        await b.add_peer("a", a.peer_id, "%s:%d" % a.address, ["chat"])
        before = await a.append_many("chat", [b"before %d" % i for i in range(20)])
        pages = a.store._db.one("PRAGMA page_count")[0]
        a.store._db.one(f"PRAGMA max_page_count = {pages}")
        for i in range(5):
            with pytest.raises(NodeError, match=r"^not stored: store .*: disk full"):
                await a.append_many("chat", [b"full %d-%d" % (i, j) * 100 for j in range(20)])
        assert a.status_now()["running"] and a.status_now()["node"]["store_errors"] >= 5
        a.store._db.one("PRAGMA max_page_count = 1073741823")  # space again
        after = await a.append("chat", b"after")
        with trio.fail_after(10):
            while b.store.message_count() < 21:
                await trio.sleep(0.02)
        assert {m.message.id for m in b.store.delivered_since(0, 100)} == {*before, after}
    bodies = stored_bodies(tmp_path / "a" / "mvds.db")
    assert len(bodies) == 21 and not any(body.startswith(b"full") for body in bodies)
    errors = events(logs, "store.error")
    assert errors and all(e["fatal"] is False and "disk full" in e["error"] for e in errors)
    assert events(logs, "store.recovered")


async def test_a_lasting_fault_is_retried_at_a_pace_and_logged_once(tmp_path, monkeypatch, logs):
    """Every commit fails while the node has records due: it must not spin
    (a fresh engine always has work due at once) nor flood the log."""
    node_store(monkeypatch, connection_factory=FaultyConnection)
    monkeypatch.setattr(mvds.daemon.node, "STORE_RETRY_MAX", 0.5)  # a shorter test
    init_node_dir(tmp_path / "a")
    async with mvds.open_node(tmp_path / "a") as a:
        await a.add_peer("gone", b"\x07" * 32, "127.0.0.1:9", ["chat"])  # never answers
        await a.append_many("chat", [b"%d" % i for i in range(10)])
        FaultyConnection.fault = "disk full"
        FaultyConnection.failures = 0
        started = time.monotonic()
        await trio.sleep(1.5)
        attempts = FaultyConnection.failures
        # Pauses of 0.05 s doubling to 0.5 s: about six attempts, not thousands.
        assert 2 <= attempts <= 12, attempts
        assert len(events(logs, "store.error")) == 1, "the same error is logged once per interval"
        assert a.status_now()["node"]["store_errors"] == attempts
        with trio.fail_after(5):  # answered (with an error), never left hanging
            with pytest.raises(NodeError, match="not stored"):
                await a.append("chat", b"during the fault")
        FaultyConnection.fault = None
        with trio.fail_after(5):
            await a.append("chat", b"after the fault")
        assert time.monotonic() - started < 10
    (recovered,) = events(logs, "store.recovered")
    assert recovered["failed_steps"] >= attempts


async def test_a_database_locked_past_the_busy_timeout(tmp_path, monkeypatch, logs):
    node_store(monkeypatch, busy_timeout=0.2)
    init_node_dir(tmp_path / "a")
    async with mvds.open_node(tmp_path / "a") as a:
        await a.join("chat")
        kept = await a.append("chat", b"kept")
        other = sqlite3.connect(a.nodedir.db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with trio.fail_after(5):
                with pytest.raises(NodeError, match=r"locked by another process \(gave up after waiting 0.2 s\)"):
                    await a.append("chat", b"not stored")
            assert a.status_now()["running"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        with trio.fail_after(5):
            stored = await a.append("chat", b"stored after the lock was released")
        assert a.store.has_message(kept) and a.store.has_message(stored)
    assert stored_bodies(tmp_path / "a" / "mvds.db") == [b"kept", b"stored after the lock was released"]
    (error,) = events(logs, "store.error")
    assert error["fatal"] is False and "locked" in error["error"]


def test_a_database_locked_at_open(tmp_path):
    path = tmp_path / "mvds.db"
    SQLiteStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            SQLiteStore(path, busy_timeout=0.2)
        assert time.monotonic() - started < 5
    finally:
        other.close()
    assert info.value.cause == "locked" and not info.value.fatal
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_full_file_system_under_a_running_daemon(small_fs, tmp_path):
    """`mvds run` on a tmpfs that fills up: appends are refused with one clear
    line, the daemon keeps running, and once space is freed it carries on
    with nothing acknowledged lost."""
    node = node_dir(small_fs / "a")
    log_path = tmp_path / "daemon.log"  # outside the full file system
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*MVDS, "run", str(node), "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT
        )
    daemon = Daemon(node)
    daemon.process = process
    try:
        wait_until(lambda: _pings(daemon), 20, what="the daemon to start")
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        filler = small_fs / "filler"
        filler.write_bytes(b"\0" * (free - 600_000))
        acknowledged: list[str] = []
        error = None
        for i in range(200):
            try:
                reply = daemon.request("append_many", group="chat", texts=[f"{i}-{j}" * 200 for j in range(10)])
            except ControlError as exc:
                error = str(exc)
                break
            acknowledged += reply["message_ids"]
        assert error is not None and "not stored" in error and "disk full" in error, error
        assert acknowledged, "the file system filled before anything was stored"
        # The CLI says the same in one line.
        result = cli("send", str(node), "chat", "x" * 60_000)
        assert result.returncode != 0 and result.stderr.count("\n") == 1
        assert result.stderr.startswith("mvds: not stored: store ") and "disk full" in result.stderr
        assert "Traceback" not in result.stderr
        assert daemon.alive and daemon.request("ping")["ok"]

        filler.unlink()  # space again
        wait_until(lambda: _append_works(daemon, acknowledged), 15, what="appends to work again")
        assert daemon.stop() == 0
    finally:
        if daemon.alive:
            daemon.kill()
    with SQLiteReader(node / "mvds.db") as reader:
        assert all(reader.has_message(bytes.fromhex(mid)) for mid in acknowledged)
        assert reader.message_count() == len(acknowledged)
    errors = [line for line in log_path.read_text().splitlines() if '"store.error"' in line]
    assert errors and all('"fatal": false' in line for line in errors)
    assert len(errors) <= 10, "a lasting fault must not flood the log"


def _pings(daemon: Daemon) -> bool:
    if not daemon.alive:
        raise AssertionError(f"the daemon exited: {daemon.log_tail()}")
    try:
        return bool(daemon.request("ping")["ok"])
    except ControlError:
        return False


def _append_works(daemon: Daemon, acknowledged: list[str]) -> bool:
    try:
        acknowledged.append(daemon.request("append", group="chat", text="after")["message_id"])
        return True
    except ControlError:
        return False


# -- fatal faults: the node stops with a one-line reason --------------------------------


def _limit_file_size() -> None:
    """In the daemon's process: files may not grow past 1 MB (EFBIG beyond;
    Python ignores SIGXFSZ, so the write fails instead of killing it)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_an_io_error_stops_the_daemon_with_one_line_and_loses_nothing(tmp_path):
    node = node_dir(tmp_path / "a")
    log_path = node / "daemon.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*MVDS, "run", str(node), "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_limit_file_size,
        )
    daemon = Daemon(node)
    daemon.process = process
    acknowledged: list[str] = []
    try:
        wait_until(lambda: _pings(daemon), 20, what="the daemon to start")
        for i in range(300):
            try:
                reply = daemon.request("append_many", group="chat", texts=[f"{i}-{j}" * 200 for j in range(10)])
            except ControlError as exc:
                assert "not stored" in str(exc) and "I/O error" in str(exc), exc
                break
            acknowledged += reply["message_ids"]
        else:
            raise AssertionError("the write limit was never reached")
        process.wait(timeout=15)
    finally:
        if daemon.alive:
            daemon.kill()
    assert process.returncode == 1
    line = last_line(log_path)
    assert line.startswith("mvds: store ") and "I/O error" in line and str(node / "mvds.db") in line
    assert "Traceback" not in log_path.read_text()
    assert '"fatal": true' in log_path.read_text()
    assert acknowledged
    with SQLiteReader(node / "mvds.db") as reader:  # every acknowledged append survived
        assert all(reader.has_message(bytes.fromhex(mid)) for mid in acknowledged)
        assert reader.message_count() == len(acknowledged)
    result = cli("send", str(node), "chat", "hi")
    assert result.returncode != 0 and "not running" in result.stderr


def _overwrite_page(db: Path, table: str) -> None:
    """Write garbage over a table's root page (after checkpointing the WAL
    into the file, so the file alone holds the data)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def test_a_file_corrupted_under_a_running_daemon_stops_it_with_one_line(tmp_path):
    node = node_dir(tmp_path / "a")
    daemon = Daemon(node).start()
    try:
        daemon.request("append_many", group="chat", texts=[f"m{i}" * 100 for i in range(300)])
        db = node / "mvds.db"
        _overwrite_page(db, "messages")
        # Any committed write by another connection makes the daemon's next
        # transaction drop its page cache and read the damaged file.
        poke = sqlite3.connect(db, isolation_level=None)
        poke.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('test', x'00')")
        poke.close()
        with pytest.raises(ControlError, match="not stored: .*database file is corrupt"):
            daemon.request("append", group="chat", text="after the damage")
        daemon.process.wait(timeout=15)
    finally:
        if daemon.alive:
            daemon.kill()
    assert daemon.process.returncode == 1
    line = last_line(node / "daemon.log")
    assert line.startswith("mvds: store ") and "database file is corrupt" in line
    assert "Traceback" not in (node / "daemon.log").read_text()


def test_a_corrupt_file_at_open_is_one_line_from_every_command(tmp_path):
    node = node_dir(tmp_path / "a")
    with SQLiteStore(node / "mvds.db") as store, store.transaction():
        for i in range(200):
            store.add_message(mvds.Message(CHAT, i, b"x" * 300), ready=False, received_from=b"P" * 32)
            store.mark_ready(mvds.Message(CHAT, i, b"x" * 300).id, deliver=True)
    _overwrite_page(node / "mvds.db", "messages")
    for args in (["run", str(node)], ["status", str(node)], ["tail", str(node)]):
        result = cli(*args)
        assert result.returncode == 1, (args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("mvds: store ") and "database file is corrupt" in lines[0], lines


async def test_a_fatal_error_ends_an_embedded_node_with_the_store_error(tmp_path, monkeypatch, logs):
    node_store(monkeypatch, connection_factory=FaultyConnection)
    init_node_dir(tmp_path / "a")
    started = time.monotonic()
    with pytest.raises(StoreError, match="I/O error") as info:
        async with mvds.open_node(tmp_path / "a") as a:
            await a.join("chat")
            kept = await a.append("chat", b"kept")
            FaultyConnection.fault = "io"
            with pytest.raises(NodeError, match="not stored"):
                await a.append("chat", b"lost")
            await trio.sleep(30)  # the node's failure cancels this
    assert time.monotonic() - started < 10
    assert info.value.fatal
    assert [e["fatal"] for e in events(logs, "store.error")] == [True]
    with SQLiteReader(tmp_path / "a" / "mvds.db") as reader:
        assert reader.has_message(kept) and reader.message_count() == 1
