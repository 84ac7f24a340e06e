"""Retransmission policies: how many epochs to wait before sending a record again.

The spec (2/MVDS, "Retransmission") asks for an exponentially growing
``send_epoch`` with an upper bound.  The policy is pluggable so the simulator
can compare the reference implementation's linear schedule and the research
sketch's quadratic one against ours.  Policies are pure functions of the send
count and a caller-supplied random generator, so the engine stays
deterministic under a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


class RetransmissionPolicy(Protocol):
    """Decides the wait after a record's ``send_count``-th transmission."""

    name: str

    def delay(self, send_count: int, rng: random.Random) -> int:
        """Epochs to wait after the ``send_count``-th send (``send_count >= 1``)."""
        ...


@dataclass(frozen=True)
class ExponentialBackoff:
    """``base * factor**(n-1)`` epochs, capped at ``max_delay``, plus jitter.

    Jitter adds up to ``jitter`` times the delay (uniformly, whole epochs) so
    that records queued together do not retransmit in lock-step forever.
    The cap keeps an offline peer from being pushed out of reach; peers that
    come back are caught earlier by the engine's reachability rule anyway.
    """

    base: int = 1
    factor: float = 2.0
    max_delay: int = 64
    jitter: float = 0.25
    name: str = "exponential"

    def delay(self, send_count: int, rng: random.Random) -> int:
        exponent = min(send_count - 1, 62)
        raw = min(self.base * self.factor**exponent, self.max_delay)
        wait = max(1, int(raw))
        spread = int(wait * self.jitter)
        if spread:
            wait += rng.randint(0, spread)
        return wait


@dataclass(frozen=True)
class LinearBackoff:
    """The reference Go implementation: next epoch = epoch + ``step * count``."""

    step: int = 2
    name: str = "linear"

    def delay(self, send_count: int, rng: random.Random) -> int:
        return max(1, self.step * send_count)


@dataclass(frozen=True)
class QuadraticBackoff:
    """The original research sketch: wait ``count**2 + 1`` epochs."""

    name: str = "quadratic"

    def delay(self, send_count: int, rng: random.Random) -> int:
        return send_count * send_count + 1


POLICIES: dict[str, type] = {
    "exponential": ExponentialBackoff,
    "linear": LinearBackoff,
    "quadratic": QuadraticBackoff,
}


def policy_by_name(name: str) -> RetransmissionPolicy:
    """Build a policy with default parameters from its name."""
    try:
        return POLICIES[name]()
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise ValueError(f"unknown retransmission policy {name!r} (known: {known})") from None
