"""A log throttle: count every event, log only some of them (sans-IO).

Every event (a dropped datagram, a store error, a refused control
connection) is counted, but only some are logged: a flood of forged
datagrams must not become a flood of log lines (disk, CPU, and the
operator's attention).  Per key, the first event is logged at once, then at
most one line per ``interval`` seconds, saying how many happened since the
previous line.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["LogThrottle"]


class LogThrottle:
    """Per-key event counters with a rate-limited "log this now" answer."""

    __slots__ = ("interval", "counts", "_pending", "_last_logged")

    def __init__(self, interval: float = 10.0) -> None:
        if interval < 0:
            raise ValueError("interval must not be negative")
        self.interval = interval
        self.counts: Counter[str] = Counter()
        """Every event ever counted, by key (for status output)."""
        self._pending: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}

    def count(self, reason: str, now: float) -> int | None:
        """Count one event.  Returns how many to report in a log line now, or None.

        The number includes this event and every unlogged one of the same
        key before it.
        """
        self.counts[reason] += 1
        self._pending[reason] += 1
        last = self._last_logged.get(reason)
        if last is not None and now - last < self.interval:
            return None
        self._last_logged[reason] = now
        return self._pending.pop(reason)



class BurstLimit:
    """At most ``burst`` lines per key in each ``window`` seconds (sans-IO).

    For debug events that are per message (appends, deliveries, ACKs): a
    person following one message sees every line of a trickle, and a flood
    of thousands a second costs a few lines a second, the first line of
    each window saying how many were left out.
    """

    __slots__ = ("burst", "window", "_start", "_used", "_skipped")

    def __init__(self, burst: int = 20, window: float = 1.0) -> None:
        self.burst = burst
        self.window = window
        self._start: dict[str, float] = {}
        self._used: Counter[str] = Counter()
        self._skipped: Counter[str] = Counter()

    def allow(self, key: str, now: float) -> int | None:
        """None: leave this line out.  Otherwise log it; the number is how
        many lines of this key were left out before it (0 usually)."""
        start = self._start.get(key)
        if start is None or now - start >= self.window:
            self._start[key] = now
            self._used[key] = 0
        if self._used[key] >= self.burst:
            self._skipped[key] += 1
            return None
        self._used[key] += 1
        return self._skipped.pop(key, 0)
