"""`mvds init` keeps its promises about the directory (0700, never someone
else's folder) and errors from the operating system are one plain line."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from procs import cli
from test_cli import one_line_error


def test_init_into_an_existing_empty_directory_makes_it_owner_only(tmp_path):
    node = tmp_path / "node"
    node.mkdir(mode=0o755)
    os.chmod(node, 0o755)
    cli("init", str(node), check=True)
    assert stat.S_IMODE(os.stat(node).st_mode) == 0o700


def test_init_refuses_a_non_empty_directory_that_is_not_a_node(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    error = one_line_error(cli("init", str(folder)))
    assert "not empty and not a node directory" in error
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    # Asked for explicitly (a container volume with a links file in it): allowed.
    cli("init", str(folder), "--in-existing", check=True)
    assert (folder / "mvds.toml").exists() and (folder / "holiday.jpg").exists()


@pytest.fixture
def read_only_node(tmp_path):
    """A node directory on a read-only bind mount (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    node = tmp_path / "node"
    cli("init", str(node), check=True)
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(node), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize(
    "args",
    [
        ["peer", "add", "{node}", "bob", "ab" * 32, "127.0.0.1:1"],
        ["join", "{node}", "chat"],
    ],
)
def test_a_read_only_file_system_is_one_plain_line(read_only_node, args):
    result = cli(*[a.replace("{node}", str(read_only_node)) for a in args])
    error = one_line_error(result)
    assert "Read-only file system" in error
    assert "unexpected error" not in error and "report" not in error
