"""Edits of a node's peers, groups and sharing: pure functions config -> new config.

One set of rules for every way a node is edited: the running daemon (the
control API and the embedding API) and the CLI on a stopped node both call
these, so they cannot disagree.  Each function checks everything first (a
usable X25519 key, names and addresses a TOML file can hold, group identity
by group *id*, not by spelling) and returns a NEW config, leaving its input
untouched: a refused edit changes nothing, and the daemon can compute the
new config before it commits anything.

Writing goes through :func:`render_edit` / :func:`stage` / :func:`publish`:
the file on disk is edited with tomlkit (comments and the layout a user gave
it are kept; only ``groups`` and the ``[[peers]]`` tables are replaced), the
new text is written to a temporary file and fsynced (``stage``) before the
daemon commits its store, and renamed over ``mvds.toml`` (``publish``) only
after the commit succeeded.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import tomlkit

from mvds.daemon.config import (
    ConfigError,
    NodeConfig,
    PeerConfig,
    check_peer_key,
    control_character,
    parse_address,
    parse_config,
)
from mvds.durable import atomic_write, fsync_directory
from mvds.ids import parse_group, parse_peer_id


class AdminError(ValueError):
    """An edit that cannot be made; the message says why, in one line."""


def check_text(what: str, value: str) -> str:
    """Refuse a name or address holding a control character (it would end a
    line in the TOML file, in logs and in tables)."""
    char = control_character(value)
    if char is not None:
        raise AdminError(f"{what} {value!r} contains a control character ({ord(char):#04x})")
    return value


def _group(group: str) -> bytes:
    if not isinstance(group, str):
        raise AdminError(f"a group is a name or 64 hex characters, not {type(group).__name__}")
    check_text("group", group)
    try:
        return parse_group(group)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def _validated(config: NodeConfig) -> NodeConfig:
    try:
        config.validate("peer")
    except ConfigError as exc:
        raise AdminError(str(exc)) from None
    return config


def _merge_groups(groups: list[str], more: list[str] | tuple[str, ...]) -> list[str]:
    """``groups`` plus those of ``more`` whose group id is not there yet."""
    out = list(groups)
    have = {parse_group(g) for g in out}
    for group in more:
        group_id = _group(group)
        if group_id not in have:
            have.add(group_id)
            out.append(group)
    return out


def add_peer(
    config: NodeConfig,
    name: str,
    peer_id: str | bytes,
    address: str,
    groups: list[str] | tuple[str, ...] = (),
    *,
    plaintext: bool = False,
    own_id: bytes | None = None,
) -> NodeConfig:
    """Trust a peer and share ``groups`` with it (replaces an entry of that name)."""
    if not isinstance(name, str) or not name:
        raise AdminError("a peer name must not be empty")
    check_text("peer name", name)
    check_text("address", address)
    peer_hex = peer_id.hex() if isinstance(peer_id, bytes) else peer_id
    try:
        peer_bytes = parse_peer_id(peer_hex)
        check_peer_key(peer_bytes)
        parse_address(address)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    if own_id is not None and peer_bytes == own_id:
        raise AdminError("that is this node's own peer id")
    entry = PeerConfig(name, peer_bytes.hex(), address, _merge_groups([], groups), bool(plaintext))
    new = copy.deepcopy(config)
    new.peers = [p for p in new.peers if p.name != name] + [entry]
    return _validated(new)


def remove_peer(config: NodeConfig, name: str) -> NodeConfig:
    """Stop trusting the peer called ``name``."""
    if config.peer_named(name) is None:
        raise AdminError(f"no peer named {name!r}")
    new = copy.deepcopy(config)
    new.peers = [p for p in new.peers if p.name != name]
    return new


def share(config: NodeConfig, group: str, peer_name: str) -> NodeConfig:
    """Share ``group`` with a configured peer; sharing it again (by name or
    by hex id) changes nothing."""
    _group(group)
    new = copy.deepcopy(config)
    entry = new.peer_named(peer_name)
    if entry is None:
        raise AdminError(f"no peer named {peer_name!r}")
    entry.groups = _merge_groups(entry.groups, [group])
    return _validated(new)


def unshare(config: NodeConfig, group: str, peer_name: str) -> NodeConfig:
    """Stop sharing ``group`` (named or by hex id) with a peer."""
    group_id = _group(group)
    new = copy.deepcopy(config)
    entry = new.peer_named(peer_name)
    if entry is None:
        raise AdminError(f"no peer named {peer_name!r}")
    kept = [g for g in entry.groups if parse_group(g) != group_id]
    if len(kept) == len(entry.groups):
        raise AdminError(f"group {group!r} is not shared with {peer_name!r}")
    entry.groups = kept
    return new


def join(config: NodeConfig, group: str) -> NodeConfig:
    """Become a member of ``group`` (a no-op if already one, under any spelling)."""
    _group(group)
    new = copy.deepcopy(config)
    new.groups = _merge_groups(new.groups, [group])
    return _validated(new)


def leave(config: NodeConfig, group: str) -> NodeConfig:
    """Leave ``group`` (named or by hex id): it leaves the node's own list
    and every peer's, so nothing of it syncs any more (the messages already
    stored stay readable)."""
    group_id = _group(group)
    if all(parse_group(g) != group_id for g in config.all_groups()):
        raise AdminError(f"not a member of group {group!r}")
    new = copy.deepcopy(config)
    new.groups = [g for g in new.groups if parse_group(g) != group_id]
    for entry in new.peers:
        entry.groups = [g for g in entry.groups if parse_group(g) != group_id]
    return _validated(new)


def group_list(config: NodeConfig) -> list[dict[str, object]]:
    """The node's groups as ``mvds groups`` lists them: name (as configured),
    id, and the peers it is shared with (compared by id: a peer may name the
    group by its hex id)."""
    out = []
    for name in config.all_groups():
        group_id = parse_group(name)
        out.append({
            "group": name,
            "group_id": group_id.hex(),
            "peers": [p.name for p in config.peers
                      if any(parse_group(g) == group_id for g in p.groups)],
        })
    return out


def sharing(config: NodeConfig) -> set[tuple[bytes, bytes]]:
    """Every (group id, peer id) pair the config shares."""
    return {(parse_group(g), p.peer_id) for p in config.peers for g in p.groups}


# -- the file ---------------------------------------------------------------------


def _peer_table(peer: PeerConfig) -> tomlkit.items.Table:
    table = tomlkit.table()
    table["name"] = peer.name
    table["id"] = peer.id
    table["address"] = peer.address
    table["groups"] = list(peer.groups)
    if peer.plaintext:
        table.add(tomlkit.comment(
            "Interop testing only: datagrams to and from this peer are NOT encrypted."))
    table["plaintext"] = peer.plaintext
    return table


def render_edit(path: Path, config: NodeConfig) -> bytes:
    """The file at ``path`` with its groups and peers replaced by ``config``'s.

    Only those: the running config may carry ``mvds run`` options (loss,
    schedule, ...) meant for this run alone.  A file that does not parse is
    a :class:`ConfigError` naming it; the result is checked to load back as
    exactly these peers and groups.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    parse_config(raw, str(path))  # a broken file: its own clear error
    document = tomlkit.parse(raw.decode("utf-8"))
    document["groups"] = list(config.groups)
    peers = tomlkit.aot()
    for peer in config.peers:
        peers.append(_peer_table(peer))
    if "peers" in document:
        del document["peers"]
    if config.peers:
        document.append("peers", peers)
    data = tomlkit.dumps(document).encode("utf-8")
    check = parse_config(data, str(path))
    if check.peers != config.peers or check.groups != config.groups:
        raise ConfigError(f"{path}: the edited file does not read back as written")
    return data


def save(path: Path, config: NodeConfig) -> None:
    """Edit the file at ``path`` to hold ``config``'s peers and groups (atomic)."""
    atomic_write(path, render_edit(path, config), mode=0o600)


def stage(path: Path, data: bytes) -> Path:
    """Write ``data`` next to ``path`` and fsync it; :func:`publish` makes it
    the file, :func:`discard` drops it.  Raises OSError (a full disk)."""
    staged = path.parent / f".{path.name}.{os.getpid()}.staged"
    try:
        atomic_write(staged, data, mode=0o600)
    except OSError:
        discard(staged)
        raise
    return staged


def publish(staged: Path, path: Path) -> None:
    """Rename a staged file over ``path`` (a rename needs no free space)."""
    os.replace(staged, path)
    fsync_directory(path.parent)


def discard(staged: Path) -> None:
    try:
        os.unlink(staged)
    except FileNotFoundError:
        pass
