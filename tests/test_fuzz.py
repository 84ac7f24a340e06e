"""The fuzz targets (fuzz/targets.py) under hypothesis: the short version CI runs.

The long coverage-guided runs use atheris (``python -m fuzz NAME --runs
1000000``; docs/RELIABILITY.md has the results).  Here each target gets a
few hundred derandomized inputs, and every crash those runs found is kept
as an explicit regression input.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: fuzz/

from fuzz.targets import (  # noqa: E402
    ConfigTarget,
    ControlServerTarget,
    ControlTarget,
    EnvelopeTarget,
    PayloadTarget,
)
from mvds.daemon.config import ConfigError, parse_config  # noqa: E402

_inputs = st.binary(max_size=2048)


@pytest.fixture(scope="module")
def envelope():
    return EnvelopeTarget()


@pytest.fixture(scope="module")
def payload():
    return PayloadTarget()


@pytest.fixture(scope="module")
def config():
    return ConfigTarget()


@pytest.fixture(scope="module")
def control():
    return ControlTarget()


@pytest.fixture(scope="module")
def control_server():
    return ControlServerTarget()


@settings(max_examples=400)
@given(data=_inputs)
def test_envelope_target(envelope, data):
    envelope(data)


@settings(max_examples=300)
@given(data=_inputs)
def test_payload_target(payload, data):
    payload(data)


@settings(max_examples=400)
@given(data=_inputs)
@example(data=base64.b64decode("N1V7TQ=="))  # atheris: flush_ms = nan was accepted
def test_config_target(config, data):
    config(data)


@settings(max_examples=500)
@given(data=_inputs)
@example(data=b"\x01\x0b\x0b")  # structured mode
def test_control_target(control, data):
    control(data)


@settings(max_examples=300)
@given(data=_inputs)
@example(data=b"[\x0b[\x0b")  # atheris: subscribe with group "" was an internal error
def test_control_server_target(control_server, data):
    control_server(data)


def test_envelope_structured_inputs_reach_every_outcome(envelope):
    """The structured mode really gets past the cheap checks (else the
    fuzzer would only ever test the first few lines of open())."""
    outcomes = set()
    for first in range(1, 4):
        for flips in range(0, 3):
            for cut in (0, 1):
                data = bytes([first, 5, 1, 2, 3, 4, 5, 0, flips, 7, 9, 3, cut, 40])
                before = envelope.codec.export_replay_state()
                envelope(data)
                outcomes.add((first, flips, cut, before != envelope.codec.export_replay_state()))
    # Some inputs were accepted (the replay window moved), some were not.
    assert {accepted for *_, accepted in outcomes} == {True, False}


@pytest.mark.parametrize(
    "request_line",
    [
        {"op": "subscribe", "group": ""},
        {"op": "subscribe", "since": 2**63},
        {"op": "subscribe", "since": 10**30},
        {"op": "join", "group": ""},
        {"op": "share", "group": "", "peer": "bob"},
        {"op": "unshare", "group": "", "peer": "bob"},
        {"op": "append", "group": "", "text": "x"},
    ],
)
def test_control_regressions(control_server, request_line):
    """Crashes the fuzzer found: each is a clear error now, not an internal one."""
    replies = control_server._roundtrip(json.dumps(request_line).encode())
    assert replies[0]["ok"] is False
    assert not replies[0]["error"].startswith("internal error"), replies


@pytest.mark.parametrize(
    "text",
    ["flush_ms = nan", "flush_ms = inf", "flush_ms = -0.5", "loss = nan", "loss = inf",
     "backoff_max_epochs = 9223372036854775807", "max_inflight = 0", "max_requests = 0",
     "max_requests = 10000000"],
)
def test_config_regressions(text):
    with pytest.raises(ConfigError) as error:
        parse_config(text.encode(), "mvds.toml")
    assert str(error.value).startswith("mvds.toml: ")
    assert "\n" not in str(error.value)
