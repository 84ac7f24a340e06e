"""The research sketch (`seed` scenario): who holds what when, and by which path.

The expected timeline follows from the setup (latency 0.1 tick, A online in
ticks 0-1, 4-5, ..., B in ticks 1-2, 5-6, ...):

* A appends "hello world" at tick 1; B is online and gets it at 1.1, relays
  to D (1.2), D relays to C (1.3).  A shares only with B, so that is the one
  path.
* B appends "hello!" at tick 2, when A is offline: A misses it, D gets it at
  2.1 and C at 2.2.  C (interactive) offers it to A, also lost.  C's
  retransmission of the offer falls due at tick 4 (a one-epoch wait,
  counted from the next epoch boundary), just as A comes back online; A
  requests, and the message arrives at 4.3 along B -> D -> C -> A, before
  B (offline in ticks 3-4) could retransmit it directly.
"""

from __future__ import annotations

import pytest

from mvds.sim.report import outcome_json, paths
from mvds.sim.runner import run_scenario


@pytest.fixture(scope="module")
def seed_outcome():
    return run_scenario("seed")


def _deliveries(outcome):
    result = outcome.result
    names = result.names
    labels = {mid: info.body for mid, info in result.recorder.messages.items()}
    return {
        (labels[mid], names[node]): (round(at, 6), "".join(names[n] for n in chain))
        for (mid, node), (at, chain) in paths(result).items()
    }


def test_seed_scenario_delivers_along_the_expected_paths(seed_outcome):
    assert _deliveries(seed_outcome) == {
        (b"hello world", "B"): (1.1, "AB"),
        (b"hello world", "D"): (1.2, "ABD"),
        (b"hello world", "C"): (1.3, "ABDC"),
        (b"hello!", "D"): (2.1, "BD"),
        (b"hello!", "C"): (2.2, "BDC"),
        (b"hello!", "A"): (4.3, "BDCA"),
    }


def test_seed_scenario_converges_and_drains(seed_outcome):
    summary = seed_outcome.result.summary()
    assert summary["delivery_ratio"] == 1.0
    assert summary["convergence_time"] == 4.3
    assert summary["sync_state_drained_at"] is not None
    # A was offline when B and C first sent to it: those datagrams were lost
    # at A's radio, and B's retransmission at tick 3 never left B's.
    assert summary["wire"]["dropped_receiver_offline"] >= 2
    assert summary["wire"]["dropped_sender_offline"] >= 1
    for engine in seed_outcome.result.engines:
        assert engine.store.message_count() == 2


def test_seed_report_lists_holdings_and_exposure(seed_outcome):
    doc = outcome_json(seed_outcome)
    by_label = {m["label"]: m for m in doc["messages"]}
    assert by_label["hello!"]["deliveries"][-1] == {"node": "A", "at": 4.3, "path": ["B", "D", "C", "A"]}
    # C never talked to B, but learnt from D that D holds B's message.
    exposure = doc["exposure"]["C"]
    assert exposure["contact_names"] == ["A", "D"]
    assert "D~B" in exposure["relationship_pairs"]
    assert exposure["authors_held_names"] == ["A", "B"]
