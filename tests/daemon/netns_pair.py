"""Two Linux network namespaces joined by a veth pair, for tests that need
two "machines" (root and `ip netns`; skips with the reason otherwise).  The
namespaces get unique names per run and are always deleted; nothing is
added to the machine's own namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from typing import Iterator

import pytest

from procs import MVDS, Daemon


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def two_namespaces(address_a: str, address_b: str) -> Iterator[tuple[str, str]]:
    """Namespaces (a, b) whose veth ends have the given CIDR addresses."""
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
        for ns, dev, address in ((a, veth_a, address_a), (b, veth_b, address_b)):
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
