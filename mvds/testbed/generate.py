"""Scenarios for common topologies: line, ring, star, full mesh, random
k-regular and the research sketch, each for any number of nodes.

Pure functions from parameters to a :class:`~mvds.testbed.scenario.Scenario`;
``mvds testbed generate KIND --nodes N ...`` prints one as TOML to edit or
run.  Every link gets the same conditions (both directions); edit the file
for anything finer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mvds.daemon.netem import LinkConditions
from mvds.testbed.scenario import (
    GroupSpec, LinkSpec, NodeSpec, Scenario, ScenarioError, Workload, parse_scenario,
    render_scenario,
)

KINDS = ("line", "ring", "star", "mesh", "regular", "sketch")


@dataclass(frozen=True)
class Params:
    nodes: int = 4
    degree: int = 4
    """k of the random k-regular topology."""
    link: LinkConditions = LinkConditions()
    """The conditions of every link, both directions."""
    duration: float = 60.0
    appends: float = 1.0
    """Appends per node per second."""
    size: int = 64
    start: float = 1.0
    stop: float = 6.0
    epoch_ms: int = 200
    seed: int = 1
    mode: str = "batch"


def names(count: int) -> list[str]:
    width = len(str(count))
    return [f"n{i:0{width}d}" for i in range(1, count + 1)]


def edges(kind: str, count: int, degree: int = 4, seed: int = 1) -> list[tuple[int, int]]:
    """The links of a topology over nodes 0..count-1."""
    if count < 1:
        raise ScenarioError("a network needs at least one node")
    if kind == "line":
        return [(i, i + 1) for i in range(count - 1)]
    if kind == "ring":
        if count < 3:
            raise ScenarioError("a ring needs at least 3 nodes")
        return [(i, (i + 1) % count) for i in range(count)]
    if kind == "star":
        return [(0, i) for i in range(1, count)]
    if kind == "mesh":
        return [(i, j) for i in range(count) for j in range(i + 1, count)]
    if kind == "regular":
        return random_regular(count, degree, random.Random(seed))
    if kind == "sketch":
        if count < 4 or count % 2:
            raise ScenarioError("the research sketch needs an even number of nodes, at least 4")
        half = count // 2  # a ladder: mobiles 0..half-1 on top, desktops below
        out = [(i, i + 1) for i in range(half - 1)]
        out += [(half + i, half + i + 1) for i in range(half - 1)]
        out += [(i, half + i) for i in range(half)]
        return sorted(out)
    raise ScenarioError(f"unknown topology {kind!r} (known: {', '.join(KINDS)})")


def random_regular(count: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A connected simple graph where every node has ``degree`` links
    (the configuration model: pair up link ends at random, retry until no
    loop, no double link and one component)."""
    if not 1 <= degree < count:
        raise ScenarioError(f"a {degree}-regular graph needs more than {degree} nodes")
    if count * degree % 2:
        raise ScenarioError("nodes x degree must be even for a regular graph")
    for _ in range(10_000):
        stubs = [node for node in range(count) for _ in range(degree)]
        rng.shuffle(stubs)
        pairs = set()
        ok = True
        for a, b in zip(stubs[::2], stubs[1::2]):
            pair = (min(a, b), max(a, b))
            if a == b or pair in pairs:
                ok = False
                break
            pairs.add(pair)
        if ok and _connected(count, pairs):
            return sorted(pairs)
    raise ScenarioError(f"no connected {degree}-regular graph of {count} nodes found")


def _connected(count: int, pairs: set[tuple[int, int]]) -> bool:
    adjacent: dict[int, list[int]] = {i: [] for i in range(count)}
    for a, b in pairs:
        adjacent[a].append(b)
        adjacent[b].append(a)
    seen = {0}
    stack = [0]
    while stack:
        for nxt in adjacent[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen) == count


def generate(kind: str, p: Params) -> Scenario:
    """A scenario of ``kind`` with ``p``'s settings (validated by a round trip
    through the parser, so a generated file always loads)."""
    pairs = edges(kind, p.nodes, p.degree, p.seed)
    if kind == "sketch" and p.nodes == 4:
        node_names = ["a", "b", "c", "d"]
    elif kind == "sketch":
        half = p.nodes // 2
        node_names = [f"m{i}" for i in range(1, half + 1)] + [f"d{i}" for i in range(1, half + 1)]
    else:
        node_names = names(p.nodes)
    nodes = []
    for i, name in enumerate(node_names):
        if kind == "sketch" and i < p.nodes // 2:
            # The research sketch's bursty mobiles: radio on 2 s / off 2 s,
            # neighbours out of phase, 20% loss (as docker-compose.yml).
            schedule = "up 2s, down 2s" if i % 2 == 0 else "down 1s, up 2s, down 1s"
            nodes.append(NodeSpec(name, p.mode, "causal", schedule, 0.2))
        else:
            nodes.append(NodeSpec(name, p.mode))
    links = [LinkSpec(node_names[a], node_names[b], p.link, p.link) for a, b in pairs]
    scenario = Scenario(
        name=f"{kind}-{p.nodes}",
        description=f"generated: mvds testbed generate {kind} --nodes {p.nodes}",
        nodes=tuple(nodes),
        links=tuple(links),
        groups=(GroupSpec("chat", tuple(node_names)),),
        workload=Workload(p.appends, (p.size, p.size), 0.0, p.start, p.stop, (), "chat"),
        duration=p.duration,
        faults=(),
        seed=p.seed,
        epoch_ms=p.epoch_ms,
    )
    return parse_scenario(render_scenario(scenario), f"generated {kind}")

