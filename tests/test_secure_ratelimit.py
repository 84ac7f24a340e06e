"""The per-peer byte budget (peer_max_bytes_per_s): a token bucket."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvds.limits import MAX_DATAGRAM_SIZE
from mvds.secure.ratelimit import TokenBucket


def test_starts_full_then_refuses_until_it_refills():
    bucket = TokenBucket(100_000)
    assert bucket.burst == 100_000
    assert bucket.allow(60_000, 0.0)
    assert bucket.allow(40_000, 0.0)
    assert not bucket.allow(1, 0.0)
    assert not bucket.allow(10_001, 0.1)  # 10,000 came back
    assert bucket.allow(10_000, 0.1)
    assert not bucket.allow(1, 0.1)


def test_a_refused_datagram_costs_nothing():
    bucket = TokenBucket(10_000, burst=10_000)
    assert bucket.allow(9_000, 0.0)
    assert not bucket.allow(2_000, 0.0)
    assert bucket.allow(1_000, 0.0)


def test_savings_are_capped_at_the_burst():
    bucket = TokenBucket(1_000_000)
    assert bucket.allow(1_000_000, 0.0)
    assert not bucket.allow(1_000_001, 3600.0)  # an hour idle saves one second's worth
    assert bucket.allow(1_000_000, 3600.0)


def test_the_largest_datagram_always_fits_a_small_budget():
    bucket = TokenBucket(1024)
    assert bucket.burst == MAX_DATAGRAM_SIZE
    assert bucket.allow(MAX_DATAGRAM_SIZE, 0.0)
    assert not bucket.allow(MAX_DATAGRAM_SIZE, 1.0)
    assert bucket.allow(MAX_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE / 1024)


def test_a_clock_going_backwards_grants_nothing():
    bucket = TokenBucket(1000, burst=1000)
    assert bucket.allow(1000, 10.0)
    assert not bucket.allow(1, 5.0)
    assert not bucket.allow(1, 10.0)
    assert bucket.allow(1000, 11.0)


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_must_be_positive(rate):
    with pytest.raises(ValueError):
        TokenBucket(rate)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1024, 10**7),
    steps=st.lists(
        st.tuples(st.floats(0, 2.0, allow_nan=False), st.integers(1, MAX_DATAGRAM_SIZE)),
        max_size=200,
    ),
)
def test_what_passes_never_exceeds_burst_plus_rate_times_elapsed(rate, steps):
    bucket = TokenBucket(rate)
    now = 0.0
    passed = 0
    for gap, size in steps:
        now += gap
        if bucket.allow(size, now):
            passed += size
        assert passed <= bucket.burst + rate * now + 1e-6
