"""Socket buffers: asked for past net.core.rmem_max where allowed, warned about when small.

A receive buffer of the stock 208 KiB overflows while the node commits a
batch (measured: hundreds of datagrams dropped by the kernel per 50,000
messages on loopback), so the transport forces 4 MiB where it may (root)
and the node says so at start when it got less than 1 MiB.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

import mvds
import mvds.daemon.node as node_module
from mvds.daemon import transport
from storefaults import json_logs


class RecordingSocket:
    """Records setsockopt calls; refuses the ones named in ``refuse``."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.calls: list[tuple[int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append((option, value))
        if option in self.refuse:
            raise PermissionError(1, "Operation not permitted")


@pytest.mark.skipif(transport._FORCE[socket.SO_RCVBUF] is None, reason="no forced buffers on this platform")
def test_buffers_are_forced_first_and_asked_for_plainly_when_forcing_is_not_allowed():
    forced = {transport._FORCE[socket.SO_RCVBUF], transport._FORCE[socket.SO_SNDBUF]}
    allowed = RecordingSocket(refuse=set())
    transport.size_buffers(allowed, 4096)
    assert {option for option, _ in allowed.calls} == forced  # forcing worked: nothing else
    denied = RecordingSocket(refuse=forced)
    transport.size_buffers(denied, 4096)
    options = [option for option, _ in denied.calls]
    assert options == [transport._FORCE[socket.SO_RCVBUF], socket.SO_RCVBUF,
                       transport._FORCE[socket.SO_SNDBUF], socket.SO_SNDBUF]
    assert all(value == 4096 for _, value in denied.calls)


@pytest.mark.skipif(
    not (sys.platform == "linux" and os.geteuid() == 0 and transport._FORCE[socket.SO_RCVBUF]),
    reason="forcing a buffer past net.core.rmem_max needs root on Linux",
)
def test_as_root_the_receive_buffer_is_the_full_size_whatever_the_sysctl():
    with open("/proc/sys/net/core/rmem_max") as f:
        limit = int(f.read())
    udp = transport.UdpTransport("127.0.0.1", 0)
    try:
        # Linux reports twice the size it was asked for (bookkeeping overhead).
        assert udp.receive_buffer >= 2 * transport.RECEIVE_BUFFER, (udp.receive_buffer, limit)
    finally:
        udp.close()


async def test_a_small_receive_buffer_is_reported_at_start(monkeypatch):
    lines, restore = json_logs()
    try:
        monkeypatch.setattr(node_module, "SMALL_BUFFER", 1 << 40)  # whatever was granted is "small"
        async with mvds.open_node(listen="127.0.0.1:0"):
            pass
        warnings = [line for line in lines() if line["event"] == "transport.small_receive_buffer"]
        assert len(warnings) == 1
        assert warnings[0]["granted"] > 0 and "net.core.rmem_max" in warnings[0]["hint"]
        monkeypatch.setattr(node_module, "SMALL_BUFFER", 1)
        async with mvds.open_node(listen="127.0.0.1:0"):
            pass
        assert len([line for line in lines() if line["event"] == "transport.small_receive_buffer"]) == 1
    finally:
        restore()
