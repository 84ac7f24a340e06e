"""The scenario format, the topology generators and the plan: pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mvds.daemon.netem import LinkConditions
from mvds.testbed.generate import KINDS, Params, edges, generate, random_regular
from mvds.testbed.plan import cut_windows, down_windows, plan_appends
from mvds.testbed.scenario import ScenarioError, parse_scenario, render_scenario

MINIMAL = """
duration = "30s"
[[nodes]]
name = "a"
[[nodes]]
name = "b"
[[links]]
a = "a"
b = "b"
latency = "20ms"
loss = 0.1
b_to_a = { loss = 0.3 }
"""


def test_minimal_scenario_defaults_and_per_direction_conditions():
    s = parse_scenario(MINIMAL, "t.toml")
    assert s.name == "t" and s.duration == 30.0 and s.groups[0].name == "chat"
    assert s.groups[0].members == ("a", "b")
    assert s.conditions("a", "b").loss == 0.1 and s.conditions("b", "a").loss == 0.3
    assert s.conditions("b", "a").latency == pytest.approx(0.02)
    assert s.shares("a") == {"b": ["chat"]}
    assert parse_scenario(render_scenario(s), "t.toml") == s


@pytest.mark.parametrize("patch, error", [
    ('duration = "30s"', None),
    ('duration = "30 parsecs"', "t.toml: duration: bad duration"),
    ('[[links]]\na = "a"\nb = "zz"', "t.toml: links[1].b: unknown node 'zz'"),
    ('[[links]]\na = "b"\nb = "a"', "t.toml: links[1]: link b-a is listed twice"),
    ('[link]\nloss = 1.5', "t.toml: link.loss: must be a number between 0 and 1"),
    ('[link]\nreorder = 0.5', "reorder needs a latency"),
    ('[link]\nrate = "fast"', "t.toml: link.rate: expected bytes per second"),
    ('[workload]\nrate = 1\nstart = 5\nstop = 2', "t.toml: workload: needs start <= stop"),
    ('[[faults]]\nat = 5\naction = "kill"\nnode = "a"', "a still down at the end"),
    ('[[faults]]\nat = 5\naction = "restart"\nnode = "a"', "cannot restart 'a': it is running"),
    ('[[faults]]\nat = 5\naction = "partition"\nlinks = [["a", "c"]]', "no link a-c"),
    ('[[faults]]\nat = 50\naction = "pause"\nnode = "a"', "must be before the end"),
    ('[[faults]]\nat = 5\naction = "explode"\nnode = "a"', "faults[0].action: must be one of"),
    ('colour = "blue"', "t.toml: unknown key 'colour'"),
    ('[[nodes]]\nname = "a"', "duplicate node 'a'"),
    ('[[nodes]]\nname = "x y"', "use 1-32 letters"),
])
def test_errors_are_one_line_and_name_the_key(patch, error):
    text = MINIMAL.replace('duration = "30s"', "") if patch.startswith("duration") else MINIMAL
    text = (patch + "\n" + text) if not patch.startswith("[") else (text + "\n" + patch)
    if error is None:
        parse_scenario(text, "t.toml")
        return
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "t.toml")
    message = str(info.value)
    assert "\n" not in message
    assert error in message, message


def test_faults_and_windows():
    text = MINIMAL + """
[[faults]]
at = "2s"
action = "partition"
links = [["a", "b"]]
[[faults]]
at = "4s"
action = "kill"
node = "b"
[[faults]]
at = "5s"
action = "heal"
links = [["b", "a"]]
[[faults]]
at = "6s"
action = "restart"
node = "b"
"""
    s = parse_scenario(text, "t.toml")
    assert cut_windows(s) == {("a", "b"): [(2.0, 5.0)]}
    assert down_windows(s) == {"a": [], "b": [(4.0, 6.0)]}
    appends = plan_appends(s)
    assert not [a for a in appends if a.node == "b" and 4.0 <= a.at < 6.0]
    assert parse_scenario(render_scenario(s), "t.toml") == s


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(4, 24), seed=st.integers(0, 1000),
       loss=st.floats(0, 0.5), latency=st.floats(0, 0.2))
def test_generated_scenarios_round_trip_and_have_the_shape(kind, n, seed, loss, latency):
    if kind == "sketch":
        n -= n % 2
    degree = 3 if n % 2 == 0 else 4
    s = generate(kind, Params(nodes=n, degree=degree, seed=seed,
                                   link=LinkConditions(loss=loss, latency=latency)))
    assert parse_scenario(render_scenario(s), "x") == s
    assert len(s.nodes) == n
    degrees = {name: len(s.neighbours(name)) for name in s.names}
    expected_links = {"line": n - 1, "ring": n, "star": n - 1, "mesh": n * (n - 1) // 2,
                      "regular": n * degree // 2, "sketch": 3 * n // 2 - 2}[kind]
    assert len(s.links) == expected_links
    if kind == "regular":
        assert set(degrees.values()) == {degree}
    if kind == "ring":
        assert set(degrees.values()) == {2}
    if kind == "star":
        assert sorted(degrees.values())[-1] == n - 1


def test_the_four_node_sketch_is_the_compose_network():
    s = generate("sketch", Params(nodes=4))
    assert sorted(l.pair for l in s.links) == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert s.node("a").schedule and s.node("a").loss == 0.2 and not s.node("c").schedule


def test_random_regular_is_seeded():
    import random

    assert random_regular(50, 4, random.Random(3)) == random_regular(50, 4, random.Random(3))
    with pytest.raises(ScenarioError, match="even"):
        edges("regular", 5, 3)


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.5, 20), seed=st.integers(0, 100))
def test_plan_is_seeded_and_inside_the_window(rate, seed):
    s = generate("ring", Params(nodes=5, appends=rate, seed=seed, start=1.0, stop=4.0))
    plan = plan_appends(s)
    assert plan == plan_appends(s)
    assert all(1.0 <= a.at < 4.0 + 1e-9 for a in plan)
    assert len({a.body(s.name) for a in plan}) == len(plan)
    expected = rate * 3.0 * 5
    assert 0.3 * expected - 5 < len(plan) < 2.0 * expected + 10
