"""Pairing across two Linux network namespaces joined by a veth pair: the
inviter listens on 0.0.0.0 (the code lists its interface addresses), the
acceptor has another address (10.77.0.2) than loopback.  Needs root and
`ip netns`; skips with the reason otherwise.  The namespaces get unique
names per run and are always deleted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from mvds.daemon.pairing import decode_code
from procs import MVDS, Daemon, cli, stop_all

pytestmark = pytest.mark.netns


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = uuid.uuid4().hex[:6]
    a, b = f"mvdsA{tag}", f"mvdsB{tag}"
    veth_a, veth_b = f"va{tag}", f"vb{tag}"
    made = []
    try:
        for ns in (a, b):
            try:
                ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"ip netns add failed: {exc.stderr.decode().strip()}")
            made.append(ns)
        ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        ip("link", "set", veth_a, "netns", a)
        ip("link", "set", veth_b, "netns", b)
        for ns, dev, address in ((a, veth_a, "10.77.0.1/24"), (b, veth_b, "10.77.0.2/24")):
            ip("-n", ns, "addr", "add", address, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class NsDaemon(Daemon):
    """`mvds run DIR` inside a network namespace (the control socket is a
    file, so the CLI outside reaches it)."""

    def __init__(self, path, ns, *extra):
        super().__init__(path, *extra)
        self.ns = ns

    def start(self, timeout: float = 20.0):
        original = MVDS[:]
        MVDS[:0] = ["ip", "netns", "exec", self.ns]
        try:
            return super().start(timeout)
        finally:
            MVDS[:] = original


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
