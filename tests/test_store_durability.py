"""Durability rules at the store itself (the node-level ones are in
tests/daemon/test_node_durability.py and tests/daemon/test_node_store_errors.py).

* What a transaction wrote is visible to any other connection exactly when
  ``transaction()`` returns, never before; a failed COMMIT leaves nothing,
  and the store's own view rolls back with it.
* Seq numbers are part of the transaction: a rolled-back delivery gives its
  seq back, so the committed seqs never have a gap.
* The durability setting picks the journal and sync mode.
"""

from __future__ import annotations

import sqlite3

import pytest

from mvds.daemon.config import load_config, save_config
from mvds.daemon.setup import init_node_dir, open_parts
from mvds.store import SQLiteStore, StoreError
from mvds.store.sqlite import SQLiteReader
from mvds.wire import Message

G = b"G" * 32
P = b"P" * 32


class FailingCommit(sqlite3.Connection):
    fail = False

    def execute(self, sql, *args):
        if type(self).fail and sql == "COMMIT":
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorcode = 10
            raise exc
        return super().execute(sql, *args)


def receive(store, body: bytes) -> Message:
    """Store a received message and hand it over (assigning its seq)."""
    message = Message(G, 1, body)
    store.add_message(message, ready=False, received_from=P)
    store.mark_ready(message.id, deliver=True)
    return message


def test_a_transaction_is_visible_elsewhere_exactly_when_it_returns(tmp_path):
    path = tmp_path / "s.db"
    FailingCommit.fail = False
    with SQLiteStore(path, connection_factory=FailingCommit) as store, SQLiteReader(path) as other:
        with store.transaction():
            first = receive(store, b"first")
            assert store.has_message(first.id), "the writer sees its own transaction"
            assert not other.has_message(first.id) and other.last_seq() == 0
        assert other.has_message(first.id) and other.last_seq() == 1

        FailingCommit.fail = True
        with pytest.raises(StoreError, match="I/O error"):
            with store.transaction():
                lost = receive(store, b"lost")
        FailingCommit.fail = False
        assert not other.has_message(lost.id)
        assert not store.has_message(lost.id), "the writer's view rolled back too"
        assert store.message_count() == 1 and store.last_seq() == 1

        with store.transaction():
            again = receive(store, b"lost")  # the same message, stored for real now
        assert again.id == lost.id and other.has_message(lost.id)
        assert [(s.seq, s.message.body) for s in other.delivered_since(0, 10)] == [
            (1, b"first"),
            (2, b"lost"),
        ], "the seq of the rolled-back delivery was given back, not skipped"


def test_an_exception_inside_a_transaction_rolls_everything_back(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        with pytest.raises(KeyError):
            with store.transaction():
                receive(store, b"x")
                store.set_meta("k", b"v")
                raise KeyError("the caller failed")
        assert store.message_count() == 0 and store.get_meta("k") is None
    with SQLiteReader(path) as other:
        assert other.message_count() == 0 and other.get_meta("k") is None


@pytest.mark.parametrize("durability, synchronous", [("crash", 1), ("power", 2)])
def test_the_durability_setting_picks_wal_and_the_sync_mode(tmp_path, durability, synchronous):
    with SQLiteStore(tmp_path / "s.db", durability=durability) as store:
        assert store._db.one("PRAGMA journal_mode")[0] == "wal"
        assert store._db.one("PRAGMA synchronous")[0] == synchronous  # NORMAL / FULL
    # From a node directory's mvds.toml to the store the node opens.
    nodedir, _ = init_node_dir(tmp_path / "node")
    config = load_config(nodedir.config)
    config.durability = durability
    save_config(nodedir.config, config)
    parts = open_parts(nodedir.path)
    try:
        assert parts.store.durability == durability
        assert parts.store._db.one("PRAGMA synchronous")[0] == synchronous
    finally:
        parts.release()


def test_an_unknown_durability_is_refused(tmp_path):
    with pytest.raises(ValueError, match="durability"):
        SQLiteStore(tmp_path / "s.db", durability="maybe")
