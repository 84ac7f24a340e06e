"""contrib/systemd/mvds@.service: systemd accepts it without a warning, and
the commands it runs create a node on first start and run it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvds.daemon.setup import free_udp_port

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "mvds@.service"
INSTALLED = "/usr/local/bin/mvds"
MVDS_HERE = str(Path(sys.executable).parent / "mvds")


def unit_text() -> str:
    # The unit names the usual install path; verify against this checkout's.
    return UNIT.read_text().replace(INSTALLED, MVDS_HERE)


def directive(text: str, key: str) -> str:
    lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]
    assert len(lines) == 1, key
    return lines[0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit_without_a_warning(tmp_path):
    instance = tmp_path / "mvds@test.service"
    instance.write_text(unit_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_the_units_commands_create_and_run_a_node(tmp_path):
    text = unit_text()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert directive(text, "Environment").startswith("MVDS_LISTEN=")
    # What `systemctl edit` would set for a test instance: loopback, a free port.
    env = {**os.environ, "STATE_DIRECTORY": str(state), "MVDS_LISTEN": f"127.0.0.1:{free_udp_port()}"}
    pre = shlex.split(directive(text, "ExecStartPre"))
    subprocess.run(pre, env=env, check=True, timeout=60)
    assert (state / "mvds.toml").exists()
    subprocess.run(pre, env=env, check=True, timeout=60)  # a second start keeps the node
    start = [arg.replace("${STATE_DIRECTORY}", str(state)) for arg in shlex.split(directive(text, "ExecStart"))]
    daemon = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (state / "mvds.sock").exists():
            assert daemon.poll() is None, daemon.stderr.read()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        status = subprocess.run([MVDS_HERE, "status", str(state), "--json"], capture_output=True,
                                text=True, check=True, timeout=30)
        assert json.loads(status.stdout)["running"] is True
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
