"""The link emulator (mvds/daemon/netem.py) without sockets, and its hook
in a real node: a links file that delays, cuts and heals a link."""

from __future__ import annotations

import os
import time

import pytest
import trio
from hypothesis import given, settings, strategies as st

from mvds.daemon.config import NodeConfig
from mvds.daemon.netem import (
    QUEUE_LIMIT, LinkConditions, LinkEmulator, LinksError, LinksFile, parse_links, render_links,
)
from mvds.daemon.node import Node

ADDR = ("127.0.0.1", 9)


def key_of(addr):
    return "b" if addr == ADDR else None


def emulator(**conditions):
    return LinkEmulator({"b": LinkConditions(**conditions)}, seed=1)


def drain(em, until):
    out = []
    t = 0.0
    while em.next_timer() is not None and em.next_timer() <= until:
        t = em.next_timer()
        out.extend((t, d) for d, _ in em.due(t))
    return out


def test_transparent_and_unknown_peers_pass_at_once():
    em = emulator(loss=0.5)
    assert em.admit([(b"x", ("10.0.0.1", 1))], key_of, 0.0) == [(b"x", ("10.0.0.1", 1))]
    em = emulator()
    assert em.admit([(b"x", ADDR)], key_of, 0.0) == [(b"x", ADDR)]


def test_latency_is_a_delay_queue():
    em = emulator(latency=0.05)
    assert em.admit([(b"1", ADDR), (b"2", ADDR)], key_of, 10.0) == []
    assert em.next_timer() == pytest.approx(10.05)
    assert em.due(10.04) == []
    assert [d for d, _ in em.due(10.05)] == [b"1", b"2"]
    assert em.next_timer() is None


def test_cut_drops_everything_and_a_heal_lets_it_through():
    em = emulator(cut=True)
    assert em.admit([(b"x", ADDR)] * 5, key_of, 0.0) == []
    assert em.drops["netem_cut"] == 5
    em.configure({"b": LinkConditions()})
    assert em.admit([(b"x", ADDR)], key_of, 1.0) == [(b"x", ADDR)]


def test_loss_and_duplication_are_seeded_and_about_right():
    def fates(seed):
        em = LinkEmulator({"b": LinkConditions(loss=0.2, duplicate=0.1)}, seed=seed)
        return [len(em.admit([(b"x", ADDR)], key_of, 0.0)) for _ in range(5000)]

    a, b = fates(3), fates(3)
    assert a == b  # reproducible
    assert a != fates(4)
    lost = a.count(0) / len(a)
    doubled = a.count(2) / len(a)
    assert 0.17 < lost < 0.23
    assert 0.06 < doubled < 0.11  # duplicated and not lost: 0.1 * 0.8


def test_reorder_lets_datagrams_overtake():
    em = emulator(latency=0.1, reorder=0.5)
    now_out = []
    for i in range(200):
        now_out += em.admit([(str(i).encode(), ADDR)], key_of, i * 0.001)
    later = [d for _, d in drain(em, 10.0)]
    order = [int(d) for d, _ in now_out] + [int(d) for d in later]
    assert sorted(order) == list(range(200))
    assert order != list(range(200))
    assert 60 < em.stats["netem_reorder"] < 140


def test_rate_serialises_and_limits_the_queue():
    em = emulator(rate=1000.0)  # 1000 bytes/s: a 100-byte datagram takes 0.1 s
    assert em.admit([(b"x" * 100, ADDR)] * 3, key_of, 0.0) == []
    times = [t for t, _ in drain(em, 1.0)]
    assert times == pytest.approx([0.1, 0.2, 0.3])
    em = emulator(rate=1.0)
    em.admit([(b"x", ADDR)] * (QUEUE_LIMIT + 5), key_of, 0.0)
    assert em.drops["netem_queue_full"] == 5
    assert len(em) == QUEUE_LIMIT


@settings(max_examples=60, deadline=None)
@given(
    latency=st.floats(0, 0.5), jitter=st.floats(0, 0.5), duplicate=st.floats(0, 1),
    loss=st.floats(0, 0.9), rate=st.sampled_from([0.0, 500.0, 1e6]),
    sends=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 300)), max_size=40),
)
def test_every_datagram_is_accounted_for_and_leaves_in_time_order(
    latency, jitter, duplicate, loss, rate, sends
):
    em = LinkEmulator({"b": LinkConditions(latency=latency, jitter=jitter, loss=loss,
                                           duplicate=duplicate, rate=rate)}, seed=0)
    sends.sort()
    left = 0
    last_due = -1.0
    for now, size in sends:
        while em.next_timer() is not None and em.next_timer() <= now:
            t = em.next_timer()
            assert t >= last_due
            last_due = t
            left += len(em.due(t))
        left += len(em.admit([(b"x" * size, ADDR)], key_of, now))
    while em.next_timer() is not None:
        t = em.next_timer()
        assert t >= last_due
        last_due = t
        left += len(em.due(t))
    copies = len(sends) + em.stats["netem_duplicate"]
    assert left == copies - em.drops["netem_loss"] - em.drops["netem_queue_full"]


def test_links_file_errors_are_one_line():
    with pytest.raises(LinksError, match=r"peers.b: loss must be between 0 and 1"):
        parse_links(b"[peers.b]\nloss = 2.0\n", "f")
    with pytest.raises(LinksError, match="unknown key 'los'"):
        parse_links(b"[peers.b]\nlos = 0.1\n", "f")
    with pytest.raises(LinksError, match="reorder needs a latency"):
        parse_links(b"[peers.b]\nreorder = 0.1\n", "f")
    with pytest.raises(LinksError, match="invalid TOML"):
        parse_links(b"[peers.b\n", "f")
    links = {"b": LinkConditions(latency=0.02, loss=0.1, cut=True)}
    assert parse_links(render_links(links).encode(), "f") == links


def test_links_file_is_reread_only_when_it_changes(tmp_path):
    path = tmp_path / "links.toml"
    path.write_text(render_links({"b": LinkConditions(loss=0.1)}))
    f = LinksFile(path)
    assert f.read_if_changed() == {"b": LinkConditions(loss=0.1)}
    assert f.read_if_changed() is None
    path.write_text(render_links({"b": LinkConditions(cut=True)}))
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert f.read_if_changed() == {"b": LinkConditions(cut=True)}


async def test_a_node_delays_cuts_and_heals_per_peer(tmp_path):
    """Two real nodes on loopback; A's links file shapes what A sends to B."""
    links = tmp_path / "a-links.toml"
    links.write_text(render_links({"b": LinkConditions(latency=0.3)}))
    config = NodeConfig(listen="127.0.0.1:0", links=str(links), seed=1, epoch_ms=100)
    async with Node.open(config=config) as a, Node.open(listen="127.0.0.1:0") as b:
        await a.add_peer("b", b.peer_id, "%s:%d" % b.address, ["chat"])
        await b.add_peer("a", a.peer_id, "%s:%d" % a.address, ["chat"])
        # The handshake is delayed too, and may collide and retry: time only
        # the message, once both ends hold a session.
        with trio.fail_after(20):
            while not all(n.status_now()["peers"][0]["session"]["established"]
                          for n in (a, b)):
                await trio.sleep(0.05)
        started = trio.current_time()
        await a.append("chat", b"slow")
        async for message in b.messages(0):
            break
        delay = trio.current_time() - started
        assert 0.28 < delay < 1.0, delay
        # Cut: nothing reaches B while the file says so.
        links.write_text(render_links({"b": LinkConditions(cut=True)}))
        await trio.sleep(0.3)
        await a.append("chat", b"cut")
        with trio.move_on_after(1.5):
            async for message in b.messages(1):
                pytest.fail(f"arrived through a cut link: {message.body!r}")
        assert a.status_now()["drops"].get("netem_cut", 0) > 0
        links.write_text(render_links({"b": LinkConditions()}))  # heal
        with trio.fail_after(10):
            async for message in b.messages(1):
                assert message.body == b"cut"
                break
