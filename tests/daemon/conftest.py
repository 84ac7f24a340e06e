"""Fixtures shared by the daemon tests (helpers that are not fixtures live in
nodes.py, procs.py and storefaults.py)."""

from __future__ import annotations

import subprocess

import pytest

from storefaults import json_logs


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
