"""Retransmission policies: "as specified" means the policy's schedule alone.

The engine shapes every policy by default (a cap while the peer answers,
a floor at the peer's round-trip timeout, the reachability rule); the
simulator runs the reference implementation's and the research sketch's
policies without those rules, through the engine's own settings.
"""

from __future__ import annotations

import random

import pytest

from mvds.engine import Engine, EngineConfig
from mvds.sim.model import NodeSpec, group_id_for, peer_id_for, resolve_rules
from mvds.sim.runner import grid, run_scenario
from mvds.sim.params import resolve
from mvds.sim.scenarios import build_sweep_point, get_scenario
from mvds.store.memory import MemoryStore
from mvds.wire import Payload


def _send_times(
    policy: str, rules: str, *, talkative_peer: bool, answering: bool = False, until: int = 60
) -> list[float]:
    """When node A sends B one message that B never acknowledges.

    With ``talkative_peer``, B sends A an (empty) payload in the middle of
    every tick, so A counts B as online, and B acknowledges a second message
    after its first send, which gives A a round-trip sample (1.5 ticks: a
    retransmission timeout of 4.5 ticks).  With ``answering`` as well, A
    appends a new message every tick and B ACKs it half a tick later.
    """
    config = NodeSpec("A", policy=policy, rules=rules).engine_config(seed=0)
    engine = Engine(MemoryStore(), config, now=0.0)
    group, peer = group_id_for("g"), peer_id_for("B")
    engine.share(group, peer, 0.0)
    probe = engine.append(group, b"acknowledged after 1.5 ticks", 0.0)
    target = engine.append(group, b"never acknowledged", 0.0)
    sent = []
    for tick in range(until):
        for now in (float(tick), tick + 0.5):
            if answering and tick >= 2 and now == tick:
                probe = engine.append(group, b"probe %d" % tick, now)
            if talkative_peer and now == 1.5:
                engine.receive(peer, Payload(acks=[probe.id]), now)
            elif talkative_peer and now == tick + 0.5:
                engine.receive(peer, Payload(acks=[probe.id] if answering else []), now)
            timer = engine.next_timer()
            if timer is None or timer > now:
                continue
            for _, payload in engine.payloads_to_send(now):
                if any(m.id == target.id for m in payload.messages):
                    sent.append(now)
    return sent


LINEAR = [0.0, 2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0]  # epoch + 2 * count
QUADRATIC = [0.0, 2.0, 7.0, 17.0, 34.0]  # epoch + count**2 + 1


@pytest.mark.parametrize("talkative_peer", [False, True])
def test_spec_rules_send_exactly_on_the_policy_schedule(talkative_peer):
    assert _send_times("linear", "spec", talkative_peer=talkative_peer) == LINEAR
    assert _send_times("quadratic", "spec", talkative_peer=talkative_peer) == QUADRATIC


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_engine_rules_reshape_the_schedule_only_for_a_peer_that_answers():
    # A silent peer with no round-trip sample: the engine's rules do not apply.
    assert _send_times("linear", "engine", talkative_peer=False) == LINEAR
    # A peer heard every tick that answered once (a round trip measured):
    # the engine waits at least the retransmission timeout (5 ticks, not
    # the policy's 4 after the second send); talking alone neither caps the
    # waits nor pulls the record forward (issue 18: a reference peer replies
    # to every payload and never re-ACKs a duplicate), so the policy's
    # schedule goes on.
    talking = _send_times("linear", "engine", talkative_peer=True)
    assert talking[:3] == [0.0, 2.0, 7.0]
    assert _gaps(talking)[2:] == _gaps(LINEAR)[2:]
    # A peer that keeps ACKing other messages: the waits are capped.
    answering = _send_times("linear", "engine", talkative_peer=True, answering=True)
    assert len(answering) > len(LINEAR)
    assert max(_gaps(answering)) <= EngineConfig().online_backoff + 1


def test_auto_rules_keep_ours_on_the_engine_and_the_others_as_specified():
    assert resolve_rules("exponential", "auto") == "engine"
    assert resolve_rules("linear", "auto") == "spec"
    assert resolve_rules("quadratic", "auto") == "spec"
    assert resolve_rules("exponential", "spec") == "spec"
    assert resolve_rules("linear", "engine") == "engine"
    default = EngineConfig()
    ours = NodeSpec("A", policy="exponential").engine_config(seed=0)
    assert (ours.online_backoff, ours.max_rto, ours.reachability_backoff) == (
        default.online_backoff, default.max_rto, default.reachability_backoff,
    )
    with pytest.raises(ValueError, match="unknown policy rules"):
        resolve_rules("linear", "sometimes")


def test_sweep_policy_runs_the_reference_policies_as_specified():
    scenario = get_scenario("sweep-policy")
    params = resolve(scenario.params, {"loss": "0.5"})
    rules = {}
    for point in grid(scenario, params):
        setup = build_sweep_point(params, point, random.Random(0))
        configs = {node.engine_config(0).online_backoff for node in setup.nodes}
        assert len(configs) == 1
        rules[point["policy"]] = configs.pop()
    assert rules == {
        "exponential": EngineConfig().online_backoff,
        "linear": NodeSpec("x", policy="linear", rules="spec").engine_config(0).online_backoff,
        "quadratic": NodeSpec("x", policy="quadratic", rules="spec").engine_config(0).online_backoff,
    }
    assert rules["linear"] > 10**9


def test_reports_name_how_each_policy_was_applied():
    outcome = run_scenario(
        "sweep-policy",
        {"nodes": "4", "communicating": "2", "sharing": "2", "chat": "10", "loss": "0.3", "max_duration": "400"},
    )
    from mvds.sim.report import outcome_json, sweep_rows

    doc = outcome_json(outcome)
    assert [run["rules"] for run in doc["runs"]] == ["engine", "spec", "spec"]
    assert [row[3] for row in sweep_rows(doc)] == [
        "exponential (engine)", "linear (as specified)", "quadratic (as specified)",
    ]
