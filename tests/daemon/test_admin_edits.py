"""Peer, group and sharing edits: through a running node and through the CLI
on a stopped node, one set of rules (mvds/daemon/admin.py).

Every refused request changes nothing, in memory or on disk: a bad key, a
full disk (injected SQLITE_FULL on the commit, or an OSError writing the
config), a broken config file.  Names that would corrupt the TOML file
(control characters) are refused; a group is one group whether it is named
or given by its hex id.
"""

from __future__ import annotations

import errno
import os

import pytest

import mvds
import mvds.daemon.admin
from mvds.daemon.config import load_config
from mvds.daemon.node import NodeError
from mvds.daemon.setup import init_node_dir
from mvds.ids import group_id_for_name, parse_group
from mvds.secure import Identity

from procs import Daemon, cli
from storefaults import FaultyConnection, node_store

LOW_ORDER = bytes(32)
"""The all-zero X25519 point: a key of low order, its shared secret is zero."""

CHAT_HEX = group_id_for_name("chat").hex()
HEXLIKE = "00 " * 16 + "0" * 16
"""64 characters that bytes.fromhex would read as 24 bytes: a name, not an id."""


def node_dir(path):
    init_node_dir(path)
    return path


def toml(path) -> str:
    return (path / "mvds.toml").read_text()


def peer_id() -> str:
    return Identity.generate().peer_id_hex


# -- through a running node ------------------------------------------------------------


async def test_a_low_order_key_leaves_no_trace_and_the_node_still_starts(tmp_path):
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        with pytest.raises(NodeError, match="not a usable X25519 public key"):
            await a.add_peer("evil", LOW_ORDER.hex(), "127.0.0.1:9", ["chat"])
        assert a.config.peer_named("evil") is None
        assert LOW_ORDER not in a.peers
        assert [p["name"] for p in a.status_now()["peers"]] == []
        await a.join("other")  # an unrelated save must not write it out either
    assert "evil" not in toml(d)
    async with mvds.open_node(d) as a:
        assert a.config.groups == ["other"]


async def test_disk_full_peer_add_changes_nothing(tmp_path, monkeypatch):
    node_store(monkeypatch, connection_factory=FaultyConnection)
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        FaultyConnection.fault = "disk full"
        with pytest.raises(NodeError, match="not stored: .*disk full"):
            await a.add_peer("b", peer_id(), "127.0.0.1:9", ["chat"])
        FaultyConnection.fault = None
        assert a.config.peer_named("b") is None
        assert a.status_now()["peers"] == []
        await a.join("other")  # a later unrelated save
        assert a.config.peer_named("b") is None
    assert "[[peers]]" not in toml(d)


async def test_disk_full_join_changes_nothing(tmp_path, monkeypatch):
    node_store(monkeypatch, connection_factory=FaultyConnection)
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        FaultyConnection.fault = "disk full"
        with pytest.raises(NodeError, match="not stored: .*disk full"):
            await a.join("secret")
        FaultyConnection.fault = None
        assert "secret" not in a.config.all_groups()
        assert not a.store.is_member(group_id_for_name("secret"))
        await a.add_peer("b", peer_id(), "127.0.0.1:9", ["chat"])
        assert "secret" not in a.config.all_groups()
    assert "secret" not in toml(d)


async def test_a_config_write_that_fails_changes_nothing(tmp_path, monkeypatch):
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(mvds.daemon.admin, "atomic_write", full)
        with pytest.raises(NodeError, match="No space left on device"):
            await a.add_peer("b", peer_id(), "127.0.0.1:9", ["chat"])
        with pytest.raises(NodeError, match="No space left on device"):
            await a.join("secret")
        monkeypatch.undo()
        assert a.config.peer_named("b") is None and a.status_now()["peers"] == []
        assert "secret" not in a.config.all_groups()
        assert not a.store.is_member(group_id_for_name("secret"))
        assert a.store.sharing() == {}
        await a.join("other")
    text = toml(d)
    assert "[[peers]]" not in text and "secret" not in text


async def test_a_broken_config_file_is_a_clear_error_and_nothing_changes(tmp_path):
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        (d / "mvds.toml").write_text("listen = [broken\n")
        with pytest.raises(NodeError, match=r"mvds\.toml.*invalid TOML"):
            await a.add_peer("b", peer_id(), "127.0.0.1:9", ["chat"])
        assert a.config.peer_named("b") is None
        assert a.status_now()["peers"] == []


@pytest.mark.parametrize("bad", ["cr\rname", "nul\x00name", "esc\x1bname", "del\x7fname",
                                 "ff\x0cname", "lf\nname"])
async def test_control_characters_in_names_are_refused(tmp_path, bad):
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        with pytest.raises(NodeError, match="control character"):
            await a.join(bad)
        with pytest.raises(NodeError, match="control character"):
            await a.add_peer(bad, peer_id(), "127.0.0.1:9")
        with pytest.raises(NodeError, match="control character"):
            await a.add_peer("b", peer_id(), "127.0.0.1:9", [bad])
        with pytest.raises(NodeError, match="control character"):
            await a.add_peer("c", peer_id(), f"host{bad}:9")
        await a.add_peer("d", peer_id(), "127.0.0.1:9")
        with pytest.raises(NodeError, match="control character"):
            await a.share(bad, "d")
        assert a.config.groups == [] and [p.name for p in a.config.peers] == ["d"]
    load_config(d / "mvds.toml")  # still a valid file


async def test_a_hex_looking_name_with_spaces_is_a_name(tmp_path):
    assert len(HEXLIKE) == 64
    assert parse_group(HEXLIKE) == group_id_for_name(HEXLIKE)
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        assert await a.join(HEXLIKE) == group_id_for_name(HEXLIKE)


async def test_share_by_name_then_by_id_is_one_entry_through_the_node(tmp_path):
    d = node_dir(tmp_path / "a")
    async with mvds.open_node(d) as a:
        await a.add_peer("b", peer_id(), "127.0.0.1:9")
        await a.share("chat", "b")
        await a.share(CHAT_HEX, "b")
        assert a.config.peer_named("b").groups == ["chat"]
        await a.unshare(CHAT_HEX, "b")
        assert a.config.peer_named("b").groups == []
    assert load_config(d / "mvds.toml").peer_named("b").groups == []


# -- through the CLI on a stopped node ------------------------------------------------


def test_share_by_name_then_by_id_is_one_entry_through_the_cli(tmp_path):
    d = node_dir(tmp_path / "a")
    cli("peer", "add", str(d), "b", peer_id(), "127.0.0.1:9", check=True)
    cli("share", str(d), "chat", "b", check=True)
    cli("share", str(d), CHAT_HEX, "b", check=True)
    assert load_config(d / "mvds.toml").peer_named("b").groups == ["chat"]


def test_the_cli_refuses_a_low_order_key_and_control_characters(tmp_path):
    d = node_dir(tmp_path / "a")
    before = toml(d)
    result = cli("peer", "add", str(d), "evil", LOW_ORDER.hex(), "127.0.0.1:9")
    assert result.returncode != 0 and "not a usable X25519 public key" in result.stderr
    result = cli("join", str(d), "cr\rname")
    assert result.returncode != 0 and "control character" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert toml(d) == before
    assert cli("peer", "list", str(d)).returncode == 0


def test_the_cli_keeps_comments_a_user_wrote(tmp_path):
    d = node_dir(tmp_path / "a")
    path = d / "mvds.toml"
    path.write_text("# my own note\n" + path.read_text())
    cli("join", str(d), "chat", check=True)
    text = toml(d)
    assert text.startswith("# my own note\n")
    assert load_config(path).groups == ["chat"]


def test_peer_add_and_join_on_a_full_file_system_change_nothing(small_fs, tmp_path):
    """A running `mvds run` on a real tmpfs filled to the brim: `mvds peer add`
    and `mvds join` fail with one clear line, and once space is back an
    unrelated edit does not bring either of them in."""
    d = node_dir(small_fs / "a")
    daemon = Daemon(d).start()
    try:
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        filler = small_fs / "filler"
        with open(filler, "wb") as out:  # every last block
            try:
                out.write(b"\0" * free)
                out.flush()
            except OSError:
                pass
        result = cli("peer", "add", str(d), "b", peer_id(), "127.0.0.1:9", "--group", "chat")
        assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
        assert "No space left on device" in result.stderr or "disk full" in result.stderr
        result = cli("join", str(d), "secret")
        assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
        assert daemon.status_now()["peers"] == [] and "secret" not in daemon.status_now()["groups"]
        filler.unlink()
        cli("join", str(d), "other", check=True)
        status = daemon.status_now()
        assert status["peers"] == [] and status["groups"] == ["other"]
        assert daemon.stop() == 0
    finally:
        if daemon.alive:
            daemon.kill()
    config = load_config(d / "mvds.toml")
    assert config.peers == [] and config.groups == ["other"]
