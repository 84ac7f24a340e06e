"""A tiny sans-IO network for session-layer tests: managers, addresses, a recorder."""

from __future__ import annotations

import random

from mvds.secure import Identity
from mvds.secure.session import SessionManager


class Net:
    """Routes datagrams between managers by address; records every delivered datagram."""

    def __init__(self) -> None:
        self.nodes: dict[tuple, SessionManager] = {}
        self.record: list[tuple[tuple, tuple, bytes]] = []  # (src, dst, bytes)
        self.received: dict[tuple, list] = {}
        self.events: dict[tuple, list] = {}
        self.drop = lambda src, dst, data: False

    def add(self, addr, identity=None, seed=0, **kw) -> SessionManager:
        manager = SessionManager(
            identity or Identity.generate(), rng=random.Random(seed), **kw
        )
        self.nodes[addr] = manager
        self.received[addr] = []
        self.events[addr] = []
        return manager

    def addr_of(self, manager) -> tuple:
        return next(a for a, m in self.nodes.items() if m is manager)

    def flush(self, now: float, rounds: int = 20) -> None:
        """Deliver everything outstanding (and what it provokes), at time ``now``."""
        for _ in range(rounds):
            moved = False
            for src, manager in list(self.nodes.items()):
                self.events[src].extend(manager.events())
                for dst, data in manager.datagrams_to_send():
                    moved = True
                    self.record.append((src, tuple(dst), data))
                    if self.drop(src, tuple(dst), data):
                        continue
                    target = self.nodes.get(tuple(dst))
                    if target is not None:
                        got = target.datagram_received(src, data, now)
                        if got is not None:
                            self.received[tuple(dst)].append(got)
            if not moved:
                break
        for src, manager in self.nodes.items():
            self.events[src].extend(manager.events())

    def run(self, start: float, end: float, step: float = 0.5) -> float:
        """Advance time, ticking every manager whose timer is due."""
        now = start
        while now < end:
            now = min(end, now + step)
            for manager in self.nodes.values():
                timer = manager.next_timer()
                if timer is not None and timer <= now:
                    manager.tick(now)
            self.flush(now)
        return now


def pair(keepalive=False, **kw):
    net = Net()
    a_addr, b_addr = ("127.0.0.1", 1001), ("127.0.0.1", 1002)
    a = net.add(a_addr, seed=1, **kw)
    b = net.add(b_addr, seed=2, **kw)
    a.add_peer(b.public, b_addr, keepalive=keepalive)
    b.add_peer(a.public, a_addr, keepalive=keepalive)
    return net, a, b, a_addr, b_addr
