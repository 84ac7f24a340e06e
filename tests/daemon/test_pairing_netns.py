"""Pairing across two Linux network namespaces joined by a veth pair: the
inviter listens on 0.0.0.0 (the code lists its interface addresses), the
acceptor has another address (10.77.0.2) than loopback.  Needs root and
`ip netns`; skips with the reason otherwise.  The namespaces get unique
names per run and are always deleted."""

from __future__ import annotations

import json

import pytest

from mvds.daemon.pairing import decode_code
from netns_pair import NsDaemon, two_namespaces
from procs import cli, stop_all

pytestmark = pytest.mark.netns


@pytest.fixture
def namespaces():
    with two_namespaces("10.77.0.1/24", "10.77.0.2/24") as names:
        yield names


def test_invite_and_accept_across_two_network_namespaces(tmp_path, namespaces):
    ns_a, ns_b = namespaces
    cli("init", str(tmp_path / "a"), "--listen", "0.0.0.0:7400", check=True)
    cli("init", str(tmp_path / "b"), "--listen", "10.77.0.2:7400", check=True)
    daemons = [NsDaemon(tmp_path / "a", ns_a), NsDaemon(tmp_path / "b", ns_b)]
    try:
        for daemon in daemons:
            daemon.start()
        a, b = daemons
        code = cli("invite", str(a.path), "--group", "chat", "--name", "b", check=True).stdout.strip()
        offered = decode_code(code).addresses
        assert "10.77.0.1:7400" in offered and offered[-1] == "127.0.0.1:7400"  # loopback last
        result = cli("accept", str(b.path), code, "--name", "a", "--json", "--timeout", "20s",
                     check=True)
        assert json.loads(result.stdout)["peer"] == "a"
        # Each side names the other by the address it really reached.
        assert 'address = "10.77.0.1:7400"' in (b.path / "mvds.toml").read_text()
        assert 'address = "10.77.0.2:7400"' in (a.path / "mvds.toml").read_text()
        cli("send", str(a.path), "chat", "from a", "--wait-ack", "--ack-timeout", "20", check=True)
        cli("send", str(b.path), "chat", "from b", "--wait-ack", "--ack-timeout", "20", check=True)
        assert "from a" in cli("tail", str(b.path), check=True).stdout
        assert "from b" in cli("tail", str(a.path), check=True).stdout
    finally:
        stop_all(daemons)
