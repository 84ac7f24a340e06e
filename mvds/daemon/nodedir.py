"""A node's data directory: where each file lives, and the one-daemon lock.

    DIR/mvds.toml     settings, peers and groups (mvds.daemon.config)
    DIR/identity.key  X25519 private key, mode 0600
    DIR/nonce         reserved nonce counter (never reused across restarts)
    DIR/mvds.db       SQLite store (+ -wal and -shm files)
    DIR/mvds.sock     control API socket, mode 0600, while the daemon runs
    DIR/mvds.lock     held (flock) by the running daemon; holds its process id
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path


class AlreadyRunning(RuntimeError):
    """Another daemon holds the directory's lock."""


@dataclass(frozen=True)
class NodeDir:
    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> "NodeDir":
        return cls(Path(path).expanduser().absolute())

    @property
    def config(self) -> Path:
        return self.path / "mvds.toml"

    @property
    def key(self) -> Path:
        return self.path / "identity.key"

    @property
    def nonce(self) -> Path:
        return self.path / "nonce"

    @property
    def db(self) -> Path:
        return self.path / "mvds.db"

    @property
    def socket(self) -> Path:
        return self.path / "mvds.sock"

    @property
    def lock(self) -> Path:
        return self.path / "mvds.lock"

    def exists(self) -> bool:
        return self.config.exists()


class InstanceLock:
    """An exclusive flock on DIR/mvds.lock for as long as the daemon runs.

    The kernel releases it when the process dies however it dies (SIGKILL
    included), so a stale lock never blocks a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                process_id = lock_holder(self.path)
                who = f" (pid {process_id})" if process_id else ""
                raise AlreadyRunning(
                    f"another mvds daemon is already running on {self.path.parent}{who}"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(path: Path) -> int | None:
    """The process id written in a lock file (``pid`` in the store means a
    peer's row; here it is always spelled out), or None."""
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def is_running(nodedir: NodeDir) -> bool:
    """True if a daemon holds the directory's lock right now."""
    try:
        fd = os.open(nodedir.lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
