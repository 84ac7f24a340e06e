"""Small durable-file helpers: what survives SIGKILL and power loss.

A value is replaced by writing a temporary file in the same directory,
fsyncing it, renaming it over the old one and fsyncing the directory, so a
reader finds either the old value or the new one, never a torn mix, and a
completed write is on disk before the caller relies on it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write", "fsync_directory"]


def fsync_directory(directory: Path) -> None:
    """Make changed directory entries durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Durably replace ``path``'s content with ``data`` (fsync + atomic rename)."""
    temporary = path.parent / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(path.parent)
