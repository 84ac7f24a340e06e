"""A recording UDP proxy between two daemons, in a thread (tests only).

A's config names the proxy's ``a_side`` as B's address and B's config
names ``b_side`` as A's: each daemon sees the other at a proxy socket.
Every datagram is recorded (direction, bytes); ``hold`` keeps chosen
datagrams back (a "lost" datagram the test replays later from elsewhere).
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable


class UdpProxy:
    def __init__(self, a_address: tuple[str, int], b_address: tuple[str, int]) -> None:
        self.a_address = a_address
        self.b_address = b_address
        self.a_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # faces A (as B)
        self.a_side.bind(("127.0.0.1", 0))
        self.b_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # faces B (as A)
        self.b_side.bind(("127.0.0.1", 0))
        self.records: list[tuple[str, bytes]] = []
        self.held: list[tuple[str, bytes]] = []
        self.hold: Callable[[str, bytes], bool] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address_for_a(self) -> str:
        """What A's config names as B's address."""
        return "127.0.0.1:%d" % self.a_side.getsockname()[1]

    @property
    def address_for_b(self) -> str:
        return "127.0.0.1:%d" % self.b_side.getsockname()[1]

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.a_side, self.b_side], [], [], 0.1)
            for sock in ready:
                try:
                    data, _ = sock.recvfrom(65535)
                except OSError:
                    continue
                direction = "a->b" if sock is self.a_side else "b->a"
                with self._lock:
                    self.records.append((direction, data))
                    if self.hold is not None and self.hold(direction, data):
                        self.held.append((direction, data))
                        continue
                try:
                    if direction == "a->b":
                        self.b_side.sendto(data, self.b_address)
                    else:
                        self.a_side.sendto(data, self.a_address)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.a_side.close()
        self.b_side.close()


def transport_nonce_repeats(records: list[tuple[str, bytes]]) -> list[tuple]:
    """(direction, receiver index, counter) keys seen with two different
    ciphertexts: a (key, nonce) pair used twice, as far as the wire shows."""
    seen: dict[tuple, bytes] = {}
    repeats = []
    for direction, data in records:
        if len(data) < 32 or data[0] != 0x06:
            continue
        key = (direction, data[4:8], data[8:16])
        if key in seen and seen[key] != data:
            repeats.append(key)
        seen.setdefault(key, data)
    return repeats
