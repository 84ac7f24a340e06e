"""Fixtures shared by the daemon tests (helpers that are not fixtures live in
nodes.py, procs.py and storefaults.py)."""

from __future__ import annotations

import subprocess

import pytest

from procs import Daemon
from storefaults import json_logs


@pytest.fixture(scope="module", autouse=True)
def no_daemon_outlives_its_module():
    """A test that forgets to stop its `mvds run` leaves a process behind
    that runs until the machine stops: stop it, and fail loudly."""
    Daemon.started.clear()
    yield
    leaked = [d for d in Daemon.started if d.alive]
    for daemon in leaked:
        daemon.process.kill()
        daemon.process.wait()
    Daemon.started.clear()
    assert not leaked, "daemons left running: " + ", ".join(str(d.path) for d in leaked)


@pytest.fixture
def logs():
    """The node's structlog lines as parsed JSON, for this test."""
    lines, restore = json_logs()
    yield lines
    restore()


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MB tmpfs mounted for this test (needs the privilege to mount)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + result.stderr.decode(errors="replace").strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
