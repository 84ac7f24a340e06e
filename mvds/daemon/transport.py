"""One UDP socket on trio: drain every ready datagram per wake-up, send without blocking.

This layer knows nothing about peers or encryption; it moves bytes and
simulates a bad radio when asked: ``loss`` drops that fraction of datagrams
in and out (seeded), and ``online = False`` drops everything (the node's
radio is off).  Drops are counted by reason.
"""

from __future__ import annotations

import errno
import platform
import random
import socket
import sys
import time
from collections import Counter, deque
from typing import Any, Callable

import trio

from mvds.daemon.config import format_address

RECEIVE_BUFFER = 4 * 1024 * 1024
"""Socket buffer we ask the kernel for; bursts of datagrams queue here while
the node is busy committing.  An ordinary user gets at most
net.core.rmem_max (208 KiB on a stock Linux), so the node first asks with
SO_RCVBUFFORCE, which root (CAP_NET_ADMIN) may use beyond that limit.  With
208 KiB, a busy receiver overflows: measured on loopback, 572 datagrams
dropped by the kernel and 10.6k instead of 15.7k messages/s."""

SMALL_BUFFER = 1024 * 1024
"""Below this granted receive buffer the node logs a warning at start."""

# Python's socket module does not name SO_{RCV,SND}BUFFORCE; these are
# their numbers in Linux's asm-generic/socket.h, which the architectures
# listed use (others, e.g. SPARC and PA-RISC, number them differently: there
# the node just asks without forcing).
_GENERIC_LINUX = {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "armv6l",
                  "riscv64", "ppc64le", "s390x"}
if sys.platform == "linux" and platform.machine().lower() in _GENERIC_LINUX:
    _FORCE = {socket.SO_RCVBUF: getattr(socket, "SO_RCVBUFFORCE", 33),
              socket.SO_SNDBUF: getattr(socket, "SO_SNDBUFFORCE", 32)}
else:
    _FORCE = {socket.SO_RCVBUF: None, socket.SO_SNDBUF: None}


def size_buffers(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """Ask for ``size``-byte socket buffers: forced past the sysctl limit
    where allowed (root), else as much as net.core.{r,w}mem_max grants."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        forced = _FORCE[option]
        if forced is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, forced, size)
                continue
            except OSError:  # EPERM without CAP_NET_ADMIN
                pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass

LINKS_CHECK_INTERVAL = 0.1
"""How often a running node looks whether its links file changed (testbed)."""

MAX_DRAIN = 4096
"""Most datagrams taken per wake-up, so one flood cannot starve timers."""


Address = Any  # a socket address tuple, (host, port) or (host, port, flow, scope)


class UdpTransport:
    def __init__(self, host: str, port: int, *, loss: float = 0.0, rng: random.Random | None = None) -> None:
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        size_buffers(self.sock)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(exc.errno, f"cannot listen on {format_address(host, port)}: {exc.strerror}") from None
        self.loss = loss
        self.rng = rng or random.Random()
        self.online = True
        self.stats: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._writable = trio.Event()
        self.netem: Any = None
        """Testbed link emulation (mvds.daemon.netem), set by :meth:`use_links`."""

    def use_links(self, path: str, seed: int | None, peer_of: Callable[[Address], str | None]) -> None:
        """Shape what this node sends per peer as the links file says (testbed
        only; ``peer_of`` names the peer at an address).  Raises LinksError."""
        from mvds.daemon.netem import LinkEmulator, LinksFile

        self._links_file = LinksFile(path)
        self.netem = LinkEmulator(self._links_file.read_if_changed() or {}, seed, drops=self.drops)
        self._peer_of = peer_of
        self._netem_wake = trio.Event()
        self._links_checked = time.monotonic()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def receive_buffer(self) -> int:
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def close(self) -> None:
        self.sock.close()

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self.sock)

    def drain(self) -> list[tuple[bytes, Address]]:
        """Every datagram ready now (up to MAX_DRAIN), after simulated loss."""
        out: list[tuple[bytes, Address]] = []
        recv = self.sock.recvfrom
        stats = self.stats
        for _ in range(MAX_DRAIN):
            try:
                data, addr = recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                # ICMP errors surface here on some systems; they say nothing
                # about our peers' liveness that the protocol does not handle.
                self.drops[f"socket_error_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
                continue
            stats["datagrams_in"] += 1
            stats["bytes_in"] += len(data)
            if not self.online:
                self.drops["offline"] += 1
                continue
            if self.loss and self.rng.random() < self.loss:
                self.drops["simulated_loss"] += 1
                continue
            out.append((data, addr))
        return out

    def send(self, datagrams: list[tuple[bytes, Address]]) -> None:
        """Send now (or when the link emulation says); what the kernel will
        not take yet waits for ``run_sender``."""
        if self.netem is not None:
            datagrams = self.netem.admit(datagrams, self._peer_of, time.monotonic())
            self._netem_wake.set()
        self._transmit(datagrams)

    def _transmit(self, datagrams: list[tuple[bytes, Address]]) -> None:
        if self._backlog:
            self._backlog.extend(datagrams)
            return
        sendto = self.sock.sendto
        stats = self.stats
        for index, (data, addr) in enumerate(datagrams):
            if not self.online:
                self.drops["offline_out"] += 1
                continue
            if self.loss and self.rng.random() < self.loss:
                # Transmitted, then lost in the (simulated) air: it counts
                # as sent, as it would on a real lossy link.
                self.drops["simulated_loss_out"] += 1
                stats["datagrams_out"] += 1
                stats["bytes_out"] += len(data)
                continue
            try:
                sendto(data, addr)
            except BlockingIOError:
                self._backlog.extend(datagrams[index:])
                self._writable.set()
                return
            except OSError as exc:
                self.drops[f"send_error_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
                continue
            stats["datagrams_out"] += 1
            stats["bytes_out"] += len(data)

    async def run_sender(self) -> None:
        """Flush the backlog whenever the socket becomes writable again (and
        run the link emulation's delay queue, if any)."""
        if self.netem is None:
            await self._flush_backlog()
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_netem)
            await self._flush_backlog()

    async def _run_netem(self) -> None:
        """Send delayed datagrams when due; re-read the links file now and then."""
        from mvds.daemon.netem import LinksError

        while True:
            due = self.netem.next_timer()
            wait = LINKS_CHECK_INTERVAL
            if due is not None:
                wait = min(wait, max(0.0, due - time.monotonic()))
            with trio.move_on_after(wait):
                await self._netem_wake.wait()
            self._netem_wake = trio.Event()
            now = time.monotonic()
            if now - self._links_checked >= LINKS_CHECK_INTERVAL:
                self._links_checked = now
                try:
                    links = self._links_file.read_if_changed()
                except LinksError:  # unreadable or broken: keep the last conditions
                    links = None
                if links is not None:
                    self.netem.configure(links)
            ready = self.netem.due(now)
            if ready:
                self._transmit(ready)

    async def _flush_backlog(self) -> None:
        while True:
            await self._writable.wait()
            self._writable = trio.Event()
            while self._backlog:
                await trio.lowlevel.wait_writable(self.sock)
                pending = list(self._backlog)
                self._backlog.clear()
                self._transmit(pending)
                # send() re-queued what did not fit (and set the event).
                if self._backlog:
                    self._writable = trio.Event()
