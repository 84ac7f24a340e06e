"""The configured peers at run time: where each one is, its counters, its
byte budget (sans-IO; the node resolves host names and feeds the results in).

Two sources give a peer's address: the configured ``HOST:PORT``, resolved
when the node starts, when the peer is added and every
``resolve_interval_s`` seconds (containers move), and the peer's own
datagrams from a new source (roaming).

For a session peer (every peer not configured ``plaintext``) the session
layer keeps its paths (:mod:`mvds.secure.paths`): a new source is only a
*candidate* (sent at most 3x the bytes received from it) until the peer
proves it receives there, and a validated address learned from the peer
wins over the configured one.  :func:`route_resolved` applies the
re-resolution rule: the configured name's fresh resolution replaces a
validated learned address only if DNS returned something new AND the
learned address stopped answering (nothing authenticated from it within
the reachability window).  ``PeerState.address`` then holds the last
resolution, for status.

A plaintext peer (interop testing) proves nothing about its source, so
its address simply follows the latest datagram or resolution.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from mvds.daemon.config import NodeConfig, PeerConfig, parse_address
from mvds.secure.ratelimit import TokenBucket

RESOLVE_INTERVAL = 30.0
"""Default seconds between re-resolving peer host names (containers move;
the setting ``resolve_interval_s``)."""


@dataclass
class PeerState:
    """What the node knows about a configured peer at run time."""

    config: PeerConfig
    peer_id: bytes
    address: Any = None  # resolved socket address, or None
    counters: Counter[str] = field(default_factory=Counter)
    budget: TokenBucket | None = None
    """Bytes this peer may still send (``peer_max_bytes_per_s``); None: no limit."""
    resolve_error: str | None = None
    """Why the configured host did not resolve last time (None: it did)."""
    resolve_failed_since: float | None = None
    """time.time() of the first failure in the current run of failures."""
    was_reachable: bool = False
    """A plaintext peer's reachability at the last check (peer.unreachable)."""

    def resolve_failed(self, error: str, now: float) -> None:
        """The configured host did not resolve (shown in ``mvds status``)."""
        self.resolve_error = error
        if self.resolve_failed_since is None:
            self.resolve_failed_since = now

    def went_silent(self, heard: float | None, now: float, offline_after: float) -> bool:
        """Whether a plaintext peer heard from before stopped being reachable
        (nothing for ``offline_after`` seconds) since the last check."""
        up = heard is not None and now - heard < offline_after
        silent = self.was_reachable and not up and heard is not None
        self.was_reachable = up
        return silent


class PeerRegistry(dict[bytes, PeerState]):
    """Peer id -> :class:`PeerState`, kept in step with the config."""

    def __init__(self, max_bytes_per_s: int = 0) -> None:
        super().__init__()
        self.max_bytes_per_s = max_bytes_per_s

    def name_at(self, addr: Any) -> str | None:
        """The name of the peer at a socket address (the testbed's links file)."""
        for state in self.values():
            if state.address is not None and state.address[:2] == addr[:2]:
                return state.config.name
        return None

    def _budget(self) -> TokenBucket | None:
        rate = self.max_bytes_per_s
        return TokenBucket(rate) if rate else None

    def sync(self, config: NodeConfig) -> tuple[list[bytes], list[bytes]]:
        """Make the registry hold ``config``'s peers.  Returns the ids that
        are new or moved (address or envelope changed: their address is
        forgotten until resolved again) and the ids that went away; a peer
        whose name or groups alone changed keeps its state."""
        entries = {peer.peer_id: peer for peer in config.peers}
        removed = [peer_id for peer_id in self if peer_id not in entries]
        for peer_id in removed:
            del self[peer_id]
        changed = []
        for peer_id, entry in entries.items():
            state = self.get(peer_id)
            if state is None:
                self[peer_id] = PeerState(entry, peer_id, budget=self._budget())
            elif (state.config.address, state.config.plaintext) == (entry.address, entry.plaintext):
                state.config = entry
                continue
            else:
                state.config = entry
                state.address = None
            changed.append(peer_id)
        return changed, removed

    def name(self, peer_id: bytes, default: str) -> str:
        state = self.get(peer_id)
        return state.config.name if state else default

    @staticmethod
    def resolved(state: PeerState, address: Any) -> None:
        """The configured host name resolved to ``address``."""
        if state.address is None or state.address[:2] != address[:2]:
            state.address = address


def route_resolved(state: PeerState, address: Any, sessions: Any, now: float) -> bool:
    """The configured name of ``state``'s peer resolved to ``address`` (``now``:
    monotonic).  Returns True if datagrams now go there.

    A plaintext peer follows it; a session peer's session layer decides
    (:meth:`mvds.secure.session.SessionManager.address_resolved`).
    """
    if state.config.plaintext:
        moved = state.address is None or state.address[:2] != address[:2]
        state.address = address
        return moved
    state.address = address
    return sessions.address_resolved(state.peer_id, address, now)


def literal_address(address: str, v6: bool) -> Any:
    """``HOST:PORT`` as a socket address if HOST is an IP literal of the
    socket's family (usable before the first resolution), else None (the
    resolver then decides, and reports an address of the other family)."""
    host, port = parse_address(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if (ip.version == 6) != v6:
        return None
    return (host, port) if ip.version == 4 else (host, port, 0, 0)


def link_peers(
    config: NodeConfig,
    changed: Iterable[bytes],
    removed: Iterable[bytes],
    codec: Any,
    sessions: Any,
    keep: Iterable[bytes] = (),
) -> None:
    """Follow :meth:`PeerRegistry.sync` in the envelope codec and the session
    layer: removed peers forgotten, new or moved ones (or ones that switched
    envelope) a fresh start, keepalives following the sharing (a session
    peer sharing a group with us is kept reachable).  ``keep``: new peers
    whose session is already up (just paired: mvds/daemon/pairing.py)."""
    keep = set(keep)
    v6 = ":" in parse_address(config.listen)[0]  # the socket's family
    entries = {entry.peer_id: entry for entry in config.peers}
    for peer_id in removed:
        codec.remove_peer(peer_id)
        sessions.remove_peer(peer_id)
    fresh = set()
    for peer_id in changed:
        entry = entries[peer_id]
        fresh.add(peer_id)
        if peer_id not in keep:
            sessions.remove_peer(peer_id)
        codec.add_peer(peer_id, plaintext=entry.plaintext)
        if not entry.plaintext:
            sessions.add_peer(
                peer_id, literal_address(entry.address, v6), keepalive=bool(entry.groups)
            )
    for entry in config.peers:
        if not entry.plaintext and entry.peer_id not in fresh:
            sessions.set_keepalive(entry.peer_id, bool(entry.groups))
