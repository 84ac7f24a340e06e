"""Counting dropped datagrams and deciding when to log them (sans-IO).

Every dropped datagram is counted, but only some are logged: a flood of
forged datagrams must not become a flood of log lines (disk, CPU, and the
operator's attention).  Per reason, the first drop is logged at once, then
at most one line per ``interval`` seconds, saying how many were dropped
since the previous line.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["DropLog"]


class DropLog:
    """Per-reason drop counters with a rate-limited "log this now" answer."""

    __slots__ = ("interval", "counts", "_pending", "_last_logged")

    def __init__(self, interval: float = 10.0) -> None:
        if interval < 0:
            raise ValueError("interval must not be negative")
        self.interval = interval
        self.counts: Counter[str] = Counter()
        """Every drop ever counted, by reason (for status output)."""
        self._pending: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}

    def drop(self, reason: str, now: float) -> int | None:
        """Count one drop.  Returns how many to report in a log line now, or None.

        The number includes this drop and every unlogged one of the same
        reason before it.
        """
        self.counts[reason] += 1
        self._pending[reason] += 1
        last = self._last_logged.get(reason)
        if last is not None and now - last < self.interval:
            return None
        self._last_logged[reason] = now
        return self._pending.pop(reason)
