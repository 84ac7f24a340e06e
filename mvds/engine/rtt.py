"""Round-trip time per peer, and the retransmission timeout it implies.

The epoch-based backoff alone retransmits a record two epochs after it was
sent, however long the peer takes to answer.  A peer that is busy (a burst of
50,000 messages, a slow disk, a loaded machine) answers later than that, and
every premature retransmission adds to the very load that made it late.  So
the engine measures how long answers take and never retransmits sooner than
TCP would (RFC 6298): ``srtt + 4 * rttvar``.

Samples follow Karn's rule: only records that were sent exactly once, so an
answer cannot belong to an earlier copy.  The estimate lives in memory: a
restarted node starts without one and falls back to the epoch schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 1 / 8
BETA = 1 / 4
K = 4


@dataclass(slots=True)
class RttEstimator:
    """Smoothed round-trip time and its variation, in seconds."""

    srtt: float | None = None
    rttvar: float = 0.0

    def sample(self, rtt: float) -> None:
        """Fold in one measured round trip (negative ones are ignored)."""
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt

    def timeout(self, ceiling: float) -> float | None:
        """Seconds to wait before a retransmission, at most ``ceiling``;
        None before the first sample."""
        if self.srtt is None:
            return None
        return min(self.srtt + K * self.rttvar, ceiling)
