"""Schedules, parameters and setups: every bad input is one clear ValueError."""

from __future__ import annotations

import pytest

from mvds.sim.model import AppendSpec, LinkSpec, NodeSpec, Setup, ShareSpec
from mvds.sim.params import Param, parse_assignments, resolve
from mvds.sim.schedules import (
    ALWAYS_ON,
    Periodic,
    RandomAvailability,
    bind,
    next_change,
    offline_intervals,
    online_fraction,
    parse_schedule,
)


def test_periodic_schedule_matches_the_research_sketch():
    a, b = Periodic(2, 2, 0), Periodic(2, 2, 1)
    assert [a.online(t) for t in range(8)] == [True, True, False, False] * 2
    assert [b.online(t) for t in range(8)] == [False, True, True, False, False, True, True, False]
    assert next_change(a, 0, 100) == 2
    assert next_change(b, 1, 100) == 3
    assert offline_intervals(a, 7.5) == [(2.0, 4.0), (6.0, 7.5)]
    assert online_fraction(a, 8) == 0.5


def test_random_schedule_is_reproducible_and_roughly_right():
    first = bind(RandomAvailability(0.1), "7:A")
    again = bind(RandomAvailability(0.1), "7:A")
    other = bind(RandomAvailability(0.1), "7:B")
    ticks = range(2000)
    draws = [first.online(t) for t in ticks]
    assert draws == [again.online(t) for t in reversed(ticks)][::-1]
    assert draws != [other.online(t) for t in ticks]
    assert 0.07 < sum(draws) / len(draws) < 0.13


def test_always_on_never_changes():
    assert next_change(ALWAYS_ON, 0, 10**9) is None
    assert offline_intervals(ALWAYS_ON, 100) == []


@pytest.mark.parametrize(
    "text, expected",
    [("always", ALWAYS_ON), ("periodic:2:2:1", Periodic(2, 2, 1)), ("periodic:3:1", Periodic(3, 1, 0))],
)
def test_parse_schedule(text, expected):
    assert parse_schedule(text) == expected
    assert parse_schedule(expected.describe()) == expected


@pytest.mark.parametrize("text", ["sometimes", "periodic:0:2", "periodic:x:2", "random:1.5", "random"])
def test_parse_schedule_rejects_bad_input(text):
    with pytest.raises(ValueError, match="schedule|availability|periodic"):
        parse_schedule(text)


PARAMS = [
    Param("nodes", 3, "n", kind="int", minimum=2),
    Param("loss", 0.0, "p", minimum=0.0, maximum=1.0),
    Param("mode", "batch", "m", kind="str", choices=("batch", "interactive")),
    Param("flag", True, "b", kind="bool"),
    Param("losses", [0.0], "ps", kind="floats", maximum=1.0),
]


def test_resolve_converts_strings_and_toml_values():
    values = resolve(PARAMS, {"nodes": "5", "loss": 0.25, "mode": "interactive", "flag": "no",
                              "losses": "0,0.5"})
    assert values == {"nodes": 5, "loss": 0.25, "mode": "interactive", "flag": False, "losses": [0.0, 0.5]}
    assert resolve(PARAMS, {"losses": [0, 1]})["losses"] == [0.0, 1.0]
    assert resolve(PARAMS, {})["nodes"] == 3


@pytest.mark.parametrize(
    "given, message",
    [
        ({"nodez": "5"}, "unknown parameter 'nodez'"),
        ({"nodes": "five"}, "nodes: expected int"),
        ({"nodes": "1"}, "below the minimum"),
        ({"loss": "2"}, "above the maximum"),
        ({"mode": "turbo"}, "not one of batch, interactive"),
        ({"flag": "maybe"}, "flag: expected bool"),
        ({"losses": "0,x"}, "losses: expected float"),
        ({"nodes": 2.5}, "nodes: expected int"),
    ],
)
def test_resolve_rejects_bad_values(given, message):
    with pytest.raises(ValueError, match=message):
        resolve(PARAMS, given)


def test_parse_assignments():
    assert parse_assignments(["nodes=5", "group-size=3"]) == {"nodes": "5", "group_size": "3"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_assignments(["nodes"])


def _setup(**changes):
    values = dict(
        nodes=[NodeSpec("A"), NodeSpec("B")],
        links=[LinkSpec("A", "B")],
        shares=[ShareSpec("A", "g", "B")],
        appends=[AppendSpec(0.0, "A", "g", b"x")],
        duration=10.0,
    )
    values.update(changes)
    return Setup(**values)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"nodes": [NodeSpec("A"), NodeSpec("A")]}, "unique"),
        ({"links": [LinkSpec("A", "C")]}, "unknown node 'C'"),
        ({"links": [LinkSpec("A", "B"), LinkSpec("B", "A")]}, "listed twice"),
        ({"links": []}, "no link connects them"),
        ({"appends": [AppendSpec(0.0, "Z", "g", b"x")]}, "unknown node 'Z'"),
        ({"duration": 0.0}, "duration"),
    ],
)
def test_setup_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        _setup(**changes).validate()


def test_link_validation():
    with pytest.raises(ValueError, match="latency must be positive"):
        LinkSpec("A", "B", latency=0)
    with pytest.raises(ValueError, match="loss must be between 0 and 1"):
        LinkSpec("A", "B", loss=1.5)
