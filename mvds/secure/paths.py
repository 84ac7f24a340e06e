"""Where to send a peer's datagrams: configured, candidate and validated paths (sans-IO).

RFC 9000 section 8 in miniature.  An authenticated datagram proves who
sent it, not that its *source address* receives: a copy of a genuine
datagram sent with a forged source still authenticates (once).  So:

- an authenticated datagram from an address that is not the peer's
  current path makes that address a **candidate**;
- a candidate is **validated** when the peer proves it receives there: it
  echoes a PATH_CHALLENGE we sent through it (from that address), or it
  completes a handshake whose response we sent there;
- until then we send to a candidate **at most 3x the bytes we received
  from it** (``AMPLIFICATION_FACTOR``), so a forged source cannot turn the
  node into an amplifier or redirect its traffic;
- the **configured** address (from the config, re-resolved by the caller)
  is trusted for sending as the operator's word, but a validated address
  learned from the peer wins over it (:func:`resolved_address_wins`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AMPLIFICATION_FACTOR",
    "CONFIGURED",
    "Candidate",
    "MAX_CANDIDATES",
    "PeerPaths",
    "VALIDATED",
    "resolved_address_wins",
]

AMPLIFICATION_FACTOR = 3
MAX_CANDIDATES = 4
"""Candidates tracked per peer (the oldest is dropped)."""

CONFIGURED = "configured"
VALIDATED = "validated"
CANDIDATE = "candidate"


def same_address(a: Any, b: Any) -> bool:
    """Host and port equal (IPv6 tuples carry flow info and scope id too)."""
    return a is not None and b is not None and a[:2] == b[:2]


@dataclass
class Candidate:
    address: Any
    received: int = 0
    sent: int = 0
    challenge: bytes | None = None
    challenged_at: float | None = None
    last_heard: float = 0.0

    @property
    def allowance(self) -> int:
        """Bytes we may still send there before it is validated."""
        return max(0, AMPLIFICATION_FACTOR * self.received - self.sent)


@dataclass
class PeerPaths:
    """One peer's current path and candidates."""

    endpoint: Any = None
    state: str | None = None  # CONFIGURED or VALIDATED (None without an endpoint)
    last_heard: float | None = None  # last authenticated datagram from the endpoint
    configured: Any = None  # the last address the caller resolved from the config
    candidates: dict[Any, Candidate] = field(default_factory=dict)

    def candidate(self, addr: Any, now: float) -> Candidate:
        key = tuple(addr[:2])
        found = self.candidates.get(key)
        if found is None:
            if len(self.candidates) >= MAX_CANDIDATES:
                del self.candidates[next(iter(self.candidates))]
            found = self.candidates[key] = Candidate(addr, last_heard=now)
        return found

    def heard(self, addr: Any, size: int, now: float) -> Candidate | None:
        """An authenticated datagram of ``size`` bytes came from ``addr``.

        Returns the candidate (credited with the bytes) if ``addr`` is not
        the current endpoint, else None.
        """
        if same_address(addr, self.endpoint):
            self.last_heard = now
            return None
        found = self.candidate(addr, now)
        found.received += size
        found.last_heard = now
        return found

    def may_send(self, addr: Any, size: int) -> bool:
        """Charge ``size`` bytes to ``addr``; False (and nothing charged) if over its limit."""
        if same_address(addr, self.endpoint):
            return True
        found = self.candidates.get(tuple(addr[:2]))
        if found is None or size > found.allowance:
            return False
        found.sent += size
        return True

    def validate(self, addr: Any, now: float) -> bool:
        """``addr`` is proven: it becomes the validated endpoint.  True if that changed anything."""
        changed = not (same_address(addr, self.endpoint) and self.state == VALIDATED)
        self.endpoint = addr
        self.state = VALIDATED
        self.last_heard = now
        self.candidates.pop(tuple(addr[:2]), None)
        return changed

    def target(self) -> Any:
        """Where data goes: the endpoint, else the most recently heard candidate."""
        if self.endpoint is not None:
            return self.endpoint
        if self.candidates:
            return max(self.candidates.values(), key=lambda c: c.last_heard).address
        return None


def resolved_address_wins(
    *,
    endpoint: Any,
    endpoint_state: str | None,
    endpoint_last_heard: float | None,
    previous_resolved: Any,
    new_resolved: Any,
    now: float,
    silence_s: float,
) -> bool:
    """Should the configured name's fresh resolution replace the current endpoint?

    - no endpoint, or an endpoint that is only the configured one: yes
      (follow DNS);
    - the endpoint is a validated address learned from the peer: only if
      DNS returned something **new** (not what it returned last time) **and**
      the learned address **stopped answering** (nothing authenticated from it
      for ``silence_s`` seconds).
    """
    if new_resolved is None:
        return False
    if same_address(new_resolved, endpoint):
        return False
    if endpoint is None or endpoint_state != VALIDATED:
        return True
    if same_address(new_resolved, previous_resolved):
        return False
    return endpoint_last_heard is None or now - endpoint_last_heard >= silence_s
