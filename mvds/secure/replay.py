"""The anti-replay sliding window (RFC 4303 section 3.4.3 / RFC 6479 style).

A receiver remembers, per sender, the highest counter it has accepted and a
bitmap of which of the ``size`` counters at and below it it has seen.  A
counter is fresh if it is above the highest, or within the window and not
yet seen; anything older than the window is refused, because the receiver
can no longer tell whether it was seen.  UDP may reorder datagrams, so
fresh-but-late counters inside the window are accepted, once each.

:meth:`check` is safe to call before authentication (it changes nothing);
:meth:`accept` must only follow a successful authentication, or a forger
could advance the window and make genuine datagrams look old.

The serialized form (``to_bytes``) is what the daemon commits next to the
messages a batch of datagrams produced, so that after a restart a datagram
whose effects were committed is refused as a replay.
"""

from __future__ import annotations

import struct

__all__ = ["ReplayWindow", "DEFAULT_WINDOW_SIZE"]

DEFAULT_WINDOW_SIZE = 8192
"""Counters tracked below the highest one.  A node shares one counter across
all its peers, so each peer sees gaps; 8192 tolerates deep reordering even
for a sender talking to many peers, and serializes to about 1 KiB."""

_MAGIC = b"RW1"
_HEADER = struct.Struct(">3sIQ")  # magic, size, highest
_EMPTY = -1  # "highest" before anything was accepted


class ReplayWindow:
    """Which counters from one sender have been accepted."""

    __slots__ = ("size", "_highest", "_bits", "_mask")

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE) -> None:
        if size < 64 or size % 64:
            raise ValueError("a replay window size is a positive multiple of 64 (at least 64)")
        self.size = size
        self._mask = (1 << size) - 1
        self._highest = _EMPTY
        # Bit i set <=> counter (highest - i) was accepted.
        self._bits = 0

    @property
    def highest(self) -> int | None:
        """The highest counter accepted so far, or None."""
        return None if self._highest == _EMPTY else self._highest

    def check(self, counter: int) -> bool:
        """True if ``counter`` is fresh (never accepted and not too old)."""
        behind = self._highest - counter
        if behind < 0:
            return True
        if behind >= self.size:
            return False
        return not (self._bits >> behind) & 1

    def accept(self, counter: int) -> None:
        """Record ``counter`` as seen; call only after it authenticated."""
        behind = self._highest - counter
        if behind < 0:
            if -behind >= self.size:  # jumped past the whole window (never shift by it)
                self._bits = 1
            else:
                self._bits = ((self._bits << -behind) | 1) & self._mask
            self._highest = counter
        elif behind < self.size:
            self._bits |= 1 << behind
        # Older than the window: check() already refused it; nothing to record.

    # -- persistence ------------------------------------------------------
    def to_bytes(self) -> bytes:
        """``"RW1"``, size (u32 BE), highest (u64 BE), bitmap (size/8 bytes BE).

        "Nothing accepted yet" is highest = 2**64-1 with an all-zero bitmap,
        which no used window can be (its highest counter's bit is always set).
        """
        if self._highest == _EMPTY:
            return _HEADER.pack(_MAGIC, self.size, 2**64 - 1) + bytes(self.size // 8)
        return _HEADER.pack(_MAGIC, self.size, self._highest) + self._bits.to_bytes(
            self.size // 8, "big"
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "ReplayWindow":
        """Rebuild a window from :meth:`to_bytes`; ValueError if malformed."""
        if len(data) < _HEADER.size:
            raise ValueError("replay window state is truncated")
        magic, size, highest = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("replay window state has an unknown format")
        if len(data) != _HEADER.size + size // 8:
            raise ValueError("replay window state has the wrong length")
        window = cls(size)
        bits = int.from_bytes(data[_HEADER.size :], "big")
        if highest == 2**64 - 1 and bits == 0:
            return window
        window._highest = highest
        window._bits = bits
        return window

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, highest={self.highest})"
