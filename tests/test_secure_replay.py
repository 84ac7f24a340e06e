"""The anti-replay window, against a model that remembers every counter."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvds.secure import ReplayWindow


class Model:
    """Obviously correct: every accepted counter, and the window rule."""

    def __init__(self, size):
        self.size = size
        self.seen = set()

    def check(self, counter):
        if not self.seen:
            return True
        highest = max(self.seen)
        if counter > highest:
            return True
        return highest - counter < self.size and counter not in self.seen


def test_in_order_counters_are_accepted_once():
    window = ReplayWindow()
    for counter in range(100):
        assert window.check(counter)
        window.accept(counter)
        assert not window.check(counter)
    assert window.highest == 99


def test_out_of_order_within_the_window_is_accepted_once():
    window = ReplayWindow(size=64)
    window.accept(100)
    assert window.check(40)  # 60 behind: inside
    window.accept(40)
    assert not window.check(40)
    assert window.check(99)


def test_too_old_is_refused_even_if_never_seen():
    window = ReplayWindow(size=64)
    window.accept(1000)
    assert not window.check(1000 - 64)
    assert window.check(1000 - 63)


def test_gaps_and_large_jumps():
    window = ReplayWindow(size=64)
    window.accept(5)
    window.accept(2**63)
    assert not window.check(5)
    assert window.check(2**63 - 1)
    window.accept(2**64 - 1)
    assert not window.check(2**64 - 1)


def test_check_does_not_change_the_window():
    window = ReplayWindow(size=64)
    window.accept(10)
    before = window.to_bytes()
    for counter in (0, 9, 10, 11, 10**6):
        window.check(counter)
    assert window.to_bytes() == before


counters = st.lists(
    st.integers(0, 600) | st.integers(0, 2**64 - 1) | st.integers(2**64 - 700, 2**64 - 1),
    max_size=300,
)


@given(ops=counters, size=st.sampled_from([64, 128, 256]))
def test_window_matches_the_model(ops, size):
    window = ReplayWindow(size=size)
    model = Model(size)
    for counter in ops:
        fresh = model.check(counter)
        assert window.check(counter) == fresh
        if fresh:
            window.accept(counter)
            model.seen.add(counter)


@given(before=counters, after=counters)
def test_state_survives_to_bytes_and_from_bytes(before, after):
    window = ReplayWindow(size=128)
    for counter in before:
        if window.check(counter):
            window.accept(counter)
    data = window.to_bytes()
    restored = ReplayWindow.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.highest == window.highest
    for counter in after:
        assert restored.check(counter) == window.check(counter)
        if window.check(counter):
            window.accept(counter)
            restored.accept(counter)


def test_empty_window_round_trips_and_accepts_counter_zero():
    restored = ReplayWindow.from_bytes(ReplayWindow().to_bytes())
    assert restored.highest is None
    assert restored.check(0)


@pytest.mark.parametrize(
    "data",
    [b"", b"RW1", b"XX1" + bytes(12) + bytes(8), ReplayWindow(64).to_bytes()[:-1],
     ReplayWindow(64).to_bytes() + b"\0", b"RW1\xff\xff\xff\xff" + bytes(8)],
)
def test_malformed_state_is_refused(data):
    with pytest.raises(ValueError):
        ReplayWindow.from_bytes(data)


@pytest.mark.parametrize("size", [0, 63, 100, -64])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError):
        ReplayWindow(size)
