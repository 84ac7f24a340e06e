"""Storage failures: one exception type, one line naming the file and the cause.

The I/O shell catches :class:`StoreError` around each transaction.  Whatever
went wrong, the transaction was rolled back, so nothing that was not
committed is acknowledged and nothing committed is lost; the shell then
decides from :attr:`StoreError.fatal` whether to keep running (a locked
database or a full disk may clear up) or to stop with the message as its
one-line reason (a corrupt file, an I/O error, a schema from a newer mvds).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["SchemaTooNew", "StoreError", "from_sqlite"]


class StoreError(Exception):
    """A storage failure; ``str(error)`` is one line for a person to read.

    ``cause`` is a short machine-friendly label ("disk full", "locked", ...);
    ``fatal`` says whether retrying the same work can possibly succeed.
    """

    def __init__(self, message: str, *, cause: str = "error", fatal: bool = True) -> None:
        super().__init__(message)
        self.cause = cause
        self.fatal = fatal


class SchemaTooNew(StoreError):
    """The file was written by a newer mvds; this code refuses to touch it."""

    def __init__(self, path: str | Path, found: int, supported: int) -> None:
        super().__init__(
            f"store {path}: schema version {found} is newer than this mvds "
            f"supports ({supported}); upgrade mvds to open it",
            cause="newer schema",
            fatal=True,
        )
        self.found = found
        self.supported = supported


# SQLite primary result codes (the low byte of extended codes), with what they
# mean for someone running a node, and whether a retry can succeed.
_CAUSES: dict[int, tuple[str, bool]] = {
    3: ("permission denied", True),  # SQLITE_PERM
    5: ("database is locked by another process", False),  # SQLITE_BUSY
    6: ("database is locked by another connection", False),  # SQLITE_LOCKED
    7: ("out of memory", False),  # SQLITE_NOMEM
    8: ("database is read-only (file permissions or a read-only filesystem)", True),
    10: ("I/O error", True),  # SQLITE_IOERR
    11: ("database file is corrupt", True),  # SQLITE_CORRUPT
    13: ("disk full", False),  # SQLITE_FULL
    14: ("cannot open the database file", True),  # SQLITE_CANTOPEN
    19: ("constraint violated (a bug in mvds: please report it)", True),
    26: ("not an SQLite database (wrong file or corrupt header)", True),  # SQLITE_NOTADB
}

_LABELS: dict[int, str] = {
    3: "permission",
    5: "locked",
    6: "locked",
    7: "memory",
    8: "read-only",
    10: "io",
    11: "corrupt",
    13: "disk full",
    14: "cannot open",
    19: "constraint",
    26: "corrupt",
}


def from_sqlite(exc: sqlite3.Error, path: str | Path, *, busy_timeout: float | None = None) -> StoreError:
    """Translate an ``sqlite3`` exception into a :class:`StoreError`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = str(exc) or type(exc).__name__
    if primary in _CAUSES:
        cause, fatal = _CAUSES[primary]
        if primary in (5, 6) and busy_timeout is not None:
            cause += f" (gave up after waiting {busy_timeout:g} s)"
        label = _LABELS[primary]
    else:
        cause, fatal, label = "SQLite error", True, "error"
    name = getattr(exc, "sqlite_errorname", None)
    if name and name != "SQLITE_ERROR":
        detail = f"{detail}, {name}"
    return StoreError(f"store {path}: {cause} ({detail})", cause=label, fatal=fatal)
