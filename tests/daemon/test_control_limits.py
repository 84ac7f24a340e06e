"""The control API's line limit against a real daemon: CPU and memory.

A control line used to be re-scanned from its start for every chunk read,
so its cost grew with the square of its length: one 256 MiB line (the
largest ``control_max_line`` allows) took 89 s of the daemon's CPU, and 31
lines of 16 MiB (the default) 13.6 s.  The framer (mvds/daemon/
control_protocol.py) searches each byte once.  The daemon's own CPU time is
read from /proc (all its threads), not the test's wall clock, so a busy
machine does not make these tests flaky.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from mvds.daemon.config import load_config, save_config
from mvds.daemon.setup import init_node_dir
from procs import Daemon

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def start_daemon(path: Path, max_line: int) -> Daemon:
    init_node_dir(path, listen="127.0.0.1:0")
    config = load_config(path / "mvds.toml")
    config.control_max_line = max_line
    save_config(path / "mvds.toml", config)
    return Daemon(path).start()


def connect(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(120)
    sock.connect(str(daemon.path / "mvds.sock"))
    return sock


def send_line(sock: socket.socket, size: int, newline: bool) -> None:
    """``size`` bytes of one request line, in 1 MiB writes (stops quietly
    when the daemon closes the connection)."""
    chunk = b" " * MiB
    left = size
    try:
        while left > 0:
            n = min(left, MiB)
            sock.sendall(chunk[:n])
            left -= n
        if newline:
            sock.sendall(b"\n")
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_reply(sock: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return json.loads(data)


def ping(daemon: Daemon) -> None:
    with connect(daemon) as sock:
        sock.sendall(b'{"op":"ping","id":1}\n')
        reply = read_reply(sock)
    assert reply["ok"] is True and reply["id"] == 1, reply


@pytest.mark.slow
def test_a_256_mib_line_is_refused_in_linear_time(tmp_path):
    """Regression: one line over the largest allowed control_max_line cost
    the daemon 89 s of CPU; now it is refused after one pass."""
    limit = 256 * MiB
    daemon = start_daemon(tmp_path / "n", limit)
    try:
        pid = daemon.process.pid
        before = cpu_seconds(pid)
        with connect(daemon) as sock:
            send_line(sock, limit + MiB, newline=False)
            reply = read_reply(sock)
        used = cpu_seconds(pid) - before
        assert reply["ok"] is False and "control_max_line" in reply["error"], reply
        assert used < 2.0, f"the daemon spent {used:.1f} s of CPU on one 256 MiB line"
        ping(daemon)  # still serving
        assert daemon.status()["node"]["control_refused_line_too_long"] == 1
    finally:
        daemon.stop()


@pytest.mark.slow
def test_31_lines_of_16_mib_cost_linear_cpu_and_bounded_memory(tmp_path):
    """31 clients (the default limit allows 32) each send a request line of
    the default maximum, 16 MiB, at once.  The daemon buffers each line once
    (no copies piling up): its peak memory stays within what the limits
    promise to bound (clients x control_max_line, docs/CONFIG.md), and the
    CPU is linear in the bytes."""
    limit = 16 * MiB
    clients = 31
    daemon = start_daemon(tmp_path / "n", limit)
    try:
        pid = daemon.process.pid
        rss_before = memory_kib(pid, "VmRSS")
        cpu_before = cpu_seconds(pid)
        socks = [connect(daemon) for _ in range(clients)]
        replies: list[dict] = []

        def client(n: int, sock: socket.socket) -> None:
            # A valid request exactly control_max_line long.
            head, tail = b'{"op":"ping","id":%d,"pad":"' % n, b'"}'
            sock.sendall(head)
            send_line(sock, limit - len(head) - len(tail), newline=False)
            sock.sendall(tail + b"\n")
            replies.append(read_reply(sock))

        threads = [threading.Thread(target=client, args=(n, s)) for n, s in enumerate(socks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        for sock in socks:
            sock.close()
        cpu = cpu_seconds(pid) - cpu_before
        peak_mib = (memory_kib(pid, "VmHWM") - rss_before) / 1024
        assert sorted(r.get("id") for r in replies) == list(range(clients)), replies[:3]
        assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
        assert cpu < 3.0, f"the daemon spent {cpu:.1f} s of CPU on {clients} lines of 16 MiB"
        assert peak_mib < clients * limit / MiB + 64, f"peak {peak_mib:.0f} MiB above idle"
        ping(daemon)
    finally:
        daemon.stop()
