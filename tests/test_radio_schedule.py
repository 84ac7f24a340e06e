"""The radio schedule: phases, and the cycle aligned to the wall clock (pure)."""

from __future__ import annotations

import pytest

from mvds.daemon.radio import RadioSchedule


def test_a_schedule_counts_from_the_start_unless_aligned():
    plain = RadioSchedule.parse("up 2s, down 2s")
    assert not plain.aligned and plain.start_offset(1_000_001.5) == 0.0
    assert plain.describe() == "up 2s, down 2s"


def test_aligned_schedules_keep_their_phases_whenever_each_node_starts():
    a = RadioSchedule.parse("up 2s, down 2s, aligned")
    b = RadioSchedule.parse("down 1s, up 2s, Aligned")
    assert a.aligned and b.aligned and a.describe() == "up 2s, down 2s, aligned"
    assert a.phases == RadioSchedule.parse("up 2s, down 2s").phases
    # A starts at wall time 1000.3, B 2.9 s later: at every wall time, the
    # state is what the phases say for (wall time mod 4), so A and B are up
    # together exactly 1 s of every 4 (wall times 1 to 2 mod 4).
    starts = {"a": 1000.3, "b": 1003.2}
    together = 0
    for step in range(4000):
        wall = 1004.0 + step / 1000
        up = {
            name: sched.state_at(wall - starts[name] + sched.start_offset(starts[name]))[0]
            for name, sched in (("a", a), ("b", b))
        }
        assert up["a"] == ((wall % 4) < 2)
        together += up["a"] and up["b"]
    assert together == pytest.approx(1000, abs=2)


def test_aligned_alone_is_not_a_schedule():
    with pytest.raises(ValueError):
        RadioSchedule.parse("aligned")
    with pytest.raises(ValueError):
        RadioSchedule.parse("up 2s, aligned, down 2s")
