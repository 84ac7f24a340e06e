"""The engine against a peer that talks but never ACKs (simulated time).

A deployed reference peer answers every payload with an empty payload and,
on its SQLite store, never ACKs a MESSAGE it already holds: once its first
ACK is lost, the record can only end by the sender's own give-up.  Hearing
from such a peer must not defeat the backoff (docs/PROTOCOL.md 12.1, 15).
"""

from __future__ import annotations

from harness import GROUP, peer
from mvds.engine import Engine, EngineConfig, ExponentialBackoff, GaveUp
from mvds.store.memory import MemoryStore
from mvds.wire import Payload

B = peer("B")
EPOCH = 0.3
HORIZON = 600.0  # ten minutes


def curve_sends(policy: ExponentialBackoff, horizon_epochs: float) -> float:
    """Sends of a never-answered record by ``horizon_epochs``, by the policy
    alone (mean jitter): the backoff curve."""
    t, sends = 0.0, 0
    while t <= horizon_epochs:
        sends += 1
        wait = max(1, int(min(policy.base * policy.factor ** (sends - 1), policy.max_delay)))
        t += wait + int(wait * policy.jitter) / 2
    return sends


def talk_without_acking(engine: Engine, horizon: float, keepalive: float = 1.0) -> list[float]:
    """Drive ``engine`` against B: B replies to every payload with an empty
    one and says hello every ``keepalive`` seconds; returns when the record's
    MESSAGE went out."""
    sends: list[float] = []
    replies: list[float] = []
    next_hello = 0.05
    now = 0.0
    while now <= horizon:
        timer = engine.next_timer()
        # (a hair past the timer: epoch boundaries are not exact in binary)
        candidates = [next_hello, *replies] + ([timer + 1e-9] if timer is not None else [])
        now = max(now, min(candidates))
        if replies and replies[0] <= now:
            replies.pop(0)
            engine.receive(B, Payload(), now)
        elif next_hello <= now:
            next_hello += keepalive
            engine.receive(B, Payload(), now)
        for to, payload in engine.payloads_to_send(now):
            assert to == B and not payload.acks
            if payload.messages:
                sends.append(now)
            replies.append(now + 0.01)  # the reference answers every payload
    return sends


def test_a_talking_peer_that_never_acks_gets_the_backoff_curve():
    config = EngineConfig(epoch_length=EPOCH)
    engine = Engine(MemoryStore(), config, now=0.0)
    engine.share(GROUP, B, 0.0)
    engine.append(GROUP, b"never acknowledged", 0.0)
    sends = talk_without_acking(engine, HORIZON)
    expected = curve_sends(config.policy, HORIZON / EPOCH)
    assert abs(len(sends) - expected) <= 0.1 * expected, (len(sends), expected)
    assert engine.stats["reachability_pulls"] == 0


def test_a_talking_peer_that_never_acks_reaches_the_configured_give_up():
    engine = Engine(MemoryStore(), EngineConfig(epoch_length=EPOCH), now=0.0)
    engine.share(GROUP, B, 0.0)
    message = engine.append(GROUP, b"bounded", 0.0, max_sends=8)
    sends = talk_without_acking(engine, HORIZON)
    assert len(sends) == 8
    gave_up = [e for e in engine.events() if isinstance(e, GaveUp)]
    assert [(e.message_id, e.reason) for e in gave_up] == [(message.id, "max_sends")]
    assert engine.is_quiet()


def test_a_peer_back_after_a_silence_is_still_caught_up_at_once():
    """Reachability stays: once per transition from silent to heard."""
    config = EngineConfig(epoch_length=EPOCH)
    engine = Engine(MemoryStore(), config, now=0.0)
    engine.share(GROUP, B, 0.0)
    engine.append(GROUP, b"x", 0.0)
    now = 0.0
    while engine.next_timer() - now < 15:  # B is away: backoff grows
        now = engine.next_timer() + 1e-9
        engine.payloads_to_send(now)
    back = now + config.offline_after + 1
    assert engine.next_timer() > back + 1
    engine.receive(B, Payload(), back)
    assert [len(p.messages) for _, p in engine.payloads_to_send(back)] == [1]
    assert engine.stats["reachability_pulls"] == 1
    # Heard again a moment later: no second pull.
    engine.receive(B, Payload(), back + 1)
    assert engine.payloads_to_send(back + 1) == []
    assert engine.stats["reachability_pulls"] == 1
