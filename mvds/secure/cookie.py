"""Cookies and handshake rate limits: staying responsive under a handshake flood (sans-IO).

A handshake initiation costs the responder Diffie-Hellman work, and its
source address may be forged.  As WireGuard does (and QUIC's Retry):

- **Under load** (more than ``UNDER_LOAD_HPS`` initiations a second, with a
  burst of as many, node-wide) an initiation without a valid mac2 gets a
  52-byte *cookie reply* and nothing else: no DH, no state.  The cookie is
  ``MAC(secret, source address)`` under a random secret replaced every
  ``COOKIE_SECRET_S`` seconds (the previous one still verifies), so the
  responder stores nothing per source.  An initiator that really receives
  at its address retries with ``mac2 = MAC(cookie, message)`` and is
  served.
- **Per source** (IP address) at most ``PER_SOURCE_HPS`` initiations a
  second (burst ``PER_SOURCE_BURST``) reach the DH; the rest are refused
  and counted.  The table of per-source buckets is bounded
  (``MAX_SOURCES``, oldest dropped) and, under load, only sources that
  proved their address (valid mac2) get an entry.
"""

from __future__ import annotations

from typing import Any, Callable

from mvds.secure.ratelimit import TokenBucket
from mvds.secure.sessionwire import check_mac2, mac

__all__ = [
    "COOKIE_SECRET_S",
    "CookieJar",
    "HandshakeLimiter",
    "MAX_SOURCES",
    "PER_SOURCE_BURST",
    "PER_SOURCE_HPS",
    "UNDER_LOAD_HPS",
]

UNDER_LOAD_HPS = 50.0
"""Node-wide initiations per second (and burst) served without a cookie.
A full handshake (both sides) measured about 1 ms of one core here
(benchmarks/bench_session.py: ~1,000 handshakes/s), the responder's half
about 0.5 ms, so this caps a flood's DH work at about 2.5% of a core,
far above what a few dozen honest peers rekeying every two minutes need."""

PER_SOURCE_HPS = 5.0
"""Initiations per second one source IP may have served (after cookies)."""

PER_SOURCE_BURST = 10.0

MAX_SOURCES = 4096
"""Per-source buckets kept; beyond it the oldest is forgotten."""

COOKIE_SECRET_S = 120.0
"""The cookie secret is replaced this often; the previous one still verifies."""


def address_bytes(addr: Any) -> bytes:
    """The bytes a cookie is bound to: host and port of the source."""
    return f"{addr[0]}|{addr[1]}".encode()


class CookieJar:
    """Makes and checks cookies with a rotating secret; keeps nothing per source."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random = random_bytes
        self._secret = random_bytes(32)
        self._previous: bytes | None = None
        self._rotated_at: float | None = None

    def _rotate(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
        elif now - self._rotated_at >= COOKIE_SECRET_S:
            # Two or more periods passed: the previous secret is too old too.
            stale = now - self._rotated_at >= 2 * COOKIE_SECRET_S
            self._previous = None if stale else self._secret
            self._secret = self._random(32)
            self._rotated_at = now

    def cookie(self, addr: Any, now: float) -> bytes:
        self._rotate(now)
        return mac(self._secret, address_bytes(addr))

    def valid_mac2(self, message: bytes, addr: Any, now: float) -> bool:
        self._rotate(now)
        if check_mac2(message, mac(self._secret, address_bytes(addr))):
            return True
        return self._previous is not None and check_mac2(
            message, mac(self._previous, address_bytes(addr))
        )


class HandshakeLimiter:
    """The node-wide "under load" test and the bounded per-source buckets."""

    def __init__(
        self,
        under_load_hps: float = UNDER_LOAD_HPS,
        per_source_hps: float = PER_SOURCE_HPS,
        per_source_burst: float = PER_SOURCE_BURST,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self._global = TokenBucket(under_load_hps, under_load_hps)
        self._per_source_hps = per_source_hps
        self._per_source_burst = per_source_burst
        self._max_sources = max_sources
        self._sources: dict[str, TokenBucket] = {}

    def under_load(self, now: float) -> bool:
        """Spend one token of the node-wide budget; True if there was none."""
        return not self._global.allow(1, now)

    def source_allows(self, addr: Any, now: float) -> bool:
        host = str(addr[0])
        bucket = self._sources.pop(host, None)
        if bucket is None:
            bucket = TokenBucket(self._per_source_hps, self._per_source_burst)
            if len(self._sources) >= self._max_sources:
                del self._sources[next(iter(self._sources))]
        self._sources[host] = bucket  # (re)insert: most recently used last
        return bucket.allow(1, now)

    @property
    def sources_tracked(self) -> int:
        return len(self._sources)
