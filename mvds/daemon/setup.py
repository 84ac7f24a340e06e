"""Creating node directories and assembling what a Node runs on.

``init_node_dir`` is ``mvds init``; ``open_parts`` gathers config, identity
and store for :meth:`mvds.daemon.node.Node.open`, either from a
node directory (holding its lock) or in memory.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mvds.daemon.config import ConfigError, NodeConfig, load_config, parse_address, save_config
from mvds.daemon.nodedir import AlreadyRunning, InstanceLock, NodeDir
from mvds.secure import Identity
from mvds.secure.identity import IdentityError
from mvds.store.base import Store
from mvds.store.errors import StoreError
from mvds.store.memory import MemoryStore


class SetupError(Exception):
    """A node directory that cannot be created or opened; one line says why.

    ``Node.open`` turns it into :class:`mvds.NodeError` (the one error type
    of the embedding API); the CLI prints it as its one line.
    """


def _describe(exc: BaseException) -> str:
    """One line for an error met while opening a node directory."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody is bound to right now (for `mvds init` without --listen)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def init_node_dir(
    path: str | os.PathLike[str], listen: str | None = None, *, in_existing: bool = False
) -> tuple[NodeDir, Identity]:
    """Create a node directory: identity (0600), config; refuse to overwrite one."""
    nodedir = NodeDir.at(path)
    if nodedir.config.exists() or nodedir.key.exists():
        raise SetupError(f"{nodedir.path} is already a node directory (it has {nodedir.config.name})")
    if listen is None:
        listen = f"127.0.0.1:{free_udp_port()}"
    config = NodeConfig(listen=listen)
    try:
        config.validate("--listen")
    except ConfigError as exc:
        raise SetupError(str(exc)) from None
    if not in_existing and nodedir.path.is_dir() and any(nodedir.path.iterdir()):
        # Not ours: a node's files next to someone else's would be shared
        # with whatever else lives there, and `rm -r` of the node takes both.
        raise SetupError(
            f"{nodedir.path} is not empty and not a node directory (give a new or empty directory)"
        )
    try:
        nodedir.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode applies only to a directory it creates (and the umask
        # narrows it); an existing empty directory is made owner-only too.
        os.chmod(nodedir.path, 0o700)
    except OSError as exc:
        raise SetupError(f"cannot create {nodedir.path}: {exc.strerror}") from None
    if not os.access(nodedir.path, os.W_OK):
        raise SetupError(f"{nodedir.path} is not writable")
    identity = Identity.load_or_create(nodedir.key)
    save_config(nodedir.config, config)
    return nodedir, identity


@dataclass
class Parts:
    config: NodeConfig
    store: Store
    identity: Identity
    nodedir: NodeDir | None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def release(self) -> None:
        for cleanup in reversed(self._cleanups):
            cleanup()
        self._cleanups.clear()


def open_parts(
    directory: str | os.PathLike[str] | None,
    *,
    config: NodeConfig | None = None,
    identity: Identity | None = None,
) -> Parts:
    """Everything a Node needs, from a directory or in memory."""
    if directory is None:
        config = config or NodeConfig(listen="127.0.0.1:0")
        config.validate("config")  # before the temporary folder exists: nothing to clean up
        tmp = tempfile.mkdtemp(prefix="mvds-memory-")
        parts = Parts(
            config=config,
            store=MemoryStore(),
            identity=identity or Identity.load_or_create(Path(tmp) / "identity.key"),
            nodedir=None,
        )
        parts._cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
        return parts

    from mvds.store.sqlite import SQLiteStore

    nodedir = NodeDir.at(directory)
    if not nodedir.exists():
        raise SetupError(
            f"{nodedir.path} is not a node directory"
        )
    lock = InstanceLock(nodedir.lock)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        raise SetupError(str(exc)) from None
    except OSError as exc:
        raise SetupError(f"cannot lock {nodedir.lock}: {exc.strerror or exc}") from None
    cleanups: list[Callable[[], None]] = [lock.release]
    try:
        loaded = config or load_config(nodedir.config)
        if not nodedir.key.exists():
            raise SetupError(f"{nodedir.key} is missing: this node has no identity")
        ident = identity or Identity.load(nodedir.key)
        # An old directory's DIR/nonce (the retired static-key envelope's
        # counter) is ignored: sessions keep their nonces in memory.
        store = SQLiteStore(nodedir.db, durability=loaded.durability)
        cleanups.append(store.close)
    except BaseException as exc:
        for cleanup in reversed(cleanups):
            cleanup()
        if isinstance(exc, (ConfigError, IdentityError, StoreError, OSError)):
            raise SetupError(_describe(exc)) from None
        raise
    parts = Parts(loaded, store, ident, nodedir)
    parts._cleanups = cleanups
    return parts


__all__ = ["SetupError", "init_node", "init_node_dir", "open_parts", "free_udp_port", "parse_address"]


def init_node(path: str | os.PathLike[str], listen: str | None = None) -> bytes:
    """Create a node directory (identity, config) like ``mvds init``; returns
    the new node's peer id (``mvds.init_node``).  ``listen`` is
    ``"HOST:PORT"`` (default: a free port on 127.0.0.1).  Raises
    :class:`~mvds.daemon.commands.NodeError` for a directory that is
    already a node, is not empty, or cannot be written."""
    from mvds.daemon.commands import NodeError

    try:
        _, identity = init_node_dir(path, listen)
    except SetupError as exc:
        raise NodeError(str(exc)) from None
    return identity.peer_id
