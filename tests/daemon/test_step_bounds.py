"""A step takes at most STEP_DATAGRAMS received datagrams (its ACKs go back
sooner, so the sender refills its window while the rest are worked
through), and the socket is not read past INBOX_LIMIT held datagrams."""

from __future__ import annotations

import mvds
from mvds.daemon import node as node_module
from mvds.daemon import transport as transport_module

from nodes import collect, pair


def _record_inbox_sizes(node) -> tuple[list[int], list[int]]:
    """Datagrams each step took, and datagrams held when each step began."""
    taken: list[int] = []
    held: list[int] = []
    open_all = node.gate.open_all
    step = node._step

    def recording_open_all(inbox, clock):
        taken.append(len(inbox))
        return open_all(inbox, clock)

    def recording_step():
        held.append(len(node._inbox))
        step()

    node.gate.open_all = recording_open_all
    node._step = recording_step
    return taken, held


async def _burst(count: int) -> tuple[list[int], list[int]]:
    """A sends ``count`` messages to B at once; B's step sizes (taken, held)."""
    async with mvds.open_node() as a, mvds.open_node() as b:
        await pair(a, b)
        taken, held = _record_inbox_sizes(b)
        bodies = [b"%05d" % i + b"x" * 250 for i in range(count)]
        await a.append_many("chat", bodies)
        got = await collect(b, count, timeout=60)
        assert sorted(m.body for m in got) == sorted(bodies)
    return taken, held


async def test_a_burst_is_taken_in_bounded_steps_and_all_of_it_delivered():
    taken, _ = await _burst(4000)
    assert max(taken) == node_module.STEP_DATAGRAMS  # bursts were bigger than a step
    assert all(n <= node_module.STEP_DATAGRAMS for n in taken)


async def test_the_socket_is_not_read_past_the_inbox_limit(monkeypatch):
    monkeypatch.setattr(node_module, "STEP_DATAGRAMS", 2)
    monkeypatch.setattr(node_module, "INBOX_LIMIT", 16)
    monkeypatch.setattr(transport_module, "MAX_DRAIN", 16)
    _, held = await _burst(1500)
    assert max(held) > 16  # it filled up: the limit was reached
    assert max(held) < 16 + 16  # one drain past the limit at most
