"""Nonce counters that never repeat, across crashes and restarts.

ChaCha20-Poly1305 under a static key is broken outright by one repeated
nonce (the two plaintexts' XOR leaks and the Poly1305 key can be recovered,
allowing forgeries), and mvds keys are static: they come from the two
long-term identities.  So every counter a node ever seals with must be new.

:class:`NonceCounter` hands out counters from a *reserved block*: before the
first counter of a block is used, the block's end is written durably to the
counter file (fsync + atomic rename + directory fsync).  After any crash the
next process starts at the recorded end, above every counter the dead one
could have used; at most one block of counters is skipped per restart,
which costs nothing (counters are 64-bit).

As a second line of defence the start is also raised to the current Unix
time in microseconds: were the counter file lost or restored from a backup
while the identity survived, a node that never averaged more than a million
datagrams a second still starts above every counter it used before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from mvds.durable import atomic_write

__all__ = ["NonceCounter", "NonceCounterError", "COUNTER_LIMIT"]

COUNTER_LIMIT = 2**64
"""Counters are unsigned 64-bit: every value is below this."""

_MAX_FILE = 64


def unix_microseconds() -> int:
    """The default floor for a fresh start: wall-clock time in microseconds."""
    return time.time_ns() // 1000


class NonceCounterError(ValueError):
    """The counter file is unreadable or malformed: refusing to risk nonce reuse."""


class NonceCounter:
    """A durable, strictly increasing source of 64-bit nonce counters.

    One counter per node, shared by every peer: the keys differ per peer and
    direction, so one increasing sequence keeps every (key, nonce) pair unique.
    Not thread-safe; the daemon calls it from one trio task at a time.
    """

    __slots__ = ("_path", "_block_size", "_next", "_reserved_end")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int = 2**16,
        floor: Callable[[], int] = unix_microseconds,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self._path = Path(path)
        self._block_size = block_size
        self._next = self._reserved_end = 0
        start = max(self._read(), floor())
        if not 0 <= start < COUNTER_LIMIT:
            raise NonceCounterError(f"nonce counter start {start} is outside 0..2**64-1")
        self._next = start
        self._reserved_end = start  # nothing reserved yet: next() reserves first

    def _read(self) -> int:
        try:
            data = self._path.read_bytes()[: _MAX_FILE + 1]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise NonceCounterError(
                f"cannot read nonce counter file {self._path}: {exc.strerror}"
            ) from None
        text = data.decode("ascii", "replace").strip()
        if len(data) > _MAX_FILE or not text.isdigit():
            raise NonceCounterError(
                f"nonce counter file {self._path} is malformed (expected one decimal "
                f"number); refusing to guess, as a reused nonce would break encryption"
            )
        return int(text)

    def next(self) -> int:
        """The next unused counter (durably reserved before it is returned)."""
        counter = self._next
        if counter >= self._reserved_end:
            counter = self._reserve(counter)
        self._next = counter + 1
        return counter

    def _reserve(self, counter: int) -> int:
        """Durably reserve a block starting at or above ``counter``; its start.

        The file is read again first: if another instance was (wrongly)
        started on the same file, this one moves above its reservation
        instead of overlapping it.
        """
        counter = max(counter, self._read())
        if counter >= COUNTER_LIMIT:
            raise NonceCounterError(
                "nonce counter exhausted (2**64 datagrams sealed); create a new identity"
            )
        end = min(counter + self._block_size, COUNTER_LIMIT)
        try:
            atomic_write(self._path, b"%d\n" % end)
        except OSError as exc:
            raise NonceCounterError(
                f"cannot reserve nonce counters in {self._path}: {exc.strerror or exc}"
            ) from None
        self._reserved_end = end
        return counter

    def __repr__(self) -> str:
        return f"NonceCounter({str(self._path)!r}, next={self._next})"
