"""Per-link network emulation for the testbed, without I/O (like Linux netem).

A node that runs in the testbed (``mvds testbed run``) is given a *links
file*: for each peer (by its name in ``mvds.toml``) the conditions of the
link towards it -- one-way latency, jitter, loss, duplication, reordering,
a rate limit -- and whether the link is cut.  Every datagram the node sends
goes through :class:`LinkEmulator` first, which decides its fate and when
it leaves: at once, later (the delay queue), twice, or never.  Conditions
apply to the *sending* direction only, so a link's two directions are
shaped by its two ends, each with its own settings: the receive path needs
no emulation at all.

Sans-IO: inputs are datagrams and the current time, outputs are datagrams
due now and the time the emulator next wants waking
(:meth:`LinkEmulator.next_timer`).  The daemon's transport
(:mod:`mvds.daemon.transport`) is the thin shell that feeds it and sends
what it gives back; :class:`LinksFile` reads the file and notices when the
testbed rewrites it (a partition, a heal).

Random draws (loss, duplication, jitter, reordering) come from one
generator per link seeded by the node's seed and the peer's name, so a
link's sequence of fates is the same in every run with that seed.

The model, per datagram sent towards a peer whose link is known:

1. cut: dropped (``netem_cut``);
2. loss: dropped with probability ``loss`` (``netem_loss``);
3. duplication: with probability ``duplicate`` a second copy follows
   the same path (``netem_duplicate``);
4. rate: with ``rate`` bytes/s the link serialises datagrams one after
   the other (a datagram leaves once the ones before it left); more
   than :data:`QUEUE_LIMIT` datagrams waiting: dropped (``netem_queue_full``);
5. delay: ``latency`` plus a uniform extra in ``[0, jitter)``; with
   probability ``reorder`` the datagram skips the delay (netem's
   ``reorder``: it overtakes the ones queued before it).
"""

from __future__ import annotations

import heapq
import math
import os
import random
import tomllib
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Mapping

QUEUE_LIMIT = 1000
"""Most datagrams waiting on one rate-limited link (netem's default limit)."""

Address = Any


class LinksError(ValueError):
    """A links file or link setting that cannot be used (one line)."""


@dataclass(frozen=True)
class LinkConditions:
    """One direction of a link.  Times in seconds, rate in bytes per second."""

    latency: float = 0.0
    """One-way delay added to every datagram."""
    jitter: float = 0.0
    """Extra uniform delay in ``[0, jitter)``: reorders datagrams sent closer together."""
    loss: float = 0.0
    """Fraction of datagrams dropped."""
    duplicate: float = 0.0
    """Fraction of datagrams sent twice."""
    reorder: float = 0.0
    """Fraction of datagrams that skip the delay (needs a latency)."""
    rate: float = 0.0
    """Bandwidth in bytes per second; 0: unlimited."""
    cut: bool = False
    """A partition: nothing passes."""

    def validate(self, where: str) -> None:
        for name in ("latency", "jitter", "rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise LinksError(f"{where}: {name} must be a number of at least 0, not {value!r}")
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise LinksError(f"{where}: {name} must be between 0 and 1, not {value!r}")
        if self.loss >= 1.0:
            raise LinksError(f"{where}: loss must be below 1 (use a cut for a partition)")
        if self.reorder and not self.latency:
            raise LinksError(
                f"{where}: reorder needs a latency (a reordered datagram skips the delay)"
            )
        if not isinstance(self.cut, bool):
            raise LinksError(f"{where}: cut must be true or false")

    @property
    def transparent(self) -> bool:
        """Nothing to do: every datagram leaves at once, once."""
        return not (
            self.latency or self.jitter or self.loss or self.duplicate or self.rate or self.cut
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> "LinkConditions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinksError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "cut":
                if not isinstance(value, bool):
                    raise LinksError(f"{where}: cut must be true or false")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LinksError(f"{where}: {key} must be a number, not {value!r}")
            values[key] = value if key == "cut" else float(value)
        conditions = cls(**values)
        conditions.validate(where)
        return conditions


class _Link:
    """The state of one direction: its generator and its queue's tail."""

    __slots__ = ("conditions", "rng", "busy_until", "queued")

    def __init__(self, conditions: LinkConditions, rng: random.Random) -> None:
        self.conditions = conditions
        self.rng = rng
        self.busy_until = 0.0
        self.queued = 0


class LinkEmulator:
    """The delay queue of every link of one node.

    ``admit`` takes what the node sends now and returns what leaves now;
    the rest leaves through ``due`` once :meth:`next_timer` has passed.
    Datagrams towards a peer without conditions (``key`` None or unknown)
    pass untouched.
    """

    def __init__(self, links: Mapping[str, LinkConditions], seed: int | None = None,
                 drops: Counter[str] | None = None) -> None:
        self.seed = seed
        self.links: dict[str, _Link] = {}
        self.stats: Counter[str] = Counter()
        """Datagrams delayed, duplicated, reordered."""
        self.drops: Counter[str] = Counter() if drops is None else drops
        """Datagrams dropped (cut, loss, queue full): the transport's drop counter."""
        self._heap: list[tuple[float, int, bytes, Address, str]] = []
        self._order = 0
        self.configure(links)

    def configure(self, links: Mapping[str, LinkConditions]) -> None:
        """New conditions (a partition, a heal); queues and generators carry on."""
        for key, conditions in links.items():
            link = self.links.get(key)
            if link is None:
                self.links[key] = _Link(conditions, random.Random(f"netem:{self.seed}:{key}"))
            else:
                link.conditions = conditions
        for key in list(self.links):
            if key not in links:
                self.links[key].conditions = LinkConditions()

    def admit(self, datagrams: Iterable[tuple[bytes, Address]], key_of: Callable[[Address], str | None],
              now: float) -> list[tuple[bytes, Address]]:
        """Judge each datagram; return those that leave now, in order."""
        out: list[tuple[bytes, Address]] = []
        links = self.links
        stats = self.stats
        for data, addr in datagrams:
            key = key_of(addr)
            link = links.get(key) if key is not None else None
            if link is None or link.conditions.transparent:
                out.append((data, addr))
                continue
            c = link.conditions
            rng = link.rng
            if c.cut:
                self.drops["netem_cut"] += 1
                continue
            if c.loss and rng.random() < c.loss:
                self.drops["netem_loss"] += 1
                continue
            copies = 1
            if c.duplicate and rng.random() < c.duplicate:
                stats["netem_duplicate"] += 1
                copies = 2
            for _ in range(copies):
                self._enqueue(link, key, data, addr, now, out)
        return out

    def _enqueue(self, link: _Link, key: str, data: bytes, addr: Address, now: float,
                 out: list[tuple[bytes, Address]]) -> None:
        c = link.conditions
        leaves = now
        if c.rate:
            if link.queued >= QUEUE_LIMIT:
                self.drops["netem_queue_full"] += 1
                return
            leaves = max(now, link.busy_until) + len(data) / c.rate
            link.busy_until = leaves
        delay = c.latency
        if c.jitter:
            delay += link.rng.random() * c.jitter
        if c.reorder and link.rng.random() < c.reorder:
            self.stats["netem_reorder"] += 1
            delay = 0.0
        due = leaves + delay
        if due <= now:
            out.append((data, addr))
            return
        self.stats["netem_delayed"] += 1
        if c.rate:
            link.queued += 1
        self._order += 1
        heapq.heappush(self._heap, (due, self._order, data, addr, key))

    def due(self, now: float) -> list[tuple[bytes, Address]]:
        """Every queued datagram whose time has come, in the order they arrive."""
        out: list[tuple[bytes, Address]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, data, addr, key = heapq.heappop(heap)
            link = self.links.get(key)
            if link is not None and link.conditions.rate:
                link.queued = max(0, link.queued - 1)
            out.append((data, addr))
        return out

    def next_timer(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


def parse_links(raw: bytes, where: str) -> dict[str, LinkConditions]:
    """A links file: ``[peers.NAME]`` tables of :class:`LinkConditions` keys."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LinksError(f"{where}: invalid TOML: {' '.join(str(exc).split())}") from None
    unknown = sorted(set(data) - {"peers"})
    if unknown:
        raise LinksError(f"{where}: unknown key {unknown[0]!r} (expected [peers.NAME] tables)")
    peers = data.get("peers", {})
    if not isinstance(peers, dict) or not all(isinstance(v, dict) for v in peers.values()):
        raise LinksError(f"{where}: expected [peers.NAME] tables")
    return {name: LinkConditions.from_dict(table, f"{where}: peers.{name}") for name, table in peers.items()}


def render_links(links: Mapping[str, LinkConditions]) -> str:
    """The text of a links file (what the testbed writes for each node)."""
    lines = ["# mvds link emulation (testbed): conditions of the datagrams this node sends, per peer."]
    for name in sorted(links):
        lines.append(f"[peers.{name}]")
        for key, value in links[name].to_dict().items():
            lines.append(f"{key} = {'true' if value is True else 'false' if value is False else repr(float(value))}")
    return "\n".join(lines) + "\n"


class LinksFile:
    """The links file of a running node: re-read when its modification
    time or size changes (the testbed rewrites it atomically to cut or heal)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._stamp: tuple[int, int] | None = None

    def read_if_changed(self) -> dict[str, LinkConditions] | None:
        """New conditions if the file changed since the last call, else None.
        Raises LinksError for a file that cannot be read or parsed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise LinksError(f"links file {self.path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return None
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise LinksError(f"links file {self.path}: {exc.strerror}") from None
        links = parse_links(raw, f"links file {self.path}")
        self._stamp = stamp
        return links
