"""Debug tracing of what happens to messages: appends, deliveries, ACKs,
retransmissions (``mvds run --log-level debug``).

Per-message lines are built only when the logger passes debug lines
(:attr:`Tracer.enabled`), and each event is limited to a burst a second
so a flood says how many lines it left out instead of drowning the log.
No I/O of its own and no clock: the caller passes the monotonic time.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from mvds.daemon.logthrottle import BurstLimit

TRACE_BURST = 20
"""Lines per event name and second, before the rest are counted as left out."""


def debug_enabled(log: Any) -> bool:
    """Whether ``log`` passes debug lines (structlog's filtering loggers
    and stdlib-backed ones both answer; unknown loggers: assume yes)."""
    for name in ("is_enabled_for", "isEnabledFor"):
        check = getattr(log, name, None)
        if check is not None:
            try:
                return bool(check(logging.DEBUG))
            except Exception:  # a logger that cannot tell
                return True
    return True


class Tracer:
    """Debug lines about messages, rate-limited per event name."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.enabled = debug_enabled(log)
        """Debug lines wanted: per message events are built only then."""
        self.limit = BurstLimit(burst=TRACE_BURST, window=1.0)
        """Shared with other floods of one line per message (``message.gave_up``)."""

    def line(self, clock: float, event: str, **fields: Any) -> None:
        """One debug line, at most TRACE_BURST a second per event (a flood
        of appends or deliveries says how many lines it left out)."""
        left_out = self.limit.allow(event, clock)
        if left_out is None:
            return
        if left_out:
            fields["left_out"] = left_out
        self.log.debug(event, **fields)

    @staticmethod
    def retransmissions_before(peer_stats: Mapping[bytes, Mapping[str, int]]) -> dict[bytes, int]:
        """The engine's retransmission counts per peer, before a step."""
        return {peer: counts["retransmissions"] for peer, counts in peer_stats.items()}

    def retransmissions(
        self,
        clock: float,
        before: Mapping[bytes, int],
        peer_stats: Mapping[bytes, Mapping[str, int]],
        name: Callable[[bytes], str],
    ) -> None:
        """Debug: the retransmissions a step sent, per peer."""
        for peer_id, stats in peer_stats.items():
            sent = stats["retransmissions"] - before.get(peer_id, 0)
            if sent > 0:
                self.line(clock, "records.retransmitted", peer=name(peer_id), count=sent,
                          total=stats["retransmissions"])
