"""The subscription stream's hand-built JSON line is exactly json.dumps'."""

import json

from hypothesis import given, strategies as st

from mvds.daemon.delivered import DeliveredMessage

ids = st.binary(min_size=32, max_size=32)


@given(
    seq=st.none() | st.integers(0, 2**63),
    group=ids,
    mid=ids,
    timestamp=st.integers(-(2**63), 2**63 - 1),
    body=st.binary(max_size=64) | st.text(max_size=32).map(str.encode),
    sender=st.none() | ids,
    ephemeral=st.booleans(),
)
def test_event_line_is_the_compact_json_of_to_json(seq, group, mid, timestamp, body, sender, ephemeral):
    m = DeliveredMessage(seq, group, mid, timestamp, body, sender, ephemeral)
    expected = json.dumps({"event": "message", "message": m.to_json()}, separators=(",", ":"))
    assert m.event_line() == expected
