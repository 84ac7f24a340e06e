"""A per-peer byte budget: the token bucket behind ``peer_max_bytes_per_s`` (sans-IO).

Authentication keeps strangers out, but a trusted peer (or a buggy one) can
still send faster than this node can store.  Every authenticated datagram
spends its size from its sender's bucket; the bucket refills at ``rate``
bytes per second up to ``burst``.  A datagram that finds too little left is
dropped and counted, before any protobuf parsing or engine work, so one
flooding peer cannot buy more of the node's time than its budget.  An honest
peer loses nothing: MVDS retransmits what was not acknowledged.

The bucket is spent only after the AEAD check: a forger who names a trusted
peer cannot use up that peer's budget.
"""

from __future__ import annotations

from mvds.limits import MAX_DATAGRAM_SIZE

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` units per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (leave the bucket out for no limit)")
        # One second's worth, and never less than the largest datagram:
        # a budget that a single datagram exceeds would block that peer for good.
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, MAX_DATAGRAM_SIZE))
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self._tokens = self.burst
        self._stamp: float | None = None

    def allow(self, cost: float, now: float) -> bool:
        """Spend ``cost`` at time ``now`` (monotonic seconds) if the budget has it."""
        stamp = self._stamp
        if stamp is None:
            self._stamp = now
        elif now > stamp:  # a clock that went backwards refills nothing
            self._tokens = min(self.burst, self._tokens + (now - stamp) * self.rate)
            self._stamp = now
        if cost <= self._tokens:
            self._tokens -= cost
            return True
        return False
