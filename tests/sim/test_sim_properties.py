"""Conservation and minimum-hop properties of random simulated networks.

Hypothesis draws small topologies, availability, loss, duplication and
jitter; every run is seeded, so a failure reproduces.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.engine import Mode
from mvds.sim.model import AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec
from mvds.sim.network import Simulation
from mvds.sim.report import paths
from mvds.sim.schedules import ALWAYS_ON, Periodic, RandomAvailability
from mvds.wire import encode_message

NAMES = "ABCDEFG"


@st.composite
def topologies(draw, max_nodes=6):
    """A random connected graph: a random tree plus random extra edges."""
    n = draw(st.integers(min_value=2, max_value=max_nodes))
    names = NAMES[:n]
    edges = set()
    for i in range(1, n):
        j = draw(st.integers(min_value=0, max_value=i - 1))
        edges.add((names[j], names[i]))
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.integers(0, 4)) == 0:
                edges.add((names[i], names[j]))
    return names, sorted(edges)


schedules = st.one_of(
    st.just(ALWAYS_ON),
    st.builds(Periodic, st.integers(1, 4), st.integers(0, 4), st.integers(0, 3)),
    st.builds(RandomAvailability, st.sampled_from([0.3, 0.6, 0.9])),
)


@st.composite
def lossy_setups(draw):
    names, edges = draw(topologies())
    loss = draw(st.sampled_from([0.0, 0.1, 0.4]))
    duplicate = draw(st.sampled_from([0.0, 0.2]))
    jitter = draw(st.sampled_from([0.0, 0.3, 2.0]))
    nodes = [
        NodeSpec(name, draw(st.sampled_from([Mode.BATCH, Mode.INTERACTIVE])), draw(schedules),
                 draw(st.sampled_from(["exponential", "linear", "quadratic"])))
        for name in names
    ]
    links = [LinkSpec(a, b, latency=0.1, jitter=jitter, loss=loss, duplicate=duplicate) for a, b in edges]
    shares = []
    for a, b in edges:
        if draw(st.booleans()):
            shares.append(ShareSpec(a, "g", b))
        if draw(st.booleans()):
            shares.append(ShareSpec(b, "g", a))
    appends = [
        AppendSpec(round(t, 2), draw(st.sampled_from(names)), "g", f"m{i}".encode())
        for i, t in enumerate(draw(st.lists(st.floats(0, 30), min_size=1, max_size=8)))
    ]
    appends.sort(key=lambda a: a.time)
    return Setup(nodes, links, shares, appends, duration=200.0), draw(st.integers(0, 2**31))


@settings(max_examples=40)
@given(lossy_setups())
def test_conservation(drawn):
    setup, seed = drawn
    result = Simulation(setup, seed).run()
    recorder = result.recorder
    seen = set()
    for delivery in recorder.deliveries:
        # Every delivered message was appended somewhere...
        assert delivery.message in recorder.messages
        info = recorder.messages[delivery.message]
        # ...never handed to its author, never twice to one node...
        assert delivery.node != info.author
        assert (delivery.message, delivery.node) not in seen
        seen.add((delivery.message, delivery.node))
        # ...and never before it existed (one link latency at least).
        assert delivery.time >= info.appended_at + 0.1 - 1e-9
        # Only nodes the sharing graph reaches can get it.
        assert delivery.node in recorder.expected[delivery.message]
    summary = recorder.summary(result.end_time, result.engine_stats())
    wire = summary["wire"]
    assert sum(wire["record_bytes"].values()) == wire["bytes"]
    assert wire["datagrams"] >= wire["payloads"]
    assert summary["delivered"] <= summary["expected_deliveries"]
    # A node's store holds exactly its own appends and what reached it.
    for index, engine in enumerate(result.engines):
        own = sum(1 for info in recorder.messages.values() if info.author == index)
        assert engine.store.message_count() >= own + sum(1 for m, n in seen if n == index)


@settings(max_examples=30)
@given(lossy_setups())
def test_message_bytes_are_the_encoded_messages(drawn):
    """Bytes by record type add up: MESSAGE bytes are tag + length + encoding."""
    setup, seed = drawn
    setup.trace = False
    sim = Simulation(setup, seed)
    expected = {"message": 0}
    original = sim.recorder.on_payload

    def spy(payload, datagrams, size):
        for message in payload.messages:
            encoded = len(encode_message(message))
            expected["message"] += 1 + (1 if encoded < 128 else 2) + encoded
        original(payload, datagrams, size)

    sim.recorder.on_payload = spy
    result = sim.run()
    assert result.recorder.record_bytes()["message"] == expected["message"]


def _hops(edges, source):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, []).append(a)
    distance = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for nxt in graph.get(node, ()):
            if nxt not in distance:
                distance[nxt] = distance[node] + 1
                queue.append(nxt)
    return distance


@settings(max_examples=30)
@given(topologies(max_nodes=7), st.sampled_from([Mode.BATCH, Mode.INTERACTIVE]),
       st.sampled_from([0.05, 0.1, 0.25]), st.data())
def test_lossless_always_on_delivery_takes_the_minimum_hops(topology, mode, latency, data):
    names, edges = topology
    nodes = [NodeSpec(name, mode) for name in names]
    links = [LinkSpec(a, b, latency=latency) for a, b in edges]
    shares = [ShareSpec(x, "g", y) for a, b in edges for x, y in ((a, b), (b, a))]
    authors = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
    # Far apart, so every message has settled before the next is appended.
    appends = [AppendSpec(20.0 * i, author, "g", f"m{i}".encode()) for i, author in enumerate(authors)]
    result = Simulation(Setup(nodes, links, shares, appends, duration=200.0), seed=1).run()
    # Batch: one MESSAGE per hop.  Interactive: OFFER, REQUEST, MESSAGE.
    legs = 1 if mode is Mode.BATCH else 3
    routes = paths(result)
    index = {name: i for i, name in enumerate(names)}
    for mid, info in result.recorder.messages.items():
        distance = _hops(edges, names[info.author])
        assert {n for (m, n) in routes if m == mid} == {index[n] for n in names} - {info.author}
        for name in names:
            if index[name] == info.author:
                continue
            at, chain = routes[(mid, index[name])]
            assert len(chain) - 1 == distance[name]
            assert abs((at - info.appended_at) - legs * latency * distance[name]) < 1e-6
