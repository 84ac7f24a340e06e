"""A bursty node's radio window: Engine.window_opened pulls backed-off records
forward although the peer was never silent for offline_after (simulated time)."""

from __future__ import annotations

from harness import GROUP, peer
from mvds.engine import Engine, EngineConfig
from mvds.store.memory import MemoryStore
from mvds.wire import Payload

B = peer("B")


def test_window_opened_makes_backed_off_records_due_at_once():
    config = EngineConfig(epoch_length=0.3)
    engine = Engine(MemoryStore(), config, now=0.0)
    engine.share(GROUP, B, 0.0)
    engine.append(GROUP, b"x", 0.0)
    now = 0.0
    while engine.next_timer() - now < 10:  # our MESSAGEs are lost: backoff grows
        now = engine.next_timer() + 1e-9
        engine.payloads_to_send(now)
        engine.receive(B, Payload(), now)  # B keeps talking: never silent
    assert engine.payloads_to_send(now) == []
    assert engine.stats["reachability_pulls"] == 0, "the reachability rule did not fire"
    engine.window_opened(B, now)
    assert [len(p.messages) for _, p in engine.payloads_to_send(now)] == [1]
    assert engine.stats["reachability_pulls"] == 1
