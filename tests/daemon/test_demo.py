"""`mvds demo` as a real process: it completes with a delivery summary, a
timeout is a failure, and every way of stopping it leaves no daemon behind.

The demo's daemons are its children; the tests find them by parent pid in
/proc before stopping the demo and then check each of those pids is gone
(or a zombie about to be reaped), whatever signal the demo got.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mvds.daemon.control_client import ControlClient
from procs import MVDS, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

FAST = ["--messages", "1", "--interval", "0", "--loss", "0", "--no-live"]


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, split after ")".
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def reap(pids: list[int]) -> None:
    """Kill what a failing test left behind (still our `mvds run`, checked)."""
    for pid in pids:
        if alive(pid) and " run " in cmdline(pid):
            os.kill(pid, signal.SIGKILL)


def stored(node: Path) -> int:
    with ControlClient(node / "mvds.sock", timeout=10) as client:
        return client.request("status")["status"]["messages_stored"]


def start_demo(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*MVDS, "demo", "--dir", str(tmp_path / "demo"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def running_daemons(demo: subprocess.Popen, base: Path) -> list[int]:
    """The demo's four `mvds run` children, once all four serve their control socket."""

    def four() -> list[int] | None:
        if demo.poll() is not None:
            raise AssertionError(f"the demo exited early: {demo.communicate()}")
        pids = [p for p in children(demo.pid) if " run " in cmdline(p)]
        serving = all((base / name / "mvds.sock").exists() for name in "ABCD")
        return pids if len(pids) == 4 and serving else None

    return wait_until(four, 60, interval=0.05, what="the demo's four daemons")


def test_demo_delivers_everything_and_prints_the_summary(tmp_path):
    result = subprocess.run(
        [*MVDS, "demo", "--dir", str(tmp_path / "demo"), *FAST, "--timeout", "90"],
        capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # One message from each of four nodes, delivered to the three others.
    assert "overall: 12/12 deliveries" in result.stdout
    for name in "ABCD":
        assert re.search(rf"to {name} .*: 3/3 messages, median", result.stdout)
    assert f"nodes kept in {tmp_path / 'demo'}" in result.stdout
    # Every daemon was stopped with SIGTERM and said so in its log.
    for name in "ABCD":
        log = (tmp_path / "demo" / name / "daemon.log").read_text()
        assert '"event": "node.stopped"' in log


def test_demo_that_times_out_exits_non_zero_with_what_it_delivered(tmp_path):
    # Appending 3 rounds at 1 s per round cannot finish within a 1 s timeout.
    result = subprocess.run(
        [*MVDS, "demo", "--dir", str(tmp_path / "demo"), "--messages", "3", "--interval", "1",
         "--no-live", "--timeout", "1"],
        capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mvds: timeout: not every message"), result.stderr
    assert "Delivery times" in result.stdout and "overall:" in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_demo_stops_every_daemon_and_prints_the_summary(tmp_path, sig):
    demo = start_demo(tmp_path, "--messages", "1000", "--interval", "0.5")
    try:
        daemons = running_daemons(demo, tmp_path / "demo")
        # Mid-run: messages are being appended (1000 rounds would take minutes).
        wait_until(lambda: stored(tmp_path / "demo" / "A") > 0, 30, what="A's first append")
        demo.send_signal(sig)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    left = [pid for pid in daemons if alive(pid)]
    reap(left)
    # The demo waited for its daemons: none outlives it, not even briefly.
    assert not left, f"daemons left running after {signal.Signals(sig).name}"
    assert demo.returncode == 128 + sig, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0], err
    assert "Delivery times" in out and "overall:" in out


def test_a_killed_demo_takes_its_daemons_with_it(tmp_path):
    """SIGKILL cannot be handled: the kernel stops the daemons (PR_SET_PDEATHSIG)."""
    demo = start_demo(tmp_path, "--messages", "1000", "--interval", "0.5")
    try:
        daemons = running_daemons(demo, tmp_path / "demo")
    finally:
        demo.kill()
        demo.communicate()
    try:
        wait_until(lambda: not any(alive(pid) for pid in daemons), 30,
                   what="the daemons to exit after the demo was killed")
    finally:
        reap(daemons)
    for name in "ABCD":  # they stopped cleanly, on SIGTERM
        log = (tmp_path / "demo" / name / "daemon.log").read_text()
        assert '"signal": "SIGTERM"' in log
